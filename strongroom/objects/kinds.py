"""Kinds that travel between services, the bank and the catalogue, as enums (never bare strings).

* :class:`OperationKind`: the runs protection drives through plugins' hooks.
* :class:`LoggedOperation`: what an operation log records (the runs, plus the work of
  garbage collection and copies); also what an active marker says its writer does.
* :class:`RestoreKind`: the two kinds of restore record.
"""

from __future__ import annotations

import enum


class OperationKind(enum.StrEnum):
    PROTECT = "protect"
    RESTORE = "restore"
    VERIFY = "verify"
    DELETE = "delete"


class LoggedOperation(enum.StrEnum):
    PROTECT = "protect"
    RESTORE = "restore"
    VERIFY = "verify"
    DELETE = "delete"
    COPY = "copy"
    RECLAIM = "reclaim"


class RestoreKind(enum.StrEnum):
    RESTORE = "restore"
    VERIFICATION = "verification"


#: Operations whose writers add chunks a checkpoint relies on (a chunk sweep stands down for them).
CHUNK_WRITERS = frozenset({LoggedOperation.PROTECT, LoggedOperation.COPY})
#: Operations that leave an active marker in the bank while they run.
BANK_WRITERS = frozenset({LoggedOperation.PROTECT, LoggedOperation.DELETE, LoggedOperation.COPY})

#: ``extra_info`` key of a checkpoint made by a scheduled run: the fire's id (``operationengine.runs``), which
#: makes a repeated protect for the same fire idempotent.
FIRE_KEY = "scheduled_fire_id"
