"""``strongroom scheduledoperation``: a plan protected on a trigger, with optional retention, and its runs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from strongroom.client.commands.base import EXIT_OK, Cli, add_group, add_list_options, list_params

if TYPE_CHECKING:
    from strongroom.client.commands.base import SubParsers

COLUMNS = ["id", "name", "operation_type", "trigger_id", "operation_definition.plan_id", "enabled", "next_fire_time"]
LOG_COLUMNS = ["id", "expect_start_time", "state", "checkpoint_id", "end_time", "error_info"]
RETENTION_OPTIONS = ("max_backups", "retention_duration", "keep_last", "keep_hourly", "keep_daily", "keep_weekly",
                     "keep_monthly", "keep_yearly")


def register(groups: SubParsers) -> None:
    g = add_group(groups, "scheduledoperation", "Scheduled operations and their logs.", run)
    p = g.add_parser("create")
    p.add_argument("name")
    p.add_argument("operation_type", choices=["protect", "retention_protect"])
    p.add_argument("trigger_id")
    p.add_argument("--provider-id", dest="provider_id", required=True)
    p.add_argument("--plan-id", dest="plan_id", required=True)
    p.add_argument("--description")
    for option in RETENTION_OPTIONS:
        p.add_argument("--" + option.replace("_", "-"), dest=option, type=int,
                       help="retention_protect only" if option != "retention_duration" else "days")
    add_list_options(g.add_parser("list"), "name", "operation_type", "trigger_id", "plan_id")
    for name in ("show", "delete", "suspend", "resume"):
        g.add_parser(name).add_argument("operation_id")
    p = g.add_parser("logs", help="The runs of a scheduled operation, newest first.")
    p.add_argument("operation_id")
    add_list_options(p, "state", all_tenants=False)


def run(cli: Cli, a: argparse.Namespace) -> int:
    c = cli.client
    if a.action == "create":
        definition: dict[str, Any] = {"provider_id": a.provider_id, "plan_id": a.plan_id}
        definition.update({k: getattr(a, k) for k in RETENTION_OPTIONS if getattr(a, k) is not None})
        cli.emit_one(c.create_scheduled_operation(a.name, a.operation_type, a.trigger_id, definition,
                                                  a.description))
    elif a.action == "list":
        params = list_params(a, "name", "operation_type", "trigger_id", "plan_id")
        cli.emit_list(COLUMNS, c.list_scheduled_operations(**params))
    elif a.action == "show":
        cli.emit_one(c.show_scheduled_operation(a.operation_id))
    elif a.action == "suspend":
        cli.emit_one(c.suspend_scheduled_operation(a.operation_id))
    elif a.action == "resume":
        cli.emit_one(c.resume_scheduled_operation(a.operation_id))
    elif a.action == "logs":
        params = list_params(a, "state")
        params.pop("all_tenants", None)
        cli.emit_list(LOG_COLUMNS, c.list_scheduled_operation_logs(a.operation_id, **params))
    else:
        c.delete_scheduled_operation(a.operation_id)
        cli.err.write(f"Scheduled operation {a.operation_id} deleted.\n")
    return EXIT_OK
