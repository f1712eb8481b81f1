"""``strongroom``: the command-line client (argparse; a pure HTTP client of the v1 API).

This module holds the global options and ``main``; each command group defines its sub-commands beside the
functions they run, in :mod:`strongroom.client.commands`, and :mod:`strongroom.client.output` draws the tables.

Exit codes: 0 success; 1 an API error, or ``--wait`` ended in ``error``/``fail``; 2 bad usage;
3 ``--wait`` gave up after ``--timeout`` seconds.
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
from strongroom.client.client import ClientError
from strongroom.client.commands import register_all
from strongroom.client.commands.base import EXIT_FAILED, EXIT_USAGE, Cli, Handler, UsageError

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
    parser.add_argument("-f", "--format", choices=["table", "json"], default="table")
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
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    if not args.token:
        args.token = default_token(args.url)
    handler: Handler = args.handler  # set by the command group's parser
    try:
        cli = Cli(args, out, err, sleep, clock)
    except ValueError as exc:  # --request-id not of the form req-<uuid>
        err.write(f"strongroom: error: --request-id: {exc}\n")
        return EXIT_USAGE
    try:
        return handler(cli, args)
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
