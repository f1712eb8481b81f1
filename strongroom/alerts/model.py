"""The declarative layer: resource classes, their alert conditions, and the alerts an evaluation yields.

A *resource class* (:class:`ResourceClass`) names a kind of thing the service depends on (a bank, a pool, a
plan...).  An evaluation observes each one as a :class:`Resource`: an identifier, a name, the project it belongs
to (None: infrastructure, shared by every project), *attributes* (what it is), *statistics* (what was measured)
and the keys of the resources it *affects*.  A :class:`Condition` is declared on a class in a few lines::

    @condition(Pool, "pool_free_capacity_low", Severity.WARNING,
               "{name} has {free_percent:.1f}% free, under {threshold}%",
               clears=lambda pool, s: pool.statistics["free_percent"] >= s.pool_free_percent + s.pool_hysteresis)
    def _pool_low(pool: Resource, s: Settings) -> bool:
        return pool.statistics["free_percent"] < s.pool_free_percent

The predicate sees the resource and the :class:`Settings`; the message is formatted with the resource's
``name``, attributes, statistics and settings.  Nothing here reads a database or a bank: the collector
(:mod:`strongroom.alerts.collect`) observes, the evaluator (:mod:`strongroom.alerts.engine`) judges.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import string
import uuid
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

#: Namespace of the alerts' ids: one alert of a condition on a resource keeps its id across evaluations.
_ID_NAMESPACE = uuid.UUID("4c0c5f0e-6a43-4c55-9a0b-7f6e0d1a4a11")


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclasses.dataclass(frozen=True)
class Settings:
    """The thresholds conditions compare against (``[alerts]`` options)."""

    recovery_point_grace: float = 600.0  # seconds past a due scheduled run
    pool_free_percent: float = 10.0
    pool_hysteresis: float = 5.0  # percent above the threshold before a pool's alert clears
    checkpoint_stuck_after: float = 6 * 3600.0  # seconds protecting/deleting/copying without a change
    cleared_retention: float = 3600.0  # seconds a cleared alert is still listed

    @classmethod
    def from_conf(cls, conf: Any) -> Settings:
        group = conf.alerts
        return cls(recovery_point_grace=float(group.recovery_point_grace),
                   pool_free_percent=float(group.pool_free_percent), pool_hysteresis=float(group.pool_hysteresis),
                   checkpoint_stuck_after=float(group.checkpoint_stuck_after),
                   cleared_retention=float(group.cleared_retention))


Predicate = Callable[["Resource", Settings], bool]


@dataclasses.dataclass(frozen=True)
class Condition:
    """``name`` (stable, machine-readable), ``severity``, ``raises`` (true: the alert is up), ``message``
    (a :meth:`str.format` template over the resource's fields and the settings) and ``clears`` (true: an
    alert that is up goes down; by default ``not raises``; a stricter one keeps an alert from flapping)."""

    name: str
    severity: Severity
    message: str
    raises: Predicate
    clears: Predicate | None = None

    def cleared_by(self, resource: Resource, settings: Settings) -> bool:
        if self.clears is not None:
            return self.clears(resource, settings)
        return not self.raises(resource, settings)

    def render(self, resource: Resource, settings: Settings) -> str:
        fields: dict[str, Any] = {**dataclasses.asdict(settings), **resource.attributes, **resource.statistics,
                                  "name": resource.name, "id": resource.id}
        try:
            return string.Formatter().vformat(self.message, (), _Missing(fields))
        except (ValueError, TypeError, IndexError, AttributeError):  # a field of another type than the template's
            return f"{self.name} on {resource.name}"


class _Missing(dict[str, Any]):
    """Formatting fields: a field the resource did not report renders as ``?`` instead of failing."""

    def __missing__(self, key: str) -> Any:
        return "?"


class ResourceClass:
    """A kind of resource.  Subclasses set ``kind`` (as alerts name it) and ``infrastructure`` (shared by
    every project: its alerts are shown to a project only when they put one of its resources at risk);
    :func:`condition` adds to their ``conditions``."""

    kind: ClassVar[str] = ""
    infrastructure: ClassVar[bool] = False
    conditions: ClassVar[list[Condition]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.conditions = []

    @classmethod
    def resource(cls, id: str, name: str, *, project_id: str | None = None,
                 attributes: Mapping[str, Any] | None = None, statistics: Mapping[str, Any] | None = None,
                 affects: tuple[tuple[str, str], ...] | list[tuple[str, str]] = ()) -> Resource:
        return Resource(cls, id, name, project_id, dict(attributes or {}), dict(statistics or {}), tuple(affects))


def condition(cls: type[ResourceClass], name: str, severity: Severity, message: str, *,
              clears: Predicate | None = None) -> Callable[[Predicate], Predicate]:
    """Declare a condition of ``cls``: decorates its ``raises`` predicate."""

    def register(raises: Predicate) -> Predicate:
        if any(c.name == name for c in cls.conditions):
            raise ValueError(f"{cls.kind} already has a condition {name!r}")
        cls.conditions.append(Condition(name, severity, message, raises, clears))
        return raises

    return register


@dataclasses.dataclass(frozen=True)
class Resource:
    """One resource as an evaluation observed it."""

    cls: type[ResourceClass]
    id: str
    name: str
    project_id: str | None
    attributes: dict[str, Any]
    statistics: dict[str, Any]
    affects: tuple[tuple[str, str], ...]  # (kind, id) of what a fault here puts at risk

    @property
    def key(self) -> tuple[str, str]:
        return self.cls.kind, self.id


@dataclasses.dataclass
class Alert:
    """A condition that holds (or held) on a resource.  ``cause_id`` is None for a condition observed on the
    resource itself; for an ``at_risk`` alert it names the alert it was carried from along ``affects``, and
    ``path`` the ids of the alerts it was carried through (the cause first)."""

    id: str
    condition: str
    severity: Severity
    resource_type: str
    resource_id: str
    resource_name: str
    project_id: str | None
    message: str
    raised_at: _dt.datetime
    cleared_at: _dt.datetime | None = None
    cause_id: str | None = None
    path: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.cleared_at is None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "condition": self.condition, "severity": str(self.severity),
                "resource_type": self.resource_type, "resource_id": self.resource_id,
                "resource_name": self.resource_name, "project_id": self.project_id, "message": self.message,
                "active": self.active, "raised_at": self.raised_at.isoformat(),
                "cleared_at": self.cleared_at.isoformat() if self.cleared_at else None,
                "cause_id": self.cause_id}


def alert_id(condition_name: str, key: tuple[str, str], cause_id: str | None = None) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "\0".join((condition_name, *key, cause_id or ""))))
