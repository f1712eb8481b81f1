"""``strongroom``: the command-line client (argparse; a pure HTTP client of the v1 API).

This module holds the global options and ``main``; each command group defines its sub-commands beside the
functions they run, in :mod:`strongroom.client.commands`, and :mod:`strongroom.client.output` draws the tables.

The output options (``-f/--format table|json|value|yaml|csv`` and ``-c/--column``, repeatable) may stand
anywhere on the line, before or after the sub-command, as with ``openstack``: :func:`hoist_output_options`
moves them in front before argparse sees the line.

Exit codes: 0 success; 1 an API error, or ``--wait`` ended in ``error``/``fail``; 2 bad usage;
3 ``--wait`` gave up after ``--timeout`` seconds; 130 Ctrl-C (``--wait`` first prints the id it was
following: the operation carries on in the service).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import TextIO

from strongroom import admin_token
from strongroom.client import lookup
from strongroom.client.client import ClientError
from strongroom.client.commands import register_all
from strongroom.client.commands.base import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Cli,
    Handler,
    Interrupted,
    UsageError,
)
from strongroom.client.output import FORMATS

DEFAULT_URL = "http://127.0.0.1:8799"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="strongroom", description="Strongroom data-protection client.")
    parser.add_argument("--url", default=os.environ.get("STRONGROOM_URL", DEFAULT_URL),
                        help="API endpoint (env STRONGROOM_URL).")
    parser.add_argument("--project", default=os.environ.get("OS_PROJECT_ID", "default"),
                        help="Project id (env OS_PROJECT_ID).")
    parser.add_argument("--token", default=os.environ.get("OS_AUTH_TOKEN"),
                        help="X-Auth-Token (env OS_AUTH_TOKEN).  Default against a loopback URL: the embedded "
                             "service's administrator token, read from $STRONGROOM_STATE_DIR/admin-token "
                             "(default .strongroom/admin-token).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("-f", "--format", choices=FORMATS, default="table",
                        help="Output format (anywhere on the line).")
    parser.add_argument("-c", "--column", dest="columns", action="append", metavar="COLUMN",
                        help="Show only this column or property (repeatable; anywhere on the line).")
    parser.add_argument("--debug", action="store_true",
                        help="Print each API call on stderr: method, URL, status and the request id the API "
                             "answered with (it finds the call's lines in the services' logs).")
    parser.add_argument("--request-id", default=os.environ.get("STRONGROOM_REQUEST_ID"), metavar="req-UUID",
                        help="Send this id (req-<uuid>) as X-OpenStack-Request-ID with every call: the services "
                             "log it as the global request id of each call (env STRONGROOM_REQUEST_ID).")
    parser.add_argument("--http-timeout", type=float, default=30.0, help=argparse.SUPPRESS)
    parser.add_argument("--poll-interval", type=float, default=2.0, help="Seconds between --wait polls.")
    parser.add_argument("--timeout", type=float, default=24 * 3600.0, help="Give up --wait after this long.")
    register_all(parser.add_subparsers(dest="group", required=True, metavar="COMMAND"))
    return parser


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("strongroom")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


_SHORT_VALUE = {"-f": FORMATS, "--format": FORMATS, "-c": None, "--column": None}


def hoist_output_options(argv: Sequence[str]) -> list[str]:
    """``argv`` with every ``-f FORMAT``/``--format FORMAT``/``-c COLUMN``/``--column COLUMN`` (also
    ``--format=json``, ``-fjson``) moved to the front, where the top-level parser reads them.  ``--format``
    with a value that is no output format stays put (``trigger create --format calendar``); nothing after
    ``--`` moves."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    args = list(argv)
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        name, eq, value = arg.partition("=")
        if not eq and arg[:2] in ("-f", "-c") and len(arg) > 2 and not arg.startswith("--"):
            name, value, eq = arg[:2], arg[2:], "="
        if name in _SHORT_VALUE:
            choices = _SHORT_VALUE[name]
            if not eq:
                if i + 1 >= len(args):
                    rest.append(arg)
                    break
                value = args[i + 1]
            if choices is None or value in choices:
                front += [name, value]
                i += 1 if eq else 2
                continue
        rest.append(arg)
        i += 1
    return front + rest


def default_token(url: str) -> str:
    """The embedded service's own administrator token when ``url`` is on this host, else ``noauth``.

    Never sent anywhere else: the file is a local secret."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    local = host == "localhost"
    if not local:
        try:
            local = ipaddress.ip_address(host).is_loopback
        except ValueError:
            local = False
    return (admin_token.read() if local else None) or "noauth"


def main(argv: Sequence[str] | None = None, *, sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Run one command; returns the exit code (the console script passes it to ``sys.exit``)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = build_parser().parse_args(hoist_output_options(sys.argv[1:] if argv is None else argv))
    if not args.token:
        args.token = default_token(args.url)
    handler: Handler = args.handler  # set by the command group's parser
    try:
        cli = Cli(args, out, err, sleep, clock)
    except ValueError as exc:  # --request-id not of the form req-<uuid>
        err.write(f"strongroom: error: --request-id: {exc}\n")
        return EXIT_USAGE
    try:
        lookup.resolve_arguments(cli.client, args)  # a plan, provider, trigger or scheduled operation by name
        return handler(cli, args)
    except Interrupted as exc:
        what = f": {exc.ident} carries on in the service" if exc.ident else ""
        err.write(f"\ninterrupted{what}\n")
        if exc.ident:
            out.write(f"{exc.ident}\n")  # for a script that captured the id
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        err.write("\ninterrupted\n")
        return EXIT_INTERRUPTED
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
