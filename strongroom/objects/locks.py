"""Immutable retention of a checkpoint, as its record says (``doc/immutability.md``).

``retention_lock_days`` (a plan parameter, or a scheduled operation's option) asks that every object of a
checkpoint be locked in the bank until ``created_at`` + that many days.  A protect records the days it was
asked for in the checkpoint's ``extra_info`` (:data:`LOCK_DAYS`) and, once published and locked, the date
(:data:`LOCKED_UNTIL`, ISO 8601 UTC), in the bank's index and the catalogue row alike, so the API,
retention and garbage collection answer without asking the bank.  Pure functions: no clock, no bank.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

from strongroom import exceptions

#: The plan parameter and scheduled-operation option; also the ``extra_info`` key of a checkpoint asked to lock.
LOCK_DAYS = "retention_lock_days"
#: The ``extra_info`` key of a checkpoint's lock date (ISO 8601, UTC).
LOCKED_UNTIL = "locked_until"
#: At most a century: a typing error in COMPLIANCE mode cannot be undone.
MAX_LOCK_DAYS = 36_500


def check_lock_days(value: Any, field: str) -> int:
    """``value`` as a number of days (a positive integer, at most :data:`MAX_LOCK_DAYS`); ``InvalidInput``
    naming ``field`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise exceptions.InvalidInput(reason=f"{field}: must be a positive integer (days), got {value!r}")
    if not 1 <= value <= MAX_LOCK_DAYS:
        raise exceptions.InvalidInput(reason=f"{field}: must be between 1 and {MAX_LOCK_DAYS} days, got {value}")
    return value


def lock_days(extra_info: Mapping[str, Any] | None) -> int | None:
    """The days a checkpoint was asked to be locked for (None: not locked)."""
    value = (extra_info or {}).get(LOCK_DAYS)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def lock_date(created_at: _dt.datetime, days: int) -> _dt.datetime:
    """The lock date of a checkpoint created at ``created_at`` and locked for ``days``."""
    return created_at.astimezone(_dt.UTC) + _dt.timedelta(days=days)


def locked_until(extra_info: Mapping[str, Any] | None) -> _dt.datetime | None:
    """The lock date a checkpoint's ``extra_info`` records (None: none, or unreadable)."""
    value = (extra_info or {}).get(LOCKED_UNTIL)
    if not isinstance(value, str):
        return None
    try:
        parsed = _dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=_dt.UTC)


def is_locked(extra_info: Mapping[str, Any] | None, now: _dt.datetime) -> bool:
    """True while the recorded lock date is in the future."""
    until = locked_until(extra_info)
    return until is not None and until > now
