"""``strongroom alert``: what the alert conditions found (``doc/alerts.md``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from strongroom.client.commands.base import EXIT_OK, Cli, add_group

if TYPE_CHECKING:
    from strongroom.client.commands.base import SubParsers

COLUMNS = ["severity", "condition", "resource_type", "resource_name", "message", "raised_at", "cleared_at"]


def register(groups: SubParsers) -> None:
    g = add_group(groups, "alert", "Alerts: the project's, and what puts its plans at risk.", run)
    p = g.add_parser("list", help="Alerts that are up, and those cleared recently.")
    p.add_argument("--active", choices=["true", "false"], help="Only the alerts that are up (true) or cleared.")
    p.add_argument("--severity", choices=["info", "warning", "error"])
    p.add_argument("--all-tenants", action="store_true", help="Every project (admin only).")


def run(cli: Cli, a: argparse.Namespace) -> int:
    params = {"active": a.active, "severity": a.severity, "all_tenants": "1" if a.all_tenants else None}
    cli.emit_list(COLUMNS, cli.client.list_alerts(**params))
    return EXIT_OK
