"""``strongroom``: the command-line client (argparse; a pure HTTP client of the v1 API).

Exit codes: 0 success; 1 an API error, or ``--wait`` ended in ``error``/``fail``; 2 bad usage;
3 ``--wait`` gave up after ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from strongroom.client.client import Client, ClientError

DEFAULT_URL = "http://127.0.0.1:8799"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3

CHECKPOINT_DONE = {"available", "error", "deleted", "error-deleting"}
CHECKPOINT_FAILED = {"error", "error-deleting"}
RUN_DONE = {"success", "fail"}
RUN_FAILED = {"fail"}

LIST_COLUMNS: dict[str, list[str]] = {
    "provider": ["id", "name", "description"],
    "protectable": ["protectable_type"],
    "instance": ["id", "type", "name"],
    "plan": ["id", "name", "description", "provider_id", "status"],
    "checkpoint": ["id", "project_id", "status", "protection_plan.name", "created_at"],
    "restore": ["id", "project_id", "provider_id", "checkpoint_id", "restore_target", "status"],
    "verification": ["id", "project_id", "provider_id", "checkpoint_id", "status"],
    "operationlog": ["id", "operation_type", "status", "checkpoint_id", "plan_id", "restore_id", "started_at",
                     "ended_at"],
    "trigger": ["id", "name", "type", "properties.format", "properties.pattern", "properties.window"],
    "scheduledoperation": ["id", "name", "operation_type", "trigger_id", "operation_definition.plan_id",
                           "enabled"],
    "scheduledoperationlog": ["id", "expect_start_time", "state", "checkpoint_id", "end_time", "error_info"],
    "service": ["id", "binary", "host", "status", "state", "updated_at", "disabled_reason"],
}
RETENTION_OPTIONS = ("max_backups", "retention_duration", "keep_last", "keep_hourly", "keep_daily", "keep_weekly",
                     "keep_monthly", "keep_yearly")


class UsageError(Exception):
    """A command-line value that cannot be used (exit code 2)."""


class Cli:
    def __init__(self, args: argparse.Namespace, stdout: TextIO, stderr: TextIO,
                 sleep: Callable[[float], None], clock: Callable[[], float]) -> None:
        self.args = args
        self.out = stdout
        self.err = stderr
        self.sleep = sleep
        self.clock = clock
        self.client = Client(args.url, args.project, token=args.token, timeout=args.http_timeout)

    # -- output ----------------------------------------------------------------

    def emit_one(self, obj: dict[str, Any]) -> None:
        if self.args.format == "json":
            self.out.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")
            return
        rows = [[key, _cell(obj[key])] for key in sorted(obj)]
        self.out.write(render_table(["Property", "Value"], rows))

    def emit_list(self, kind: str, items: list[dict[str, Any]]) -> None:
        if self.args.format == "json":
            self.out.write(json.dumps(items, indent=2, sort_keys=True) + "\n")
            return
        columns = LIST_COLUMNS[kind]
        rows = [[_cell(_get(item, col)) for col in columns] for item in items]
        self.out.write(render_table(columns, rows))

    # -- waiting ---------------------------------------------------------------

    def wait(self, fetch: Callable[[], dict[str, Any] | None], done: set[str], failed: set[str],
             show_bytes: bool) -> tuple[int, dict[str, Any] | None]:
        """Poll until a status in ``done``; draw a one-line progress bar on stderr."""
        started = self.clock()
        first_bytes: int | None = None
        waited = 0.0
        obj: dict[str, Any] | None = None
        while True:
            obj = fetch()
            if obj is None:  # gone (e.g. a deleted checkpoint no longer listed)
                self.err.write("\n")
                return EXIT_OK, obj
            status = str(obj.get("status"))
            progress = obj.get("progress") or {}
            done_bytes = int(progress.get("bytes_done") or 0)
            if first_bytes is None:
                first_bytes = done_bytes
            self.err.write("\r" + progress_line(status, done_bytes, int(progress.get("bytes_total") or 0),
                                                done_bytes - first_bytes, self.clock() - started, show_bytes))
            self.err.flush()
            if status in done:
                self.err.write("\n")
                return (EXIT_FAILED if status in failed else EXIT_OK), obj
            if waited >= self.args.timeout:
                self.err.write(f"\ngave up after {self.args.timeout:g} s; status is still {status}\n")
                return EXIT_TIMEOUT, obj
            self.sleep(self.args.poll_interval)
            waited += self.args.poll_interval


def progress_line(status: str, done: int, total: int, moved: int, elapsed: float, show_bytes: bool,
                  width: int = 24) -> str:
    """``[#####-----]  12.0/100.0 MiB  12%  3.4 MiB/s  protecting``."""
    if not show_bytes:
        return f"{status}"
    fraction = min(done / total, 1.0) if total > 0 else (1.0 if status == "available" else 0.0)
    filled = int(round(fraction * width))
    rate = (moved / elapsed / 2**20) if elapsed > 0 else 0.0
    return (f"[{'#' * filled}{'-' * (width - filled)}] {done / 2**20:8.1f}/{total / 2**20:.1f} MiB "
            f"{fraction * 100:5.1f}%  {rate:6.1f} MiB/s  {status:<12}")


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    split_rows = []
    for row in rows:
        cells = [str(c).splitlines() or [""] for c in row]
        split_rows.append(cells)
        for i, lines in enumerate(cells):
            widths[i] = max(widths[i], *(len(line) for line in lines))
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+\n"

    def line(values: Sequence[str]) -> str:
        return "|" + "|".join(f" {v:<{w}} " for v, w in zip(values, widths, strict=True)) + "|\n"

    out = rule + line(headers) + rule
    for cells in split_rows:
        height = max(len(c) for c in cells)
        for n in range(height):
            out += line([c[n] if n < len(c) else "" for c in cells])
    return out + rule


def _get(item: dict[str, Any], dotted: str) -> Any:
    value: Any = item
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _json_arg(text: str | None, name: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"{name}: not valid JSON: {err.msg}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{name}: must be a JSON object")
    return value


def _resource_arg(text: str) -> dict[str, Any]:
    parts = text.split("=", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise UsageError(f"--resource {text!r}: expected TYPE=ID[=NAME]")
    resource = {"type": parts[0], "id": parts[1]}
    if len(parts) == 3:
        resource["name"] = parts[2]
    return resource


def _kv_arg(items: Sequence[str] | None, name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{name} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _list_params(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    params = {name: getattr(args, name, None) for name in ("limit", "marker", "sort", *names)}
    if getattr(args, "all_tenants", False):
        params["all_tenants"] = "1"
    return {k: v for k, v in params.items() if v is not None}


# -- commands -------------------------------------------------------------------


def cmd_provider(cli: Cli, a: argparse.Namespace) -> int:
    if a.action == "list":
        cli.emit_list("provider", cli.client.list_providers(**_list_params(a)))
    else:
        cli.emit_one(cli.client.show_provider(a.provider_id))
    return EXIT_OK


def cmd_protectable(cli: Cli, a: argparse.Namespace) -> int:
    c = cli.client
    if a.action == "list":
        types = c.list_protectables()
        if a.format == "json":
            cli.out.write(json.dumps(types, indent=2) + "\n")
        else:
            cli.emit_list("protectable", [{"protectable_type": t} for t in types])
    elif a.action == "show":
        cli.emit_one(c.show_protectable(a.type))
    elif a.action == "instances":
        parameters = _json_arg(a.parameters, "--parameters")
        cli.emit_list("instance", c.list_protectable_instances(a.type, parameters, **_list_params(a)))
    else:
        parameters = _json_arg(a.parameters, "--parameters")
        cli.emit_one(c.show_protectable_instance(a.type, a.instance_id, parameters))
    return EXIT_OK


def cmd_plan(cli: Cli, a: argparse.Namespace) -> int:
    c = cli.client
    if a.action == "create":
        if not a.resource:
            raise UsageError("plan create: at least one --resource TYPE=ID[=NAME] is required")
        cli.emit_one(c.create_plan(a.name, a.provider_id, [_resource_arg(r) for r in a.resource],
                                   _json_arg(a.parameters, "--parameters"), a.description))
    elif a.action == "list":
        cli.emit_list("plan", c.list_plans(**_list_params(a, "name", "status")))
    elif a.action == "show":
        cli.emit_one(c.show_plan(a.plan_id))
    elif a.action == "update":
        values: dict[str, Any] = {k: getattr(a, k) for k in ("name", "description", "status")
                                  if getattr(a, k) is not None}
        if a.resource:
            values["resources"] = [_resource_arg(r) for r in a.resource]
        if a.parameters is not None:
            values["parameters"] = _json_arg(a.parameters, "--parameters")
        if not values:
            raise UsageError("plan update: nothing to change")
        cli.emit_one(c.update_plan(a.plan_id, **values))
    else:
        c.delete_plan(a.plan_id)
        cli.err.write(f"Plan {a.plan_id} deleted.\n")
    return EXIT_OK


def cmd_checkpoint(cli: Cli, a: argparse.Namespace) -> int:
    c = cli.client
    if a.action == "create":
        cp = c.create_checkpoint(a.provider_id, a.plan_id, _kv_arg(a.extra_info, "--extra-info"))
        code = EXIT_OK
        if a.wait:
            code, final = cli.wait(lambda: c.show_checkpoint(a.provider_id, cp["id"]), CHECKPOINT_DONE,
                                   CHECKPOINT_FAILED, show_bytes=True)
            cp = final or cp
        cli.emit_one(cp)
        return code
    if a.action == "list":
        cli.emit_list("checkpoint", c.list_checkpoints(
            a.provider_id, **_list_params(a, "plan_id", "status", "start_date", "end_date", "project_id")))
    elif a.action == "show":
        cli.emit_one(c.show_checkpoint(a.provider_id, a.checkpoint_id))
    elif a.action == "delete":
        c.delete_checkpoint(a.provider_id, a.checkpoint_id)
        if a.wait:
            def fetch() -> dict[str, Any] | None:
                try:
                    return c.show_checkpoint(a.provider_id, a.checkpoint_id)
                except ClientError as err:
                    if err.status == 404:
                        return None
                    raise

            code, _final = cli.wait(fetch, {"deleted", "error-deleting", "error"}, CHECKPOINT_FAILED,
                                    show_bytes=False)
            if code != EXIT_OK:
                cli.err.write(f"Checkpoint {a.checkpoint_id} was not deleted.\n")
                return code
        cli.err.write(f"Checkpoint {a.checkpoint_id} {'deleted' if a.wait else 'is being deleted'}.\n")
    else:
        c.reset_checkpoint_state(a.provider_id, a.checkpoint_id, a.state)
        cli.err.write(f"Checkpoint {a.checkpoint_id} reset to {a.state}.\n")
    return EXIT_OK


def _run_create(cli: Cli, a: argparse.Namespace, kind: str) -> int:
    c = cli.client
    parameters = _json_arg(a.parameters, "--parameters")
    show: Callable[[str], dict[str, Any]]
    if kind == "restore":
        if a.restore_name:
            cp = c.show_checkpoint(a.provider_id, a.checkpoint_id)
            types = {r.get("type") for r in (cp.get("protection_plan") or {}).get("resources", [])}
            for rtype in sorted(t for t in types if t):
                parameters.setdefault(rtype, {})["restore_name"] = a.restore_name
        run = c.create_restore(a.provider_id, a.checkpoint_id, parameters, restore_target=a.restore_target)
        show = c.show_restore
    else:
        run = c.create_verification(a.provider_id, a.checkpoint_id, parameters)
        show = c.show_verification
    code = EXIT_OK
    if a.wait:
        code, final = cli.wait(lambda: show(run["id"]), RUN_DONE, RUN_FAILED, show_bytes=False)
        run = final or run
    cli.emit_one(run)
    return code


def cmd_restore(cli: Cli, a: argparse.Namespace) -> int:
    if a.action == "create":
        return _run_create(cli, a, "restore")
    if a.action == "list":
        cli.emit_list("restore", cli.client.list_restores(**_list_params(a, "status", "checkpoint_id")))
    else:
        cli.emit_one(cli.client.show_restore(a.restore_id))
    return EXIT_OK


def cmd_verification(cli: Cli, a: argparse.Namespace) -> int:
    if a.action == "create":
        return _run_create(cli, a, "verification")
    if a.action == "list":
        params = _list_params(a, "status", "checkpoint_id")
        cli.emit_list("verification", cli.client.list_verifications(**params))
    else:
        cli.emit_one(cli.client.show_verification(a.verification_id))
    return EXIT_OK


def cmd_operationlog(cli: Cli, a: argparse.Namespace) -> int:
    if a.action == "list":
        filters = ("checkpoint_id", "plan_id", "restore_id", "status", "operation_type", "provider_id")
        cli.emit_list("operationlog", cli.client.list_operation_logs(**_list_params(a, *filters)))
    else:
        cli.emit_one(cli.client.show_operation_log(a.operation_log_id))
    return EXIT_OK


def _trigger_properties(a: argparse.Namespace) -> dict[str, Any]:
    props = {key: getattr(a, key) for key in ("pattern", "start_time", "end_time", "window")
             if getattr(a, key, None) is not None}
    if a.trigger_format is not None:
        props["format"] = a.trigger_format
    for key, value in _kv_arg(a.property, "--property").items():
        props.setdefault(key, value)
    return props


def cmd_trigger(cli: Cli, a: argparse.Namespace) -> int:
    c = cli.client
    if a.action == "create":
        props = _trigger_properties(a)
        if "pattern" not in props:
            raise UsageError("trigger create: --pattern is required")
        cli.emit_one(c.create_trigger(a.name, props, a.type))
    elif a.action == "list":
        cli.emit_list("trigger", c.list_triggers(**_list_params(a, "name", "type")))
    elif a.action == "show":
        cli.emit_one(c.show_trigger(a.trigger_id))
    elif a.action == "update":
        props = _trigger_properties(a)
        if a.name is None and not props:
            raise UsageError("trigger update: nothing to change")
        cli.emit_one(c.update_trigger(a.trigger_id, a.name, props))
    else:
        c.delete_trigger(a.trigger_id)
        cli.err.write(f"Trigger {a.trigger_id} deleted.\n")
    return EXIT_OK


def cmd_scheduledoperation(cli: Cli, a: argparse.Namespace) -> int:
    c = cli.client
    if a.action == "create":
        definition: dict[str, Any] = {"provider_id": a.provider_id, "plan_id": a.plan_id}
        definition.update({k: getattr(a, k) for k in RETENTION_OPTIONS if getattr(a, k) is not None})
        cli.emit_one(c.create_scheduled_operation(a.name, a.operation_type, a.trigger_id, definition,
                                                  a.description))
    elif a.action == "list":
        params = _list_params(a, "name", "operation_type", "trigger_id", "plan_id")
        cli.emit_list("scheduledoperation", c.list_scheduled_operations(**params))
    elif a.action == "show":
        cli.emit_one(c.show_scheduled_operation(a.operation_id))
    elif a.action == "suspend":
        cli.emit_one(c.suspend_scheduled_operation(a.operation_id))
    elif a.action == "resume":
        cli.emit_one(c.resume_scheduled_operation(a.operation_id))
    elif a.action == "logs":
        params = _list_params(a, "state")
        params.pop("all_tenants", None)
        cli.emit_list("scheduledoperationlog", c.list_scheduled_operation_logs(a.operation_id, **params))
    else:
        c.delete_scheduled_operation(a.operation_id)
        cli.err.write(f"Scheduled operation {a.operation_id} deleted.\n")
    return EXIT_OK


def _add_trigger_properties(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pattern", help="Cron expression, or an RFC 5545 VEVENT with RRULE for --format calendar.")
    p.add_argument("--format", dest="trigger_format", choices=["crontab", "calendar"],
                   help="Pattern format (default crontab).")
    p.add_argument("--start-time", dest="start_time", help="UTC, e.g. 2026-01-31T08:30:00")
    p.add_argument("--end-time", dest="end_time")
    p.add_argument("--window", type=int, help="Seconds after a fire time its run may still start.")
    p.add_argument("--property", action="append", metavar="KEY=VALUE",
                   help="Karbor's spelling of the options above (repeatable).")


def _add_scheduling_commands(groups: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    g = groups.add_parser("trigger", help="Time triggers.").add_subparsers(dest="action", required=True)
    p = g.add_parser("create")
    p.add_argument("name")
    p.add_argument("--type", default="time", choices=["time"])
    _add_trigger_properties(p)
    _add_list_options(g.add_parser("list"), "name", "type")
    g.add_parser("show").add_argument("trigger_id")
    p = g.add_parser("update")
    p.add_argument("trigger_id")
    p.add_argument("--name")
    _add_trigger_properties(p)
    g.add_parser("delete").add_argument("trigger_id")

    g = groups.add_parser("scheduledoperation", help="Scheduled operations and their logs.").add_subparsers(
        dest="action", required=True)
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
    _add_list_options(g.add_parser("list"), "name", "operation_type", "trigger_id", "plan_id")
    for name in ("show", "delete", "suspend", "resume"):
        g.add_parser(name).add_argument("operation_id")
    p = g.add_parser("logs", help="The runs of a scheduled operation, newest first.")
    p.add_argument("operation_id")
    _add_list_options(p, "state", all_tenants=False)


def cmd_service(cli: Cli, a: argparse.Namespace) -> int:
    c = cli.client
    if a.action == "list":
        cli.emit_list("service", c.list_services(host=a.host, binary=a.binary))
        return EXIT_OK
    matches = [s for s in c.list_services(host=a.host, binary=a.binary)
               if s.get("host") == a.host and s.get("binary") == a.binary]
    if not matches:
        raise ClientError(0, f"no {a.binary} service on host {a.host} (see 'strongroom service list')")
    if a.action == "disable":
        cli.emit_one(c.update_service(matches[0]["id"], "disabled", a.reason))
    else:
        cli.emit_one(c.update_service(matches[0]["id"], "enabled"))
    return EXIT_OK


# -- parser -----------------------------------------------------------------------


def _add_list_options(p: argparse.ArgumentParser, *filters: str, all_tenants: bool = True) -> None:
    p.add_argument("--limit", type=int, help="Page size (the server caps it).")
    p.add_argument("--marker", help="Id of the last item of the previous page.")
    p.add_argument("--sort", help="key:dir[,key:dir...], e.g. created_at:desc")
    for name in filters:
        p.add_argument("--" + name.replace("_", "-"), dest=name)
    if all_tenants:
        p.add_argument("--all-tenants", action="store_true", help="Every project (admin only).")


def _add_wait(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true", help="Poll until the operation finishes.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="strongroom", description="Strongroom data-protection client.")
    parser.add_argument("--url", default=os.environ.get("STRONGROOM_URL", DEFAULT_URL),
                        help="API endpoint (env STRONGROOM_URL).")
    parser.add_argument("--project", default=os.environ.get("OS_PROJECT_ID", "default"),
                        help="Project id (env OS_PROJECT_ID).")
    parser.add_argument("--token", default=os.environ.get("OS_AUTH_TOKEN", "noauth"),
                        help="X-Auth-Token (env OS_AUTH_TOKEN).")
    parser.add_argument("-f", "--format", choices=["table", "json"], default="table")
    parser.add_argument("--http-timeout", type=float, default=30.0, help=argparse.SUPPRESS)
    parser.add_argument("--poll-interval", type=float, default=2.0, help="Seconds between --wait polls.")
    parser.add_argument("--timeout", type=float, default=24 * 3600.0, help="Give up --wait after this long.")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")

    g = groups.add_parser("provider", help="Providers.").add_subparsers(dest="action", required=True)
    _add_list_options(g.add_parser("list"), all_tenants=False)
    g.add_parser("show").add_argument("provider_id")

    g = groups.add_parser("protectable", help="Protectable types and instances.").add_subparsers(
        dest="action", required=True)
    g.add_parser("list")
    g.add_parser("show").add_argument("type")
    p = g.add_parser("instances")
    p.add_argument("type")
    p.add_argument("--parameters", help="JSON object of plugin-specific filters.")
    _add_list_options(p, all_tenants=False)
    p = g.add_parser("instance")
    p.add_argument("type")
    p.add_argument("instance_id")
    p.add_argument("--parameters")

    g = groups.add_parser("plan", help="Protection plans.").add_subparsers(dest="action", required=True)
    p = g.add_parser("create")
    p.add_argument("name")
    p.add_argument("provider_id")
    p.add_argument("--resource", action="append", metavar="TYPE=ID[=NAME]", help="Repeatable.")
    p.add_argument("--parameters", help="JSON object keyed by type or type#id.")
    p.add_argument("--description")
    _add_list_options(g.add_parser("list"), "name", "status")
    g.add_parser("show").add_argument("plan_id")
    p = g.add_parser("update")
    p.add_argument("plan_id")
    p.add_argument("--name")
    p.add_argument("--description")
    p.add_argument("--status", choices=["suspended", "started"])
    p.add_argument("--resource", action="append", metavar="TYPE=ID[=NAME]", help="Replaces all resources.")
    p.add_argument("--parameters")
    g.add_parser("delete").add_argument("plan_id")

    g = groups.add_parser("checkpoint", help="Checkpoints.").add_subparsers(dest="action", required=True)
    p = g.add_parser("create")
    p.add_argument("provider_id")
    p.add_argument("plan_id")
    p.add_argument("--extra-info", action="append", metavar="KEY=VALUE")
    _add_wait(p)
    p = g.add_parser("list")
    p.add_argument("provider_id")
    _add_list_options(p, "plan_id", "status", "start_date", "end_date", "project_id")
    for name in ("show", "delete", "reset-state"):
        p = g.add_parser(name)
        p.add_argument("provider_id")
        p.add_argument("checkpoint_id")
        if name == "delete":
            _add_wait(p)
        if name == "reset-state":
            p.add_argument("--state", choices=["available", "error"], required=True)

    for kind in ("restore", "verification"):
        g = groups.add_parser(kind, help=f"{kind.capitalize()}s.").add_subparsers(dest="action",
                                                                                 required=True)
        p = g.add_parser("create")
        p.add_argument("provider_id")
        p.add_argument("checkpoint_id")
        p.add_argument("--parameters", help="JSON object keyed by type or type#id.")
        if kind == "restore":
            p.add_argument("--restore-name", help="Sets restore_name for every resource type.")
            p.add_argument("--restore-target")
        _add_wait(p)
        _add_list_options(g.add_parser("list"), "status", "checkpoint_id")
        g.add_parser("show").add_argument(f"{kind}_id")

    g = groups.add_parser("operationlog", help="Operation logs.").add_subparsers(dest="action", required=True)
    _add_list_options(g.add_parser("list"), "checkpoint_id", "plan_id", "restore_id", "status",
                      "operation_type", "provider_id")
    g.add_parser("show").add_argument("operation_log_id")
    _add_scheduling_commands(groups)

    g = groups.add_parser("service", help="Services, up or down (admin).").add_subparsers(dest="action",
                                                                                       required=True)
    p = g.add_parser("list")
    p.add_argument("--host")
    p.add_argument("--binary")
    for name in ("disable", "enable"):
        p = g.add_parser(name, help=f"{name.capitalize()} one service (a disabled worker takes no new work).")
        p.add_argument("host")
        p.add_argument("binary", help="e.g. strongroom-protection")
        if name == "disable":
            p.add_argument("--reason", help="Why (shown by 'service list').")
    return parser


COMMANDS: dict[str, Callable[[Cli, argparse.Namespace], int]] = {
    "provider": cmd_provider,
    "protectable": cmd_protectable,
    "plan": cmd_plan,
    "checkpoint": cmd_checkpoint,
    "restore": cmd_restore,
    "verification": cmd_verification,
    "operationlog": cmd_operationlog,
    "trigger": cmd_trigger,
    "scheduledoperation": cmd_scheduledoperation,
    "service": cmd_service,
}


def main(argv: Sequence[str] | None = None, *, sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Run one command; returns the exit code (the console script passes it to ``sys.exit``)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    cli = Cli(args, out, err, sleep, clock)
    try:
        return COMMANDS[args.group](cli, args)
    except UsageError as exc:
        err.write(f"strongroom: error: {exc}\n")
        return EXIT_USAGE
    except ClientError as exc:
        suffix = f" (request {exc.request_id})" if exc.request_id else ""
        err.write(f"ERROR: {exc.message}{suffix}\n")
        return EXIT_FAILED
    finally:
        cli.client.close()


if __name__ == "__main__":
    sys.exit(main())
