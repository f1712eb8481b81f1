"""Service heartbeats: each program records in the ``services`` table that it is alive.

``GET /os-services`` reports a service ``up`` while its last heartbeat is younger than
:func:`strongroom.config.service_down_after` (``missed_heartbeats`` x ``heartbeat_interval``).
The judgement compares the API host's clock with the clock of the host that beat: keep the nodes'
clocks in sync (NTP), as every OpenStack service that reports up/down assumes.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from collections.abc import Sequence
from typing import Any

LOG = logging.getLogger(__name__)


def run(db: Any, host: str, binaries: Sequence[str], topic: str, interval: float,
        stop: threading.Event) -> None:
    """Beat for every binary in ``binaries`` every ``interval`` seconds until ``stop`` is set."""
    while not stop.is_set():
        beat(db, host, binaries, topic)
        stop.wait(interval)


def beat(db: Any, host: str, binaries: Sequence[str], topic: str) -> None:
    """One heartbeat of every binary in ``binaries``."""
    for binary in binaries:
        try:
            db.service_heartbeat(host, binary, topic)
        except Exception:  # noqa: BLE001 - a missed beat is logged, never fatal
            LOG.warning("heartbeat of %s failed", binary, exc_info=True)


class Heartbeat:
    """A first beat at :meth:`start`, then a daemon thread running :func:`run`."""

    def __init__(self, db: Any, host: str, binaries: Sequence[str], topic: str, interval: float) -> None:
        self._args = (db, host, tuple(binaries), topic, interval)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Beat once now (the service is listed as soon as it has started), then every interval."""
        if self._thread is None:
            db, host, binaries, topic, interval = self._args
            beat(db, host, binaries, topic)
            self._thread = threading.Thread(target=_after_first, args=(*self._args, self._stop),
                                            name="sr-heartbeat", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def is_up(last_heartbeat: _dt.datetime | None, down_after: float, now: _dt.datetime | None = None) -> bool:
    """True while the last heartbeat is at most ``down_after`` seconds old."""
    if last_heartbeat is None:
        return False
    now = now or _dt.datetime.now(_dt.UTC)
    return (now - last_heartbeat).total_seconds() <= down_after


def _after_first(db: Any, host: str, binaries: Sequence[str], topic: str, interval: float,
                 stop: threading.Event) -> None:
    if not stop.wait(interval):
        run(db, host, binaries, topic, interval, stop)
