"""``strongroom trigger``: time triggers (a crontab or calendar pattern) that scheduled operations fire on."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from strongroom.client.commands.base import (
    EXIT_OK,
    Cli,
    UsageError,
    add_group,
    add_list_options,
    kv_arg,
    list_params,
)

if TYPE_CHECKING:
    from strongroom.client.commands.base import SubParsers

COLUMNS = ["id", "name", "type", "properties.format", "properties.pattern", "properties.window"]


def register(groups: SubParsers) -> None:
    g = add_group(groups, "trigger", "Time triggers.", run)
    p = g.add_parser("create")
    p.add_argument("name")
    p.add_argument("--type", default="time", choices=["time"])
    _add_properties(p)
    add_list_options(g.add_parser("list"), "name", "type")
    g.add_parser("show").add_argument("trigger_id")
    p = g.add_parser("update")
    p.add_argument("trigger_id")
    p.add_argument("--name")
    _add_properties(p)
    g.add_parser("delete").add_argument("trigger_id")


def _add_properties(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pattern", help="Cron expression, or an RFC 5545 VEVENT with RRULE for --format calendar.")
    p.add_argument("--format", dest="trigger_format", choices=["crontab", "calendar"],
                   help="Pattern format (default crontab).")
    p.add_argument("--start-time", dest="start_time", help="UTC, e.g. 2026-01-31T08:30:00")
    p.add_argument("--end-time", dest="end_time")
    p.add_argument("--window", type=int, help="Seconds after a fire time its run may still start.")
    p.add_argument("--property", action="append", metavar="KEY=VALUE",
                   help="Karbor's spelling of the options above (repeatable).")


def _properties(a: argparse.Namespace) -> dict[str, Any]:
    props = {key: getattr(a, key) for key in ("pattern", "start_time", "end_time", "window")
             if getattr(a, key, None) is not None}
    if a.trigger_format is not None:
        props["format"] = a.trigger_format
    for key, value in kv_arg(a.property, "--property").items():
        props.setdefault(key, value)
    return props


def run(cli: Cli, a: argparse.Namespace) -> int:
    c = cli.client
    if a.action == "create":
        props = _properties(a)
        if "pattern" not in props:
            raise UsageError("trigger create: --pattern is required")
        cli.emit_one(c.create_trigger(a.name, props, a.type))
    elif a.action == "list":
        cli.emit_list(COLUMNS, c.list_triggers(**list_params(a, "name", "type")))
    elif a.action == "show":
        cli.emit_one(c.show_trigger(a.trigger_id))
    elif a.action == "update":
        props = _properties(a)
        if a.name is None and not props:
            raise UsageError("trigger update: nothing to change")
        cli.emit_one(c.update_trigger(a.trigger_id, a.name, props))
    else:
        c.delete_trigger(a.trigger_id)
        cli.err.write(f"Trigger {a.trigger_id} deleted.\n")
    return EXIT_OK
