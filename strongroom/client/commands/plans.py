"""``strongroom plan``: protection plans (a provider and the resources it protects)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from strongroom.client.commands.base import (
    EXIT_OK,
    Cli,
    UsageError,
    add_group,
    add_list_options,
    json_arg,
    list_params,
)

if TYPE_CHECKING:
    from strongroom.client.commands.base import SubParsers

COLUMNS = ["id", "name", "description", "provider_id", "status"]


def register(groups: SubParsers) -> None:
    g = add_group(groups, "plan", "Protection plans.", run)
    p = g.add_parser("create")
    p.add_argument("name")
    p.add_argument("provider_id")
    p.add_argument("--resource", action="append", metavar="TYPE=ID[=NAME]", help="Repeatable.")
    p.add_argument("--parameters", help="JSON object keyed by type or type#id.")
    p.add_argument("--description")
    add_list_options(g.add_parser("list"), "name", "status")
    g.add_parser("show").add_argument("plan_id")
    p = g.add_parser("update")
    p.add_argument("plan_id")
    p.add_argument("--name")
    p.add_argument("--description")
    p.add_argument("--status", choices=["suspended", "started"])
    p.add_argument("--resource", action="append", metavar="TYPE=ID[=NAME]", help="Replaces all resources.")
    p.add_argument("--parameters")
    g.add_parser("delete").add_argument("plan_id")


def resource_arg(text: str) -> dict[str, Any]:
    """``--resource TYPE=ID[=NAME]`` as a plan resource."""
    parts = text.split("=", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise UsageError(f"--resource {text!r}: expected TYPE=ID[=NAME]")
    resource = {"type": parts[0], "id": parts[1]}
    if len(parts) == 3:
        resource["name"] = parts[2]
    return resource


def run(cli: Cli, a: argparse.Namespace) -> int:
    c = cli.client
    if a.action == "create":
        if not a.resource:
            raise UsageError("plan create: at least one --resource TYPE=ID[=NAME] is required")
        cli.emit_one(c.create_plan(a.name, a.provider_id, [resource_arg(r) for r in a.resource],
                                   json_arg(a.parameters, "--parameters"), a.description))
    elif a.action == "list":
        cli.emit_list(COLUMNS, c.list_plans(**list_params(a, "name", "status")))
    elif a.action == "show":
        cli.emit_one(c.show_plan(a.plan_id))
    elif a.action == "update":
        values: dict[str, Any] = {k: getattr(a, k) for k in ("name", "description", "status")
                                  if getattr(a, k) is not None}
        if a.resource:
            values["resources"] = [resource_arg(r) for r in a.resource]
        if a.parameters is not None:
            values["parameters"] = json_arg(a.parameters, "--parameters")
        if not values:
            raise UsageError("plan update: nothing to change")
        cli.emit_one(c.update_plan(a.plan_id, **values))
    else:
        c.delete_plan(a.plan_id)
        cli.err.write(f"Plan {a.plan_id} deleted.\n")
    return EXIT_OK
