"""``strongroom operationlog``: the record of every protect, restore, verify and delete."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from strongroom.client.commands.base import EXIT_OK, Cli, add_group, add_list_options, list_params

if TYPE_CHECKING:
    from strongroom.client.commands.base import SubParsers

COLUMNS = ["id", "operation_type", "status", "checkpoint_id", "plan_id", "restore_id", "started_at", "ended_at"]
FILTERS = ("checkpoint_id", "plan_id", "restore_id", "status", "operation_type", "provider_id")


def register(groups: SubParsers) -> None:
    g = add_group(groups, "operationlog", "Operation logs.", run)
    add_list_options(g.add_parser("list"), *FILTERS)
    g.add_parser("show").add_argument("operation_log_id")


def run(cli: Cli, a: argparse.Namespace) -> int:
    if a.action == "list":
        cli.emit_list(COLUMNS, cli.client.list_operation_logs(**list_params(a, *FILTERS)))
    else:
        cli.emit_one(cli.client.show_operation_log(a.operation_log_id))
    return EXIT_OK
