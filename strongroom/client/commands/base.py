"""What every command group of the ``strongroom`` CLI shares.

A group module defines ``register(groups)``, which adds its sub-command parsers and sets each group parser's
``handler`` default to the function that runs it: ``handler(cli, args) -> exit code``.  This module holds the
exit codes, :class:`UsageError`, the :class:`Cli` a handler works with (the HTTP client, output, ``--wait``)
and the argument helpers several groups use.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from strongroom.client import output
from strongroom.client.client import Client

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command ended by Ctrl-C


class UsageError(Exception):
    """A command-line value that cannot be used (exit code 2)."""


class Interrupted(Exception):
    """Ctrl-C during ``--wait``: ``ident`` is the id of what the command created (it carries on)."""

    def __init__(self, ident: str | None) -> None:
        super().__init__(ident)
        self.ident = ident


class Cli:
    """One command's run: the parsed arguments, the API client, stdout/stderr and the ``--wait`` clock."""

    def __init__(self, args: argparse.Namespace, stdout: TextIO, stderr: TextIO,
                 sleep: Callable[[float], None], clock: Callable[[], float]) -> None:
        self.args = args
        self.out = stdout
        self.err = stderr
        self.sleep = sleep
        self.clock = clock
        self.client = Client(args.url, args.project, token=args.token, timeout=args.http_timeout,
                             global_request_id=getattr(args, "request_id", None),
                             on_answer=self._debug if getattr(args, "debug", False) else None)

    def _debug(self, method: str, url: str, status: int, request_id: str | None) -> None:
        self.err.write(f"DEBUG: {method} {url} -> {status or 'no answer'} request id {request_id or '-'}\n")
        self.err.flush()

    # -- output ----------------------------------------------------------------

    def emit_one(self, obj: dict[str, Any]) -> None:
        try:
            output.write_one(self.out, obj, self.args.format, getattr(self.args, "columns", None))
        except output.ColumnError as err:
            raise UsageError(str(err)) from None

    def emit_list(self, columns: Sequence[str], items: list[dict[str, Any]]) -> None:
        try:
            output.write_list(self.out, columns, items, self.args.format, getattr(self.args, "columns", None))
        except output.ColumnError as err:
            raise UsageError(str(err)) from None

    # -- waiting ---------------------------------------------------------------

    def wait(self, fetch: Callable[[], dict[str, Any] | None], done: set[str], failed: set[str],
             show_bytes: bool, ident: str | None = None) -> tuple[int, dict[str, Any] | None]:
        """:func:`wait_for` with this run's stderr, clock, ``--poll-interval`` and ``--timeout``."""
        return wait_for(fetch, done, failed, show_bytes, err=self.err, sleep=self.sleep, clock=self.clock,
                        poll_interval=self.args.poll_interval, timeout=self.args.timeout, ident=ident)


def wait_for(fetch: Callable[[], dict[str, Any] | None], done: set[str], failed: set[str], show_bytes: bool, *,
             err: TextIO, sleep: Callable[[float], None], clock: Callable[[], float], poll_interval: float,
             timeout: float, ident: str | None = None) -> tuple[int, dict[str, Any] | None]:
    """Poll ``fetch`` until a status in ``done``; draw a one-line progress bar on ``err`` (bytes, rate, ETA
    from the record's ``progress``, or a restore's and verification's ``extra_info.progress``).  Returns the
    exit code and the last record.  Ctrl-C raises :class:`Interrupted` naming ``ident``, the id of what is
    being waited for (shared by ``strongroom`` and the ``openstack data protection`` commands)."""
    try:
        return _wait(fetch, done, failed, show_bytes, err, sleep, clock, poll_interval, timeout)
    except KeyboardInterrupt:
        raise Interrupted(ident) from None


def _wait(fetch: Callable[[], dict[str, Any] | None], done: set[str], failed: set[str], show_bytes: bool,
          err: TextIO, sleep: Callable[[float], None], clock: Callable[[], float], poll_interval: float,
          timeout: float) -> tuple[int, dict[str, Any] | None]:
    started = clock()
    first_bytes: int | None = None
    waited = 0.0
    obj: dict[str, Any] | None = None
    drawn = 0
    while True:
        obj = fetch()
        if obj is None:  # gone (e.g. a deleted checkpoint no longer listed)
            err.write("\n")
            return EXIT_OK, obj
        status = str(obj.get("status"))
        progress = obj.get("progress") or (obj.get("extra_info") or {}).get("progress") or {}
        done_bytes = int(progress.get("bytes_done") or 0)
        if first_bytes is None:
            first_bytes = done_bytes
        line = output.progress_line(status, done_bytes, int(progress.get("bytes_total") or 0),
                                    done_bytes - first_bytes, clock() - started, show_bytes)
        # Padded to the longest line drawn: a terminal overwrites "in_progress" with "success    ",
        # never shows "successgress".
        err.write("\r" + line.ljust(drawn))
        drawn = max(drawn, len(line))
        err.flush()
        if status in done:
            err.write("\n")
            return (EXIT_FAILED if status in failed else EXIT_OK), obj
        if waited >= timeout:
            err.write(f"\ngave up after {timeout:g} s; status is still {status}\n")
            return EXIT_TIMEOUT, obj
        sleep(poll_interval)
        waited += poll_interval


Handler = Callable[[Cli, argparse.Namespace], int]


# -- argument values ------------------------------------------------------------


def json_arg(text: str | None, name: str) -> dict[str, Any]:
    """A ``--parameters``-style JSON object; empty for no value."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"{name}: not valid JSON: {err.msg}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{name}: must be a JSON object")
    return value


def kv_arg(items: Sequence[str] | None, name: str) -> dict[str, str]:
    """Repeated ``KEY=VALUE`` values as a dict."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{name} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def list_params(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The query of a listing: paging, sorting, ``names`` as filters and ``--all-tenants``."""
    params = {name: getattr(args, name, None) for name in ("limit", "marker", "sort", *names)}
    if getattr(args, "all_tenants", False):
        params["all_tenants"] = "1"
    return {k: v for k, v in params.items() if v is not None}


# -- parser pieces ----------------------------------------------------------------


def add_group(groups: SubParsers, name: str, help: str, handler: Handler) -> SubParsers:
    """A command group (``strongroom <name> <action>``) run by ``handler``; returns its action sub-parsers."""
    parser = groups.add_parser(name, help=help)
    parser.set_defaults(handler=handler)
    return parser.add_subparsers(dest="action", required=True)


def add_list_options(p: argparse.ArgumentParser, *filters: str, all_tenants: bool = True) -> None:
    p.add_argument("--limit", type=int, help="Page size (the server caps it).")
    p.add_argument("--marker", help="Id of the last item of the previous page.")
    p.add_argument("--sort", help="key:dir[,key:dir...], e.g. created_at:desc")
    for name in filters:
        p.add_argument("--" + name.replace("_", "-"), dest=name)
    if all_tenants:
        p.add_argument("--all-tenants", action="store_true", help="Every project (admin only).")


def add_wait(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true", help="Poll until the operation finishes.")
