"""Injectable time.

Code that waits or compares times takes a :class:`Clock` so that tests can use
:class:`FakeClock` and run schedules and lease windows in milliseconds.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time


class Clock:
    """Wall-clock time and sleeping, as a replaceable object."""

    def now(self) -> _dt.datetime:
        """Current UTC time, timezone-aware."""
        return _dt.datetime.now(_dt.UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock(Clock):
    """A clock that only moves when told to; ``sleep`` advances it at once."""

    def __init__(self, start: _dt.datetime | None = None) -> None:
        self._now = start or _dt.datetime(2026, 1, 1, tzinfo=_dt.UTC)
        self._mono = 0.0
        self._lock = threading.Lock()

    def now(self) -> _dt.datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += _dt.timedelta(seconds=seconds)
            self._mono += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(max(seconds, 0.0))

