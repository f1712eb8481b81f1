"""Quotas: per-project limits, quota classes, and the count-then-insert that enforces them.

A project's limit for a resource is, first found: its own ``quotas`` row (when its ``hard_limit`` is set),
the ``default`` quota class, the ``[quota]`` option (:attr:`QuotaQueries.quota_defaults`).  ``-1`` is
unlimited.

Enforcement is the database's, never the process's: :func:`ensure_row` inserts the project's ``quotas`` row
for the resource when it has none (in a transaction of its own, an insert that ignores a concurrent one), then
:func:`reserve` locks it (``SELECT ... FOR UPDATE``) and counts the live rows in the create's transaction, and
the caller inserts in that transaction too.  Two creates of one project
therefore count one after the other, in every process; on sqlite, write transactions are serialised
(``BEGIN IMMEDIATE``) and the lock is that.  Deleted plans and checkpoints do not count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from strongroom import exceptions
from strongroom.db import core
from strongroom.db.models import CheckpointModel, PlanModel, QuotaClassModel, QuotaModel
from strongroom.objects.status import CheckpointStatus

PLANS = "plans"
CHECKPOINTS = "checkpoints"
#: The counted resources, Karbor's names, in the order the API shows them.
RESOURCES = (PLANS, CHECKPOINTS)
#: The quota class whose limits are every project's defaults.
DEFAULT_CLASS = "default"
#: Defaults when neither the configuration nor the ``default`` class says (Karbor's).
BUILTIN_DEFAULTS: Mapping[str, int] = {PLANS: 50, CHECKPOINTS: -1}
UNLIMITED = -1


def _count_plans(s: orm.Session, project_id: str) -> int:
    return int(s.execute(sa.select(sa.func.count()).select_from(PlanModel).where(
        PlanModel.project_id == project_id, PlanModel.deleted_at.is_(None))).scalar_one())


def _count_checkpoints(s: orm.Session, project_id: str) -> int:
    return int(s.execute(sa.select(sa.func.count()).select_from(CheckpointModel).where(
        CheckpointModel.project_id == project_id,
        CheckpointModel.status != CheckpointStatus.DELETED.value)).scalar_one())


_COUNTERS: Mapping[str, Callable[[orm.Session, str], int]] = {PLANS: _count_plans, CHECKPOINTS: _count_checkpoints}


@dataclasses.dataclass(frozen=True)
class Usage:
    """One resource of a project: its limit and how much of it is in use (``reserved`` is always 0: a create
    counts and inserts in one transaction, nothing is held in between)."""

    limit: int
    in_use: int
    reserved: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"limit": self.limit, "in_use": self.in_use, "reserved": self.reserved}


def check_resource(resource: str) -> str:
    """``resource`` if it is a counted one; InvalidInput naming the known ones otherwise."""
    if resource not in RESOURCES:
        raise exceptions.InvalidInput(reason=f"unknown quota resource '{resource}' (known: {', '.join(RESOURCES)})")
    return resource


def check_limit(resource: str, value: Any) -> int:
    """``value`` as a limit of ``resource``: an integer, ``-1`` (unlimited) or more; InvalidInput naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise exceptions.InvalidInput(reason=f"{resource}: the limit must be an integer, not {value!r}")
    if value < UNLIMITED:
        raise exceptions.InvalidInput(reason=f"{resource}: the limit must be -1 (unlimited) or greater, not {value}")
    return value


def _class_limits(s: orm.Session, class_name: str) -> dict[str, int]:
    rows = s.execute(sa.select(QuotaClassModel.resource, QuotaClassModel.hard_limit)
                     .where(QuotaClassModel.class_name == class_name)).all()
    return {resource: int(limit) for resource, limit in rows if resource in RESOURCES}


def _project_limits(s: orm.Session, project_id: str) -> dict[str, int]:
    rows = s.execute(sa.select(QuotaModel.resource, QuotaModel.hard_limit)
                     .where(QuotaModel.project_id == project_id, QuotaModel.hard_limit.is_not(None))).all()
    return {resource: int(limit) for resource, limit in rows if resource in RESOURCES and limit is not None}


def _insert_absent(s: orm.Session, project_id: str, resource: str, now: Any) -> None:
    """Insert the project's row for ``resource`` (following the defaults) unless it exists: one statement that
    does nothing when a concurrent one inserted it first (no unique-key error to recover from)."""
    values = {"project_id": project_id, "resource": resource, "hard_limit": None, "created_at": now,
              "updated_at": now}
    dialect = s.get_bind().dialect.name
    stmt: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(QuotaModel).values(**values).on_conflict_do_nothing(
            index_elements=["project_id", "resource"])
    elif dialect in ("mysql", "mariadb"):
        stmt = sa.insert(QuotaModel).values(**values).prefix_with("IGNORE")
    else:
        stmt = sa.insert(QuotaModel).values(**values).prefix_with("OR IGNORE")
    s.execute(stmt)


def _quota_row(s: orm.Session, project_id: str, resource: str) -> sa.Select[Any]:
    return sa.select(QuotaModel).where(QuotaModel.project_id == project_id, QuotaModel.resource == resource)


def ensure_row(db: core.Core, project_id: str, resource: str) -> None:
    """Make sure ``project_id`` has its ``quotas`` row for ``resource``, in a transaction of its own (committed
    before any create locks it: the insert races, if at all, outside the create's transaction)."""
    with db.session() as s:
        if s.execute(_quota_row(s, project_id, resource)).scalar_one_or_none() is not None:
            return
    now = db.now()
    db.write(lambda s: _insert_absent(s, project_id, resource, now))


def _locked_row(s: orm.Session, project_id: str, resource: str) -> QuotaModel:
    """The project's row for ``resource`` (see :func:`ensure_row`), locked until the transaction ends."""
    row = s.execute(_quota_row(s, project_id, resource).with_for_update()
                    .execution_options(populate_existing=True)).scalar_one_or_none()
    if row is None:  # never deleted: only a database emptied under us gets here
        raise core.TryAgain
    found: QuotaModel = row
    return found


def _defaults(s: orm.Session, configured: Mapping[str, int]) -> dict[str, int]:
    limits = {r: int(configured.get(r, BUILTIN_DEFAULTS[r])) for r in RESOURCES}
    limits.update(_class_limits(s, DEFAULT_CLASS))
    return limits


def configured_defaults(db: core.Core) -> Mapping[str, int]:
    """The ``[quota]`` defaults ``db`` was given (:attr:`QuotaQueries.quota_defaults`)."""
    found: Mapping[str, int] = getattr(db, "quota_defaults", BUILTIN_DEFAULTS)
    return found


def reserve(db: core.Core, s: orm.Session, project_id: str, resource: str) -> None:
    """In ``db``'s write transaction ``s``, before it inserts one ``resource`` of ``project_id`` (and after
    :func:`ensure_row`, outside that transaction): lock the project's quota row, count, and raise
    :class:`~strongroom.exceptions.QuotaExceeded` when the project has its limit in use already.  The lock is
    held until ``s`` ends, so the insert that follows is counted by the next create of the project, whichever
    process makes it."""
    row = _locked_row(s, project_id, resource)
    limit = int(row.hard_limit) if row.hard_limit is not None else _defaults(s, configured_defaults(db))[resource]
    if limit == UNLIMITED:
        return
    in_use = _COUNTERS[resource](s, project_id)
    if in_use >= limit:
        raise exceptions.QuotaExceeded(resource=resource, limit=limit, in_use=in_use)


class QuotaQueries(core.Core):
    """Per-project limits and quota classes; :meth:`quota_defaults` come from the ``[quota]`` options."""

    #: The limits of a project that neither its own rows nor the ``default`` class set; the services set it
    #: from the ``[quota]`` options (:func:`strongroom.config.quota_defaults`).
    quota_defaults: Mapping[str, int] = BUILTIN_DEFAULTS

    def _defaults(self, s: orm.Session) -> dict[str, int]:
        return _defaults(s, self.quota_defaults)

    def quota_defaults_of(self) -> dict[str, int]:
        """Every project's default limits: the ``default`` class over the ``[quota]`` options."""
        with self.session() as s:
            return self._defaults(s)

    def get_project_quotas(self, project_id: str) -> dict[str, int]:
        """The limit of every resource for ``project_id``."""
        with self.session() as s:
            limits = self._defaults(s)
            limits.update(_project_limits(s, project_id))
            return limits

    def get_project_usages(self, project_id: str) -> dict[str, Usage]:
        """Limit and use of every resource for ``project_id``."""
        with self.session() as s:
            limits = self._defaults(s)
            limits.update(_project_limits(s, project_id))
            return {r: Usage(limit=limits[r], in_use=_COUNTERS[r](s, project_id)) for r in RESOURCES}

    def set_project_quotas(self, project_id: str, limits: Mapping[str, int]) -> dict[str, int]:
        """Set ``project_id``'s limits (resources not named keep theirs); returns them all."""
        checked = {check_resource(r): check_limit(r, v) for r, v in limits.items()}
        now = self.now()

        for resource in checked:
            ensure_row(self, project_id, resource)

        def update(s: orm.Session) -> dict[str, int]:
            for resource, limit in checked.items():
                row = _locked_row(s, project_id, resource)
                row.hard_limit, row.updated_at = limit, now
            s.flush()
            out = self._defaults(s)
            out.update(_project_limits(s, project_id))
            return out

        return self.write(update)

    def get_quota_class(self, class_name: str) -> dict[str, int]:
        """The limits of quota class ``class_name``; a resource it does not set has the ``[quota]`` default."""
        with self.session() as s:
            limits = {r: int(self.quota_defaults.get(r, BUILTIN_DEFAULTS[r])) for r in RESOURCES}
            limits.update(_class_limits(s, class_name))
            return limits

    def set_quota_class(self, class_name: str, limits: Mapping[str, int]) -> dict[str, int]:
        """Set limits of quota class ``class_name`` (created on first use); returns them all."""
        checked = {check_resource(r): check_limit(r, v) for r, v in limits.items()}
        now = self.now()

        def update(s: orm.Session) -> None:
            for resource, limit in checked.items():
                stmt = (sa.select(QuotaClassModel).where(QuotaClassModel.class_name == class_name,
                                                         QuotaClassModel.resource == resource).with_for_update())
                row = s.execute(stmt).scalar_one_or_none()
                if row is None:
                    try:
                        with s.begin_nested():
                            s.add(QuotaClassModel(class_name=class_name, resource=resource, hard_limit=limit,
                                                  created_at=now, updated_at=now))
                        continue
                    except sa.exc.IntegrityError:  # created meanwhile: set it
                        row = s.execute(stmt.execution_options(populate_existing=True)).scalar_one()
                row.hard_limit, row.updated_at = limit, now

        self.write(update)
        return self.get_quota_class(class_name)

