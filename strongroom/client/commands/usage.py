"""``strongroom usage``: what the project's checkpoints hold in each provider's bank; ``strongroom pool list``:
the block backends' pools and their capacity (admin)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from strongroom.client.commands.base import EXIT_OK, Cli

if TYPE_CHECKING:
    from strongroom.client.commands.base import SubParsers

COLUMNS = ["provider_id", "project_id", "checkpoints", "logical_bytes", "stored_bytes", "chunk_bytes",
           "checkpoint_bytes", "unreferenced_chunk_bytes", "dedup_ratio", "compression_ratio"]
POOL_COLUMNS = ["name", "provider_name", "driver", "total_bytes", "free_bytes", "allocated_bytes", "error"]


def register(groups: SubParsers) -> None:
    p = groups.add_parser("usage", help="What the project's checkpoints hold in each provider's bank: logical "
                                        "bytes, bytes stored after dedup and compression, checkpoints by status.")
    p.add_argument("--provider-id", help="Only this provider's bank.")
    p.add_argument("--all-tenants", action="store_true", help="Every project (admin only).")
    p.set_defaults(handler=run_usage, action="show")
    g = groups.add_parser("pool", help="Block backend pools and their capacity (admin).")
    g.set_defaults(handler=run_pools)
    g.add_subparsers(dest="action", required=True).add_parser("list")


def run_usage(cli: Cli, a: argparse.Namespace) -> int:
    cli.emit_list(COLUMNS, cli.client.usage(a.provider_id, a.all_tenants))
    return EXIT_OK


def run_pools(cli: Cli, a: argparse.Namespace) -> int:
    cli.emit_list(POOL_COLUMNS, cli.client.list_pools())
    return EXIT_OK
