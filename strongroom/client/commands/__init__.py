"""The command groups of the ``strongroom`` CLI, one module each, in the order ``--help`` lists them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from strongroom.client.commands import (
    alerts,
    checkpoints,
    mount,
    operation_logs,
    plans,
    protectables,
    providers,
    restores,
    scheduled_operations,
    services,
    triggers,
    usage,
)

if TYPE_CHECKING:
    from strongroom.client.commands.base import SubParsers

GROUPS = (providers, protectables, plans, checkpoints, restores, operation_logs, triggers, scheduled_operations,
          services, alerts, usage, mount)


def register_all(groups: SubParsers) -> None:
    """Add every group's sub-commands to ``groups`` (the top-level sub-parsers)."""
    for module in GROUPS:
        module.register(groups)
