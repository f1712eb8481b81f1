"""What the ``openstack data protection`` commands share: the client, name-or-id lookup, output columns and
``--wait``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from osc_lib import exceptions
from osc_lib.cli import format_columns
from osc_lib.command import command

from strongroom.client import lookup
from strongroom.client.client import Client, ClientError
from strongroom.client.commands.base import EXIT_OK, Interrupted, wait_for


def client_of(cmd: command.Command) -> Client:
    """The command's :class:`Client`, made by :func:`strongroom.osc.plugin.make_client` once per run.

    Not ``client_manager.data_protection``: with python-karborclient installed beside Strongroom, both
    plugins are ``data_protection`` and the attribute is whichever OSC loaded last."""
    manager = cmd.app.client_manager
    client = getattr(manager, "_strongroom_client", None)
    if client is None:
        from strongroom.osc import plugin

        try:
            client = plugin.make_client(manager)
        except plugin.EndpointNotFound as err:
            raise exceptions.CommandError(str(err)) from None
        manager._strongroom_client = client  # type: ignore[attr-defined]
    return client  # type: ignore[no-any-return]


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args)``, an API error as osc-lib's CommandError (the message and request id, no traceback)."""
    try:
        return fn(*args, **kwargs)
    except ClientError as err:
        suffix = f" (request {err.request_id})" if err.request_id else ""
        raise exceptions.CommandError(f"{err.message}{suffix}") from None


def find(kind: str, items: Iterable[dict[str, Any]], name_or_id: str) -> dict[str, Any]:
    """The one item whose id, else whose name, is ``name_or_id`` (:func:`strongroom.client.lookup.find`);
    CommandError naming the matches when several share the name, or saying none has it."""
    return call(lookup.find, kind, items, name_or_id)  # type: ignore[no-any-return]


def plan_id(c: Client, name_or_id: str) -> str:
    return call(lookup.plan_id, c, name_or_id)  # type: ignore[no-any-return]


def provider_id(c: Client, name_or_id: str) -> str:
    return call(lookup.provider_id, c, name_or_id)  # type: ignore[no-any-return]


def trigger_id(c: Client, name_or_id: str) -> str:
    return call(lookup.trigger_id, c, name_or_id)  # type: ignore[no-any-return]


def scheduled_operation_id(c: Client, name_or_id: str) -> str:
    return call(lookup.scheduled_operation_id, c, name_or_id)  # type: ignore[no-any-return]


def _column(value: Any) -> Any:
    """Nested values as osc-lib columns: readable in a table, themselves in ``-f json``/``yaml``."""
    if isinstance(value, dict):
        return format_columns.DictColumn(value)
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return format_columns.ListDictColumn(value)
        return format_columns.ListColumn(value)
    return value


def one(obj: dict[str, Any]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """A ShowOne's answer: every property, sorted."""
    keys = tuple(sorted(obj))
    return keys, tuple(_column(obj[key]) for key in keys)


def dotted(item: dict[str, Any], name: str) -> Any:
    value: Any = item
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def rows(columns: Sequence[str], items: Iterable[dict[str, Any]]) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """A Lister's answer: ``columns`` (dotted names reach into nested objects) of each item."""
    return tuple(columns), [tuple(_column(dotted(item, col)) for col in columns) for item in items]


def add_list_options(parser: argparse.ArgumentParser, all_projects: bool = True) -> None:
    parser.add_argument("--marker", metavar="<id>", help="Id of the last item of the previous page.")
    parser.add_argument("--limit", type=int, metavar="<num>", help="Page size (the server caps it).")
    parser.add_argument("--sort", metavar="<key>[:<direction>]", help="e.g. created_at:desc")
    if all_projects:
        parser.add_argument("--all-projects", action="store_true", help="Every project (admin only).")


def list_params(args: argparse.Namespace, **filters: Any) -> dict[str, Any]:
    params = {"marker": args.marker, "limit": args.limit, "sort": args.sort, **filters}
    if getattr(args, "all_projects", False):
        params["all_tenants"] = "1"
    return {k: v for k, v in params.items() if v is not None}


def json_object(text: str | None, name: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise exceptions.CommandError(f"{name}: not valid JSON: {err.msg}") from None
    if not isinstance(value, dict):
        raise exceptions.CommandError(f"{name}: must be a JSON object")
    return value


def key_values(items: Sequence[str] | None, name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        for pair in item.split(","):
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise exceptions.CommandError(f"{name} {pair!r}: expected KEY=VALUE")
            out[key] = value
    return out


def add_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true",
                        help="Poll until the operation finishes, showing bytes, rate and ETA on stderr.")
    parser.add_argument("--poll-interval", type=float, default=2.0, metavar="<seconds>",
                        help="Seconds between --wait polls (default 2).")
    parser.add_argument("--wait-timeout", type=float, default=24 * 3600.0, metavar="<seconds>",
                        help="Give up --wait after this long (exit code 3).")


class WaitFailed(exceptions.CommandError):
    """``--wait`` ended in a failed status or timed out."""


def wait(args: argparse.Namespace, fetch: Callable[[], dict[str, Any] | None], done: set[str],
         failed: set[str], show_bytes: bool, ident: str) -> dict[str, Any] | None:
    """``--wait``: the shared progress line on stderr; Ctrl-C prints ``ident`` (what was created) and ends
    with cliff's 130."""
    try:
        code, final = wait_for(lambda: call(fetch), done, failed, show_bytes, err=sys.stderr, sleep=time.sleep,
                               clock=time.monotonic, poll_interval=args.poll_interval, timeout=args.wait_timeout,
                               ident=ident)
    except Interrupted as exc:
        sys.stderr.write(f"\ninterrupted: {exc.ident} carries on in the service\n")
        sys.stdout.write(f"{exc.ident}\n")
        sys.stdout.flush()
        raise KeyboardInterrupt from None
    if code != EXIT_OK:
        status = (final or {}).get("status")
        reason = (final or {}).get("status_reason")
        raise WaitFailed(f"{ident}: {status}" + (f" ({reason})" if reason else ""))
    return final
