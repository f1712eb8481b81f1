"""Evaluation: the conditions of every observed resource, their alerts' life cycle, and "at risk" propagation.

State is kept by the :class:`Evaluator` of the process that evaluates (the protection service), not in the
database: each evaluation recomputes every condition from what it observes now, and the evaluator remembers
when each alert was first raised.  An alert that is up stays up until its condition's ``clears`` predicate
holds (a pool's alert clears only a few percent above the threshold it was raised under), so a value hovering
around a threshold does not flap.  A cleared alert is still listed, with ``cleared_at``, for
``cleared_retention`` seconds, then forgotten; raised again, it is a new alert with a new ``raised_at``.  A
restarted service starts with no memory: an alert still holding is raised again at its first evaluation.

An alert on a resource is carried along ``affects`` to everything downstream as an ``at_risk`` alert naming
the cause; it is raised and cleared with its cause.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import threading
from collections.abc import Iterable

from strongroom.alerts.model import Alert, Resource, Settings, alert_id

AT_RISK = "at_risk"


class Evaluator:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self._alerts: dict[str, Alert] = {}
        self._lock = threading.Lock()

    def evaluate(self, resources: Iterable[Resource], now: _dt.datetime) -> list[Alert]:
        """Judge every condition of ``resources`` at ``now``; every alert listed afterwards (active first)."""
        observed = {r.key: r for r in resources}
        with self._lock:
            direct = self._direct(observed, now)
            self._propagate(observed, direct, now)
            self._forget(now)
            return self._listing()

    def alerts(self) -> list[Alert]:
        """Every alert of the last evaluation (active, then recently cleared)."""
        with self._lock:
            return self._listing()

    def active(self) -> list[Alert]:
        """The alerts up after the last evaluation: one gauge each, for metrics."""
        return [a for a in self.alerts() if a.active]

    # -- the steps ------------------------------------------------------------------------------------------

    def _direct(self, observed: dict[tuple[str, str], Resource], now: _dt.datetime) -> list[Alert]:
        up: list[Alert] = []
        seen: set[str] = set()
        for resource in observed.values():
            for cond in resource.cls.conditions:
                aid = alert_id(cond.name, resource.key)
                seen.add(aid)
                current = self._alerts.get(aid)
                is_up = current is not None and current.active
                if is_up:
                    still = not cond.cleared_by(resource, self.settings)
                else:
                    still = cond.raises(resource, self.settings)
                if not still:
                    if is_up and current is not None:
                        current.cleared_at = now
                    continue
                message = cond.render(resource, self.settings)
                if is_up and current is not None:
                    current.message, current.resource_name = message, resource.name
                    up.append(current)
                    continue
                alert = Alert(id=aid, condition=cond.name, severity=cond.severity, resource_type=resource.cls.kind,
                              resource_id=resource.id, resource_name=resource.name,
                              project_id=resource.project_id, message=message, raised_at=now)
                self._alerts[aid] = alert
                up.append(alert)
        for aid, alert in self._alerts.items():  # a resource no longer observed (deleted): its alerts clear
            if alert.cause_id is None and aid not in seen and alert.active:
                alert.cleared_at = now
        return up

    def _propagate(self, observed: dict[tuple[str, str], Resource], direct: list[Alert],
                   now: _dt.datetime) -> None:
        carried: set[str] = set()
        for cause in direct:
            start = (cause.resource_type, cause.resource_id)
            queue: collections.deque[tuple[tuple[str, str], tuple[str, ...]]] = collections.deque(
                [(start, (cause.id,))])
            visited = {start}
            while queue:
                key, path = queue.popleft()
                source = observed.get(key)
                if source is None:
                    continue
                for target_key in source.affects:
                    target = observed.get(target_key)
                    if target is None or target_key in visited:
                        continue
                    visited.add(target_key)
                    aid = alert_id(AT_RISK, target_key, cause.id)
                    carried.add(aid)
                    message = f"{target.name} is at risk: {cause.message}"
                    alert = self._alerts.get(aid)
                    if alert is None or not alert.active:
                        alert = Alert(id=aid, condition=AT_RISK, severity=cause.severity,
                                      resource_type=target.cls.kind, resource_id=target.id,
                                      resource_name=target.name, project_id=target.project_id, message=message,
                                      raised_at=now, cause_id=cause.id, path=path)
                        self._alerts[aid] = alert
                    else:
                        alert.message, alert.path = message, path
                    queue.append((target_key, (*path, aid)))
        for aid, alert in self._alerts.items():
            if alert.cause_id is not None and alert.active and aid not in carried:
                alert.cleared_at = now

    def _forget(self, now: _dt.datetime) -> None:
        horizon = now - _dt.timedelta(seconds=self.settings.cleared_retention)
        for aid in [aid for aid, a in self._alerts.items() if a.cleared_at is not None and a.cleared_at < horizon]:
            del self._alerts[aid]

    def _listing(self) -> list[Alert]:
        return [dataclasses.replace(a) for a in sorted(
            self._alerts.values(), key=lambda a: (not a.active, a.raised_at, a.resource_type, a.id))]


def visible_to(alerts: Iterable[Alert], project_id: str | None) -> list[Alert]:
    """What a project sees: its own resources' alerts, and the infrastructure alerts those were carried from
    or through (a bank's, a pool's; never another project's).  ``project_id`` None: every alert."""
    alerts = list(alerts)
    if project_id is None:
        return alerts
    own = {a.id for a in alerts if a.project_id == project_id}
    upstream = {aid for a in alerts if a.id in own for aid in a.path}
    return [a for a in alerts if a.id in own or (a.id in upstream and a.project_id is None)]
