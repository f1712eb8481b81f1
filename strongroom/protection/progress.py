"""Progress of a run: bytes done, written to the catalogue at most once a second."""

from __future__ import annotations

import threading
from collections.abc import Callable

from strongroom.clock import Clock


class Progress:
    """Counts bytes done and hands them to ``flush`` at most once per ``interval`` (monotonic seconds)."""

    def __init__(self, total: int, flush: Callable[[int], None], clock: Clock, interval: float = 1.0) -> None:
        self.total = total
        self.done = 0
        self._flush = flush
        self._clock = clock
        self._interval = interval
        self._last = clock.monotonic()
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = self._clock.monotonic()
            if now - self._last < self._interval:
                return
            self._last = now
            done = self.done
        self._flush(min(done, self.total) if self.total else done)
