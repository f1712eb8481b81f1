"""Queries of scheduling: triggers, scheduled operations, and the planned fires that engines claim.

Exactly-once rests on three compare-and-set updates, each one SQL statement whose ``WHERE`` re-checks
what the caller read, so that of two engines racing for the same row one gets ``rowcount == 1`` and the
other ``0`` on sqlite (writers serialized), PostgreSQL (READ COMMITTED re-evaluates the ``WHERE`` on the
row a concurrent transaction just committed) and MariaDB (InnoDB updates read the latest committed row):

- planning: ``scheduled_operations.plan_version`` guards ``planned_until``; the winner inserts the fires
  in the same transaction, and ``UNIQUE (operation_id, fire_time)`` backs it up;
- claiming: ``scheduled_fires.version`` guards a fire's state, owner and claim;
- running: every write of a run is guarded by the ``claim_token`` its claim got, so an engine that lost its
  claim (it paused past the expiry and another took over) can no longer change the fire.

This module builds on the public helpers of :mod:`strongroom.db.core` (sessions, retried writes, clock, loads).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.sql.elements import ColumnElement

from strongroom import exceptions
from strongroom.db.core import (
    DEFAULT_SORT,
    Core,
    filter_conditions,
    insert,
    list_rows,
    load,
    project_scope,
    to_record,
    utc,
)
from strongroom.db.models import ScheduledFireModel, ScheduledOperationModel, TriggerModel, UTCDateTime
from strongroom.objects.scheduling import FireState, ScheduledFire, ScheduledOperation, Trigger

#: ``planned_until`` of an operation whose trigger will never fire again.
NEVER = _dt.datetime(9999, 1, 1, tzinfo=_dt.UTC)
MISSED_WHILE_DOWN = "no operation engine was running during its window"

TRIGGER_SORT: dict[str, ColumnElement[Any]] = {
    n: getattr(TriggerModel, n) for n in ("id", "name", "type", "created_at", "updated_at")}
OPERATION_SORT: dict[str, ColumnElement[Any]] = {
    n: getattr(ScheduledOperationModel, n)
    for n in ("id", "name", "operation_type", "trigger_id", "plan_id", "created_at", "updated_at")}
FIRE_SORT: dict[str, ColumnElement[Any]] = {
    "expect_start_time": cast(ColumnElement[Any], ScheduledFireModel.fire_time),
    "state": cast(ColumnElement[Any], ScheduledFireModel.state),
    "created_at": cast(ColumnElement[Any], ScheduledFireModel.created_at),
    "id": cast(ColumnElement[Any], ScheduledFireModel.id),
}
TRIGGER_FILTERS = ("name", "type")
OPERATION_FILTERS = ("name", "operation_type", "trigger_id", "plan_id", "provider_id", "enabled")
FIRE_FILTERS = ("state",)

_FIRES = cast(sa.Table, ScheduledFireModel.__table__)
_OPS = cast(sa.Table, ScheduledOperationModel.__table__)

# The two queries every engine runs at every pass, built once (only their parameters change).
_TO_PLAN = (
    sa.select(ScheduledOperationModel, TriggerModel)
    .join(TriggerModel, TriggerModel.id == ScheduledOperationModel.trigger_id)
    .where(ScheduledOperationModel.enabled.is_(True),
           ScheduledOperationModel.planned_until < sa.bindparam("horizon", type_=UTCDateTime()))
    .order_by(ScheduledOperationModel.planned_until, ScheduledOperationModel.id)
    .limit(sa.bindparam("limit", type_=sa.Integer())))
_DUE = (
    sa.select(ScheduledFireModel).where(sa.or_(
        sa.and_(ScheduledFireModel.state == FireState.PLANNED.value,
                ScheduledFireModel.fire_time <= sa.bindparam("now", type_=UTCDateTime())),
        sa.and_(ScheduledFireModel.state == FireState.IN_PROGRESS.value,
                ScheduledFireModel.claim_expires_at <= sa.bindparam("now", type_=UTCDateTime())),
    )).order_by(ScheduledFireModel.fire_time, ScheduledFireModel.id)
    .limit(sa.bindparam("limit", type_=sa.Integer())))


def _rowcount(result: Any) -> int:
    return int(cast(sa.CursorResult[Any], result).rowcount)


class SchedulingStore:
    """Scheduling queries on ``db``.  Thread-safe; every method is one transaction."""

    def __init__(self, db: Core) -> None:
        self.db = db

    # -- triggers ----------------------------------------------------------------

    def create_trigger(self, trigger: Trigger) -> Trigger:
        now = self.db.now()

        def add(s: orm.Session) -> Trigger:
            model = TriggerModel(id=trigger.id, project_id=trigger.project_id, name=trigger.name,
                                 type=trigger.type, properties=dict(trigger.properties),
                                 created_at=utc(trigger.created_at) or now, updated_at=now)
            insert(s, model, "Trigger", trigger.id)
            return to_record(Trigger, model)

        return self.db.write(add)

    def get_trigger(self, trigger_id: str, project_id: str | None = None) -> Trigger:
        with self.db.session() as s:
            return to_record(Trigger, load(s, TriggerModel, trigger_id, kind="Trigger", project_id=project_id))

    def list_triggers(self, project_id: str | None, *, filters: Mapping[str, Any] | None = None,
                      marker: str | None = None, limit: int | None = None,
                      sort: Sequence[tuple[str, str]] = DEFAULT_SORT) -> list[Trigger]:
        conds = filter_conditions(TriggerModel, filters, TRIGGER_FILTERS)
        scope = project_scope(TriggerModel, project_id)
        with self.db.session() as s:
            rows = list_rows(s, TriggerModel, scope=scope, conditions=conds, sort=sort,
                             allowed_sort=TRIGGER_SORT, marker=marker, limit=limit)
            return [to_record(Trigger, m) for m in rows]

    def update_trigger(self, trigger_id: str, values: Mapping[str, Any], project_id: str | None = None) -> Trigger:
        """Change ``name`` and/or ``properties``; new properties re-plan the future fires of every operation
        that uses the trigger (planned fires later than now are deleted and planned again)."""
        for key in values:
            if key not in ("name", "properties"):
                raise exceptions.InvalidInput(reason=f"field '{key}' of a trigger cannot be updated")

        def update(s: orm.Session) -> Trigger:
            now = self.db.now()
            model = load(s, TriggerModel, trigger_id, kind="Trigger", project_id=project_id, for_update=True)
            if "name" in values:
                model.name = values["name"]
            if "properties" in values:
                model.properties = dict(values["properties"])
                self._replan(s, sa.select(ScheduledOperationModel.id)
                             .where(ScheduledOperationModel.trigger_id == trigger_id), now)
            model.updated_at = now
            s.flush()
            return to_record(Trigger, model)

        return self.db.write(update)

    @staticmethod
    def _replan(s: orm.Session, op_ids: sa.Select[Any], now: _dt.datetime, *, all_planned: bool = False,
                enabled: bool | None = None) -> None:
        """Forget planned fires of the operations in ``op_ids`` and plan them again from ``now``.

        The operation rows are updated (locked) first, then the fires deleted: a planning transaction of an
        engine that raced us either committed before our lock (its fires are deleted here) or fails its
        compare-and-set on ``plan_version`` after.
        """
        ids = [row[0] for row in s.execute(op_ids)]
        if not ids:
            return
        values: dict[str, Any] = {"planned_until": now, "plan_version": _OPS.c.plan_version + 1,
                                  "updated_at": now}
        if enabled is not None:
            values["enabled"] = enabled
        s.execute(sa.update(_OPS).where(_OPS.c.id.in_(ids)).values(**values))
        conds = [_FIRES.c.operation_id.in_(ids), _FIRES.c.state == FireState.PLANNED.value]
        if not all_planned:
            conds.append(_FIRES.c.fire_time > now)
        s.execute(sa.delete(_FIRES).where(*conds))

    def delete_trigger(self, trigger_id: str, project_id: str | None = None) -> None:
        """Conflict while a scheduled operation uses the trigger (the foreign key enforces it too)."""

        def delete(s: orm.Session) -> None:
            model = load(s, TriggerModel, trigger_id, kind="Trigger", project_id=project_id, for_update=True)
            users = s.execute(sa.select(ScheduledOperationModel.id).where(
                ScheduledOperationModel.trigger_id == trigger_id).limit(1)).first()
            if users is not None:
                raise exceptions.Conflict(reason=f"trigger {trigger_id} is used by scheduled operation "
                                                 f"{users[0]}; delete that first")
            s.delete(model)
            try:
                s.flush()
            except sa.exc.IntegrityError as err:
                raise exceptions.Conflict(reason=f"trigger {trigger_id} is used by a scheduled operation") \
                    from err

        self.db.write(delete)

    # -- scheduled operations --------------------------------------------------------

    def create_operation(self, op: ScheduledOperation) -> ScheduledOperation:
        """Insert ``op``; its fires are planned from ``planned_until`` (default: now) on."""
        now = self.db.now()

        def add(s: orm.Session) -> ScheduledOperation:
            load(s, TriggerModel, op.trigger_id, kind="Trigger", project_id=op.project_id)
            model = ScheduledOperationModel(
                id=op.id, project_id=op.project_id, user_id=op.user_id, name=op.name,
                description=op.description or "", operation_type=op.operation_type, trigger_id=op.trigger_id,
                plan_id=op.plan_id, provider_id=op.provider_id,
                operation_definition=dict(op.operation_definition), enabled=bool(op.enabled),
                trust_id=op.trust_id, planned_until=utc(op.planned_until) or now, plan_version=0,
                created_at=utc(op.created_at) or now, updated_at=now)
            s.add(model)
            try:
                s.flush()
            except sa.exc.IntegrityError as err:
                raise exceptions.Conflict(
                    reason=f"scheduled operation {op.id} exists already, or trigger {op.trigger_id} was just "
                           f"deleted") from err
            return to_record(ScheduledOperation, model)

        return self.db.write(add)

    def get_operation(self, op_id: str, project_id: str | None = None) -> ScheduledOperation:
        with self.db.session() as s:
            return to_record(ScheduledOperation, load(s, ScheduledOperationModel, op_id, kind="ScheduledOperation",
                                                      project_id=project_id))

    def list_operations(self, project_id: str | None, *, filters: Mapping[str, Any] | None = None,
                        marker: str | None = None, limit: int | None = None,
                        sort: Sequence[tuple[str, str]] = DEFAULT_SORT) -> list[ScheduledOperation]:
        conds = filter_conditions(ScheduledOperationModel, filters, OPERATION_FILTERS)
        scope = project_scope(ScheduledOperationModel, project_id)
        with self.db.session() as s:
            rows = list_rows(s, ScheduledOperationModel, scope=scope, conditions=conds, sort=sort,
                             allowed_sort=OPERATION_SORT, marker=marker, limit=limit)
            return [to_record(ScheduledOperation, m) for m in rows]

    def count_operations(self, *, plan_id: str | None = None, trigger_id: str | None = None) -> int:
        conds: list[ColumnElement[bool]] = []
        if plan_id is not None:
            conds.append(ScheduledOperationModel.plan_id == plan_id)
        if trigger_id is not None:
            conds.append(ScheduledOperationModel.trigger_id == trigger_id)
        with self.db.session() as s:
            return int(s.execute(sa.select(sa.func.count()).select_from(ScheduledOperationModel)
                                 .where(*conds)).scalar_one())

    def set_enabled(self, op_id: str, enabled: bool, project_id: str | None = None) -> ScheduledOperation:
        """Suspend (forget every planned fire) or resume (plan again from now; no catch-up)."""

        def change(s: orm.Session) -> ScheduledOperation:
            now = self.db.now()
            model = load(s, ScheduledOperationModel, op_id, kind="ScheduledOperation", project_id=project_id,
                         for_update=True)
            if model.enabled != enabled:
                self._replan(s, sa.select(ScheduledOperationModel.id).where(ScheduledOperationModel.id == op_id),
                             now, all_planned=True, enabled=enabled)
                s.refresh(model)
            return to_record(ScheduledOperation, model)

        return self.db.write(change)

    def set_delegation(self, op_id: str, user_id: str | None, trust_id: str | None,
                       project_id: str | None = None) -> ScheduledOperation:
        """Who the operation's runs act as from now on (a new owner and Keystone trust); returns the operation
        as it was, so that the caller can delete the trust it replaced."""

        def change(s: orm.Session) -> ScheduledOperation:
            model = load(s, ScheduledOperationModel, op_id, kind="ScheduledOperation", project_id=project_id,
                         for_update=True)
            before = to_record(ScheduledOperation, model)
            model.user_id, model.trust_id, model.updated_at = user_id, trust_id, self.db.now()
            return before

        return self.db.write(change)

    def delete_operation(self, op_id: str, project_id: str | None = None) -> ScheduledOperation:
        """Delete the operation with its fires and logs; returns what was deleted."""

        def delete(s: orm.Session) -> ScheduledOperation:
            model = load(s, ScheduledOperationModel, op_id, kind="ScheduledOperation", project_id=project_id,
                         for_update=True)
            record = to_record(ScheduledOperation, model)
            s.execute(sa.delete(_FIRES).where(_FIRES.c.operation_id == op_id))
            s.delete(model)
            return record

        return self.db.write(delete)

    # -- planning --------------------------------------------------------------------

    def operations_to_plan(self, horizon: _dt.datetime, limit: int = 100) -> list[tuple[ScheduledOperation, Trigger]]:
        """Enabled operations planned to before ``horizon``, least planned first, with their triggers."""
        with self.db.session() as s:
            rows = s.execute(_TO_PLAN, {"horizon": horizon, "limit": limit}).all()
            return [(to_record(ScheduledOperation, op), to_record(Trigger, trig)) for op, trig in rows]

    def extend_plan(self, op: ScheduledOperation, until: _dt.datetime,
                    fires: Sequence[tuple[_dt.datetime, _dt.datetime, str]]) -> bool:
        """Insert ``fires`` (fire_time, window_end, state) and move ``planned_until`` to ``until``.

        Compare-and-set on ``op.plan_version``: False (and nothing written) when another engine planned the
        operation first, or it was changed (re-planned, suspended, deleted) since ``op`` was read.
        """

        def plan(s: orm.Session) -> bool:
            now = self.db.now()
            result = s.execute(sa.update(_OPS).where(
                _OPS.c.id == op.id, _OPS.c.plan_version == op.plan_version, _OPS.c.enabled.is_(True),
            ).values(planned_until=until, plan_version=op.plan_version + 1, updated_at=now))
            if _rowcount(result) != 1:
                return False
            if fires:
                s.execute(sa.insert(_FIRES), [{
                    "id": str(uuid.uuid4()), "operation_id": op.id, "project_id": op.project_id,
                    "fire_time": fire_time, "window_end": window_end, "state": state, "attempts": 0,
                    "version": 0, "extra_info": {}, "created_at": now, "updated_at": now,
                    "ended_at": now if state != FireState.PLANNED else None,
                    "error_info": None if state == FireState.PLANNED else MISSED_WHILE_DOWN,
                } for fire_time, window_end, state in fires])
            return True

        try:
            return bool(self.db.write(plan))
        except sa.exc.IntegrityError:
            return False  # a fire at one of these times exists already: someone else planned it

    # -- fires -----------------------------------------------------------------------

    def due_fires(self, now: _dt.datetime, limit: int) -> list[ScheduledFire]:
        """Planned fires whose time has come, and claimed ones whose claim expired; oldest first."""
        with self.db.session() as s:
            rows = s.execute(_DUE, {"now": now, "limit": limit}).scalars().all()
            return [to_record(ScheduledFire, m) for m in rows]

    def poll(self, now: _dt.datetime, horizon: _dt.datetime, due_limit: int, plan_limit: int = 100,
             ) -> tuple[list[tuple[ScheduledOperation, Trigger]], list[ScheduledFire]]:
        """:meth:`operations_to_plan` and :meth:`due_fires` in one read transaction (an engine's pass)."""
        with self.db.session() as s:
            to_plan = s.execute(_TO_PLAN, {"horizon": horizon, "limit": plan_limit}).all()
            due = s.execute(_DUE, {"now": now, "limit": due_limit}).scalars().all()
            return ([(to_record(ScheduledOperation, op), to_record(Trigger, trig)) for op, trig in to_plan],
                    [to_record(ScheduledFire, m) for m in due])

    def _cas(self, fire: ScheduledFire, values: Mapping[str, Any]) -> ScheduledFire | None:
        """Apply ``values`` if the fire is still at ``fire.version``; the new fire, or None."""
        now = self.db.now()

        def update(s: orm.Session) -> bool:
            result = s.execute(sa.update(_FIRES).where(
                _FIRES.c.id == fire.id, _FIRES.c.version == fire.version,
            ).values(**values, version=fire.version + 1, updated_at=now))
            return _rowcount(result) == 1

        if not self.db.write(update):
            return None
        return dataclasses.replace(fire, **values, version=fire.version + 1, updated_at=now)

    def claim(self, fire: ScheduledFire, owner: str, expires: _dt.datetime) -> ScheduledFire | None:
        """Make ``owner`` the fire's only runner until ``expires`` (a fresh claim token); None if another
        engine claimed, or changed, it since it was read."""
        now = self.db.now()
        return self._cas(fire, {
            "state": FireState.IN_PROGRESS.value, "owner": owner, "claim_token": str(uuid.uuid4()),
            "claim_expires_at": expires, "attempts": fire.attempts + 1,
            "triggered_at": fire.triggered_at or now,
        })

    def drop(self, fire: ScheduledFire, reason: str) -> ScheduledFire | None:
        """Log an unclaimed fire whose window closed as ``dropped_out_of_window``."""
        return self._cas(fire, {"state": FireState.DROPPED_OUT_OF_WINDOW.value, "ended_at": self.db.now(),
                                "error_info": reason, "claim_token": None, "claim_expires_at": None})

    def update_run(self, fire: ScheduledFire, values: Mapping[str, Any]) -> ScheduledFire | None:
        """Change a claimed fire if its ``claim_token`` still holds the claim; the changed fire, or None when
        the claim was lost (another engine took the fire over)."""
        allowed = {"state", "started_at", "ended_at", "checkpoint_id", "error_info", "extra_info",
                   "claim_expires_at"}
        bad = set(values) - allowed
        if bad:
            raise exceptions.InvalidInput(reason=f"fire fields {sorted(bad)} cannot be updated")
        now = self.db.now()

        def update(s: orm.Session) -> bool:
            result = s.execute(sa.update(_FIRES).where(
                _FIRES.c.id == fire.id, _FIRES.c.claim_token == fire.claim_token,
                _FIRES.c.state == FireState.IN_PROGRESS.value,
            ).values(**values, version=_FIRES.c.version + 1, updated_at=now))
            return _rowcount(result) == 1

        if not self.db.write(update):
            return None
        return dataclasses.replace(fire, **values, updated_at=now)

    def renew(self, tokens: Sequence[str], expires: _dt.datetime) -> int:
        """Extend the claims held with ``tokens``; returns how many are still held."""
        if not tokens:
            return 0

        def update(s: orm.Session) -> int:
            return _rowcount(s.execute(sa.update(_FIRES).where(
                _FIRES.c.claim_token.in_(list(tokens)), _FIRES.c.state == FireState.IN_PROGRESS.value,
            ).values(claim_expires_at=expires, version=_FIRES.c.version + 1, updated_at=self.db.now())))

        return int(self.db.write(update))

    def release_claims(self, except_owner: str, owner_prefix: str) -> int:
        """Make the claims of owners named ``owner_prefix...`` (but ``except_owner``) expire now."""
        now = self.db.now()

        def update(s: orm.Session) -> int:
            return _rowcount(s.execute(sa.update(_FIRES).where(
                _FIRES.c.state == FireState.IN_PROGRESS.value, _FIRES.c.owner != except_owner,
                _FIRES.c.owner.startswith(owner_prefix, autoescape=True),
            ).values(claim_expires_at=now, version=_FIRES.c.version + 1, updated_at=now)))

        return int(self.db.write(update))

    def get_fire(self, fire_id: str) -> ScheduledFire:
        with self.db.session() as s:
            return to_record(ScheduledFire, load(s, ScheduledFireModel, fire_id, kind="ScheduledOperationLog"))

    def list_fires(self, operation_id: str | None, project_id: str | None = None, *,
                   filters: Mapping[str, Any] | None = None, marker: str | None = None,
                   limit: int | None = None, include_planned: bool = False,
                   sort: Sequence[tuple[str, str]] = (("expect_start_time", "desc"),)) -> list[ScheduledFire]:
        """The logs of an operation (fires that were claimed or dropped), newest first by default."""
        conds = filter_conditions(ScheduledFireModel, filters, FIRE_FILTERS)
        scope: list[ColumnElement[bool]] = []
        if operation_id is not None:
            scope.append(ScheduledFireModel.operation_id == operation_id)
        if project_id is not None:
            scope.append(ScheduledFireModel.project_id == project_id)
        if not include_planned:
            scope.append(ScheduledFireModel.state != FireState.PLANNED.value)
        with self.db.session() as s:
            rows = list_rows(s, ScheduledFireModel, scope=scope, conditions=conds, sort=sort,
                             allowed_sort=FIRE_SORT, marker=marker, limit=limit)
            return [to_record(ScheduledFire, m) for m in rows]

    def next_fire_times(self, operation_ids: Sequence[str]) -> dict[str, _dt.datetime]:
        """The earliest planned fire of each of ``operation_ids`` that has one (a suspended operation, or one
        whose trigger has ended, has none)."""
        if not operation_ids:
            return {}
        with self.db.session() as s:
            rows = s.execute(sa.select(ScheduledFireModel.operation_id, sa.func.min(ScheduledFireModel.fire_time))
                             .join(ScheduledOperationModel,
                                   ScheduledOperationModel.id == ScheduledFireModel.operation_id)
                             .where(ScheduledFireModel.operation_id.in_(list(operation_ids)),
                                    ScheduledFireModel.state == FireState.PLANNED.value,
                                    ScheduledOperationModel.enabled.is_(True))
                             .group_by(ScheduledFireModel.operation_id)).all()
        return {str(op_id): _as_utc(when) for op_id, when in rows if when is not None}

    def purge_history(self, before: _dt.datetime, limit: int = 1000) -> int:
        """Delete finished fire logs that ended before ``before`` (at most ``limit`` per call)."""

        def purge(s: orm.Session) -> int:
            ids = [r[0] for r in s.execute(sa.select(_FIRES.c.id).where(
                _FIRES.c.state.in_([st.value for st in (FireState.SUCCESS, FireState.FAILED,
                                                         FireState.DROPPED_OUT_OF_WINDOW)]),
                _FIRES.c.ended_at < before).limit(limit))]
            if not ids:
                return 0
            return _rowcount(s.execute(sa.delete(_FIRES).where(_FIRES.c.id.in_(ids))))

        return int(self.db.write(purge))


def _as_utc(value: _dt.datetime) -> _dt.datetime:
    """A time read back by an aggregate (which the column type does not convert): UTC-aware."""
    return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
