"""Crash recovery of the single embedded process: after a restart, nothing may stay running.

Only for a process alone on its state directory (the all-in-one, whose
``flock`` on it proves its predecessor with the same owner id is dead).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from strongroom import exceptions
from strongroom.clock import Clock
from strongroom.db.api import Database
from strongroom.objects.kinds import OperationKind, RestoreKind
from strongroom.objects.records import Restore
from strongroom.objects.status import CheckpointStatus, RestoreStatus
from strongroom.protection.providers import ProviderRegistry

LOG = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the service stopped during the run"
#: Operation logs left open in these statuses end in the paired one.
_LOG_ENDS = ((CheckpointStatus.PROTECTING, CheckpointStatus.ERROR),
             (CheckpointStatus.DELETING, CheckpointStatus.ERROR_DELETING),
             (CheckpointStatus.COPYING, CheckpointStatus.ERROR),
             (RestoreStatus.IN_PROGRESS, RestoreStatus.FAIL))
_KINDS = {RestoreKind.RESTORE: OperationKind.RESTORE, RestoreKind.VERIFICATION: OperationKind.VERIFY}


class Recovery:
    """``collect(sweep=False)`` is one garbage collection pass over every provider (see
    :class:`~strongroom.protection.collection.GarbageCollection`)."""

    def __init__(self, db: Database, host: str, clock: Clock,
                 collect: Callable[..., list[dict[str, Any]]], registry: ProviderRegistry | None = None) -> None:
        self.db = db
        self.host = host
        self.clock = clock
        self._collect = collect
        self.registry = registry

    def recover_interrupted(self) -> dict[str, int]:
        """Operation logs this host left open are closed, restores and verifications left
        ``in_progress`` end ``fail`` (what their hooks staged, a partly restored volume, is removed
        by the resource's plugin, which says so in the resource's reason), and the checkpoints the
        predecessor left unfinished are reclaimed by garbage collection at once: ``protecting`` ends
        ``error`` and an interrupted delete ends ``deleted``, with their objects removed."""
        counts = {"logs": 0, "restores": 0, "reclaimed": 0}
        for running, final in _LOG_ENDS:
            for log in self.db.list_operation_logs(None, filters={"status": running}):
                if log.ended_at is None and log.host == self.host:
                    self.db.update_operation_log(log.id, {"status": final, "ended_at": self.clock.now(),
                                                          "error_info": INTERRUPTED})
                    counts["logs"] += 1
        for kind in RestoreKind:
            for restore in self.db.list_restores(None, kind=kind, filters={"status": RestoreStatus.IN_PROGRESS}):
                left = self._abandon(restore, _KINDS[kind])
                self.db.update_restore(restore.id, {
                    "status": RestoreStatus.FAIL, "resume_state": {},
                    "resources_reason": {**restore.resources_reason, **left, "_": INTERRUPTED}})
                counts["restores"] += 1
        for result in self._collect(sweep=False):
            counts["reclaimed"] += len(result.get("reclaimed", []))
            if "error" in result:
                LOG.warning("%s: interrupted checkpoints are left to garbage collection: %s",
                            result["bank"], result["error"])
        if any(counts.values()):
            LOG.warning("recovered interrupted work: %s", counts)
        return counts

    def _abandon(self, restore: Restore, kind: OperationKind) -> dict[str, str]:
        """Have each resource's plugin clean up what its dead hook left; returns the reasons, per resource."""
        reasons: dict[str, str] = {}
        for key, state in sorted(restore.resume_state.items()):
            if not isinstance(state, dict) or not state or self.registry is None:
                continue
            try:
                plugin = self.registry.get(restore.provider_id).plugin_for(key.split("#", 1)[0])
                said = plugin.abandon(kind, state)
            except (exceptions.StrongroomError, OSError) as err:
                said = f"{INTERRUPTED}; what it left could not be cleaned up: {err}"
                LOG.warning("restore %s: %s: %s", restore.id, key, said)
            if said:
                reasons[key] = f"{INTERRUPTED}; {said}" if not said.startswith(INTERRUPTED) else said
        return reasons
