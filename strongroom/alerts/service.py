"""Alerts as a protection service keeps them: an :class:`Evaluator` fed by a :class:`Collector`, on a thread.

``[alerts] evaluation_interval`` seconds apart (0: only when asked); a listing asked for before the first
evaluation evaluates at once.  The clock is injected: tests evaluate by hand on a ``FakeClock``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from strongroom.alerts.collect import Collector
from strongroom.alerts.engine import Evaluator, visible_to
from strongroom.alerts.model import Alert
from strongroom.clock import Clock

LOG = logging.getLogger(__name__)


class AlertService:
    def __init__(self, collector: Collector, clock: Clock, *, interval: float = 0) -> None:
        self.collector = collector
        self.evaluator = Evaluator(collector.settings)
        self.clock = clock
        self.interval = interval
        self._evaluated = False
        self._eval_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def evaluate(self) -> list[Alert]:
        """One evaluation now: every alert afterwards."""
        with self._eval_lock:
            resources = self.collector.collect(self.clock.now())
            alerts = self.evaluator.evaluate(resources, self.clock.now())
            self._evaluated = True
        return alerts

    def listing(self, project_id: str | None) -> list[dict[str, Any]]:
        """The alerts ``project_id`` may see (None: all), as dicts (active first)."""
        alerts = self.evaluator.alerts() if self._evaluated else self.evaluate()
        return [a.to_dict() for a in visible_to(alerts, project_id)]

    def active_alerts(self) -> list[Alert]:
        """The alerts up after the last evaluation (for a gauge per active alert)."""
        return self.evaluator.active()

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sr-alerts", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):  # the first one an interval after start: not amid start-up
            try:
                self.evaluate()
            except Exception:  # noqa: BLE001 - one failed evaluation must not end evaluating
                LOG.exception("alert evaluation failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
