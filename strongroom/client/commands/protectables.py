"""``strongroom protectable``: protectable resource types and their instances."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from strongroom.client.commands.base import EXIT_OK, Cli, add_group, add_list_options, json_arg, list_params

if TYPE_CHECKING:
    from strongroom.client.commands.base import SubParsers

TYPE_COLUMNS = ["protectable_type"]
INSTANCE_COLUMNS = ["id", "type", "name"]


def register(groups: SubParsers) -> None:
    g = add_group(groups, "protectable", "Protectable types and instances.", run)
    g.add_parser("list")
    g.add_parser("show").add_argument("type")
    p = g.add_parser("instances")
    p.add_argument("type")
    p.add_argument("--parameters", help="JSON object of plugin-specific filters.")
    add_list_options(p, all_tenants=False)
    p = g.add_parser("instance")
    p.add_argument("type")
    p.add_argument("instance_id")
    p.add_argument("--parameters")


def run(cli: Cli, a: argparse.Namespace) -> int:
    c = cli.client
    if a.action == "list":
        types = c.list_protectables()
        if a.format == "json":
            cli.out.write(json.dumps(types, indent=2) + "\n")
        else:
            cli.emit_list(TYPE_COLUMNS, [{"protectable_type": t} for t in types])
    elif a.action == "show":
        cli.emit_one(c.show_protectable(a.type))
    elif a.action == "instances":
        parameters = json_arg(a.parameters, "--parameters")
        cli.emit_list(INSTANCE_COLUMNS, c.list_protectable_instances(a.type, parameters, **list_params(a)))
    else:
        parameters = json_arg(a.parameters, "--parameters")
        cli.emit_one(c.show_protectable_instance(a.type, a.instance_id, parameters))
    return EXIT_OK
