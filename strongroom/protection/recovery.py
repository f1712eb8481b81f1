"""Crash recovery of the single embedded process: after a restart, nothing may stay running.

Only for a process alone on its state directory (the all-in-one, whose
``flock`` on it proves its predecessor with the same owner id is dead).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from strongroom.clock import Clock
from strongroom.db.api import Database
from strongroom.objects.kinds import RestoreKind
from strongroom.objects.status import CheckpointStatus, RestoreStatus

LOG = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the service stopped during the run"
#: Operation logs left open in these statuses end in the paired one.
_LOG_ENDS = ((CheckpointStatus.PROTECTING, CheckpointStatus.ERROR),
             (CheckpointStatus.DELETING, CheckpointStatus.ERROR_DELETING),
             (RestoreStatus.IN_PROGRESS, RestoreStatus.FAIL))


class Recovery:
    """``collect(sweep=False)`` is one garbage collection pass over every provider (see
    :class:`~strongroom.protection.collection.GarbageCollection`)."""

    def __init__(self, db: Database, host: str, clock: Clock,
                 collect: Callable[..., list[dict[str, Any]]]) -> None:
        self.db = db
        self.host = host
        self.clock = clock
        self._collect = collect

    def recover_interrupted(self) -> dict[str, int]:
        """Operation logs this host left open are closed, restores and verifications left
        ``in_progress`` end ``fail``, and the checkpoints the predecessor left unfinished are
        reclaimed by garbage collection at once: ``protecting`` ends ``error`` and an interrupted
        delete ends ``deleted``, with their objects removed."""
        counts = {"logs": 0, "restores": 0, "reclaimed": 0}
        for running, final in _LOG_ENDS:
            for log in self.db.list_operation_logs(None, filters={"status": running}):
                if log.ended_at is None and log.host == self.host:
                    self.db.update_operation_log(log.id, {"status": final, "ended_at": self.clock.now(),
                                                          "error_info": INTERRUPTED})
                    counts["logs"] += 1
        for kind in RestoreKind:
            for restore in self.db.list_restores(None, kind=kind, filters={"status": RestoreStatus.IN_PROGRESS}):
                self.db.update_restore(restore.id, {
                    "status": RestoreStatus.FAIL,
                    "resources_reason": {**restore.resources_reason, "_": INTERRUPTED}})
                counts["restores"] += 1
        for result in self._collect(sweep=False):
            counts["reclaimed"] += len(result.get("reclaimed", []))
            if "error" in result:
                LOG.warning("%s: interrupted checkpoints are left to garbage collection: %s",
                            result["bank"], result["error"])
        if any(counts.values()):
            LOG.warning("recovered interrupted work: %s", counts)
        return counts
