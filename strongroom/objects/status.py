"""Status enums and the one table of allowed transitions (``doc/architecture.md``, statuses)."""

from __future__ import annotations

import enum
from collections.abc import Mapping

from strongroom import exceptions


class CheckpointStatus(enum.StrEnum):
    PROTECTING = "protecting"
    AVAILABLE = "available"
    ERROR = "error"
    DELETING = "deleting"
    DELETED = "deleted"
    ERROR_DELETING = "error-deleting"
    COPYING = "copying"


class PlanStatus(enum.StrEnum):
    SUSPENDED = "suspended"
    STARTED = "started"


class RestoreStatus(enum.StrEnum):
    IN_PROGRESS = "in_progress"
    SUCCESS = "success"
    FAIL = "fail"


VerificationStatus = RestoreStatus


class ResourceStatus(enum.StrEnum):
    PROTECTING = "protecting"
    AVAILABLE = "available"
    ERROR = "error"
    RESTORING = "restoring"
    VERIFYING = "verifying"
    DELETING = "deleting"
    DELETED = "deleted"
    SUCCESS = "success"
    FAIL = "fail"


_C = CheckpointStatus
_R = RestoreStatus

TRANSITIONS: Mapping[type[enum.Enum], Mapping[enum.Enum, frozenset[enum.Enum]]] = {
    CheckpointStatus: {
        _C.PROTECTING: frozenset({_C.AVAILABLE, _C.ERROR}),
        _C.COPYING: frozenset({_C.AVAILABLE, _C.ERROR}),
        _C.AVAILABLE: frozenset({_C.DELETING, _C.COPYING}),
        _C.ERROR: frozenset({_C.DELETING}),
        _C.DELETING: frozenset({_C.DELETED, _C.ERROR_DELETING}),
        _C.ERROR_DELETING: frozenset({_C.DELETING}),
        _C.DELETED: frozenset(),
    },
    PlanStatus: {
        PlanStatus.SUSPENDED: frozenset({PlanStatus.STARTED}),
        PlanStatus.STARTED: frozenset({PlanStatus.SUSPENDED}),
    },
    RestoreStatus: {
        _R.IN_PROGRESS: frozenset({_R.SUCCESS, _R.FAIL}),
        _R.SUCCESS: frozenset(),
        _R.FAIL: frozenset(),
    },
}

# Administrators may force a checkpoint into these states (os-resetState).
RESET_STATES = frozenset({_C.AVAILABLE, _C.ERROR})


def can_transition(current: enum.Enum, target: enum.Enum) -> bool:
    table = TRANSITIONS[type(current)]
    return current == target or target in table.get(current, frozenset())


def check_transition(kind: str, obj_id: str, current: str | enum.Enum, target: str | enum.Enum,
                     enum_type: type[enum.Enum]) -> None:
    """Raise :class:`InvalidStatusTransition` unless ``current -> target`` is allowed.

    This is the single place where status changes are judged.  A transition to
    the same status is allowed (idempotent updates).
    """
    cur = enum_type(current)
    tgt = enum_type(target)
    if not can_transition(cur, tgt):
        raise exceptions.InvalidStatusTransition(kind=kind, id=obj_id, current=cur.value, target=tgt.value)
