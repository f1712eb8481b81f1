"""``strongroom provider``: the providers this deployment offers."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from strongroom.client.commands.base import EXIT_OK, Cli, add_group, add_list_options, list_params

if TYPE_CHECKING:
    from strongroom.client.commands.base import SubParsers

COLUMNS = ["id", "name", "description"]


def register(groups: SubParsers) -> None:
    g = add_group(groups, "provider", "Providers.", run)
    add_list_options(g.add_parser("list"), all_tenants=False)
    g.add_parser("show").add_argument("provider_id")


def run(cli: Cli, a: argparse.Namespace) -> int:
    if a.action == "list":
        cli.emit_list(COLUMNS, cli.client.list_providers(**list_params(a)))
    else:
        cli.emit_one(cli.client.show_provider(a.provider_id))
    return EXIT_OK
