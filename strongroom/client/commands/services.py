"""``strongroom service``: the services of the deployment, up or down; disable or enable one (admin)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from strongroom.client.client import ClientError
from strongroom.client.commands.base import EXIT_OK, Cli, add_group

if TYPE_CHECKING:
    from strongroom.client.commands.base import SubParsers

COLUMNS = ["id", "binary", "host", "status", "state", "updated_at", "disabled_reason"]


def register(groups: SubParsers) -> None:
    g = add_group(groups, "service", "Services, up or down (admin).", run)
    p = g.add_parser("list")
    p.add_argument("--host")
    p.add_argument("--binary")
    for name in ("disable", "enable"):
        p = g.add_parser(name, help=f"{name.capitalize()} one service (a disabled worker takes no new work).")
        p.add_argument("host")
        p.add_argument("binary", help="e.g. strongroom-protection")
        if name == "disable":
            p.add_argument("--reason", help="Why (shown by 'service list').")


def run(cli: Cli, a: argparse.Namespace) -> int:
    c = cli.client
    if a.action == "list":
        cli.emit_list(COLUMNS, c.list_services(host=a.host, binary=a.binary))
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
