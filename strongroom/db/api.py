"""The metadata store: plans, the checkpoint catalogue, restores, operation logs, services.

One :class:`Database` is shared by every thread of a process; each call runs in
its own session and transaction.  Callers get typed records
(:mod:`strongroom.objects.records`), never ORM objects.  Status changes are
judged by :func:`strongroom.objects.status.check_transition`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import enum
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.engine import URL
from sqlalchemy.sql.elements import ColumnElement

from strongroom import exceptions
from strongroom.clock import Clock
from strongroom.db import drivers, migration, pagination
from strongroom.db.models import (
    Base,
    CheckpointModel,
    OperationLogModel,
    PlanModel,
    ResourceModel,
    RestoreModel,
    ServiceModel,
)
from strongroom.objects.records import (
    CheckpointRecord,
    OperationLog,
    Plan,
    Record,
    Resource,
    Restore,
    Service,
    parse_time,
)
from strongroom.objects.status import CheckpointStatus, PlanStatus, RestoreStatus, check_transition

R = TypeVar("R", bound=Record)
M = TypeVar("M", bound=Base)

DEFAULT_SORT: Sequence[tuple[str, str]] = (("created_at", "desc"),)
RESTORE_KINDS = ("restore", "verification")
_CAS_ATTEMPTS = 5


def _sortable(model: type[Base], *names: str, nullable: Sequence[str] = ()) -> dict[str, ColumnElement[Any]]:
    cols: dict[str, ColumnElement[Any]] = {n: getattr(model, n) for n in names}
    # Nullable text keys sort as '' so that NULLs order the same way on every database.
    cols.update({n: sa.func.coalesce(getattr(model, n), "").label(n) for n in nullable})
    return cols


PLAN_SORT = _sortable(PlanModel, "id", "name", "status", "provider_id", "project_id", "created_at",
                      "updated_at")
CHECKPOINT_SORT = _sortable(CheckpointModel, "id", "status", "provider_id", "project_id", "created_at",
                            "updated_at", nullable=("plan_id",))
RESTORE_SORT = _sortable(RestoreModel, "id", "status", "provider_id", "project_id", "checkpoint_id",
                         "created_at", "updated_at")
OPLOG_SORT = _sortable(OperationLogModel, "id", "status", "operation_type", "project_id", "created_at",
                       "updated_at", nullable=("provider_id", "checkpoint_id", "plan_id"))

PLAN_FILTERS = ("name", "status", "provider_id")
CHECKPOINT_FILTERS = ("plan_id", "status", "start_date", "end_date")
RESTORE_FILTERS = ("checkpoint_id", "provider_id", "status", "restore_target")
OPLOG_FILTERS = ("checkpoint_id", "plan_id", "restore_id", "status", "operation_type", "provider_id")

PLAN_UPDATABLE = frozenset({"name", "description", "status", "parameters", "resources"})
CHECKPOINT_UPDATABLE = frozenset({"status", "status_reason", "plan_id", "owner_id", "protection_plan",
                                  "resource_graph", "extra_info", "bytes_total", "bytes_done"})
RESTORE_UPDATABLE = frozenset({"status", "restore_target", "parameters", "resources_status",
                               "resources_reason", "extra_info"})
OPLOG_UPDATABLE = frozenset({"status", "provider_id", "checkpoint_id", "plan_id", "restore_id",
                             "scheduled_operation_id", "host", "error_info", "extra_info", "started_at",
                             "ended_at"})
SERVICE_UPDATABLE = frozenset({"topic", "disabled", "disabled_reason", "last_heartbeat"})


class DBDeadlock(exceptions.ServiceUnavailable):
    """{what} is unavailable: {reason}"""


#: (MySQL/MariaDB error numbers, PostgreSQL SQLSTATEs) that mean: run the transaction again.
_MYSQL_RETRY = frozenset({1205, 1213})  # lock wait timeout, deadlock
_PG_RETRY = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure


def _is_deadlock(err: BaseException) -> bool:
    orig = getattr(err, "orig", None)
    if orig is None:
        return False
    if getattr(orig, "pgcode", None) in _PG_RETRY:
        return True
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    return bool(args) and isinstance(args[0], int) and args[0] in _MYSQL_RETRY


def mask_url(url: str | URL) -> str:
    """``url`` with its password (and any password-like query parameter) replaced by ``***``."""
    try:
        parsed = drivers.parse_url(url)
    except exceptions.ConfigError:
        return "<invalid database URL>"
    secret_keys = [k for k in parsed.query if any(w in k.lower() for w in ("password", "secret", "token"))]
    if secret_keys:
        parsed = parsed.update_query_dict({k: "***" for k in secret_keys})
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def _utc(value: _dt.datetime | str | None) -> _dt.datetime | None:
    parsed = parse_time(value)
    return None if parsed is None else parsed.astimezone(_dt.UTC)


def _status_value(kind: str, value: Any, enum_type: type[enum.Enum]) -> str:
    try:
        return str(enum_type(value).value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum_type)
        raise exceptions.InvalidInput(
            reason=f"unknown {kind} status '{value}' (allowed: {allowed})") from None


def _check_keys(kind: str, values: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for key in values:
        if key not in allowed:
            raise exceptions.InvalidInput(
                reason=f"field '{key}' of a {kind} cannot be updated (allowed: {', '.join(sorted(allowed))})")


def _record(cls: type[R], model: Base, **extra: Any) -> R:
    kwargs = {f.name: getattr(model, f.name) for f in dataclasses.fields(cls) if f.name not in extra}
    kwargs.update(extra)
    return cls(**kwargs)


def _columns(model_cls: type[Base], record: Record, *, skip: Sequence[str] = ()) -> dict[str, Any]:
    names = set(sa.inspect(model_cls).columns.keys())
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)
            if f.name in names and f.name not in skip}


def _resource_models(plan_id: str, resources: Sequence[Resource | Mapping[str, Any]]) -> list[ResourceModel]:
    out: list[ResourceModel] = []
    seen: set[str] = set()
    for item in resources:
        res = item if isinstance(item, Resource) else Resource.from_dict(dict(item))
        if res.key in seen:
            raise exceptions.InvalidInput(reason=f"resource {res.key} is listed twice in plan {plan_id}")
        seen.add(res.key)
        out.append(ResourceModel(resource_id=res.id, resource_type=res.type, resource_name=res.name or "",
                                 extra_info=dict(res.extra_info or {})))
    return out


def _plan_record(model: PlanModel) -> Plan:
    resources = [Resource(id=r.resource_id, type=r.resource_type, name=r.resource_name,
                          extra_info=dict(r.extra_info or {})) for r in model.resources]
    return _record(Plan, model, resources=resources)


class Database:
    """The metadata store behind one SQLAlchemy URL.

    No connection is made until the first call.  Thread-safe: every method
    runs in a session and transaction of its own.
    """

    def __init__(self, url: str, *, echo: bool = False, clock: Clock | None = None) -> None:
        self._driver = drivers.driver_for(url)
        self.url_for_display: str = "memory://" if self._driver.scheme == "memory" else mask_url(url)
        self._echo = echo
        self._clock = clock or Clock()
        self._lock = threading.Lock()
        self._serial = threading.RLock() if self._driver.serialized else None
        self._engine: sa.Engine | None = None
        self._read_sessions: orm.sessionmaker[orm.Session] | None = None
        self._write_sessions: orm.sessionmaker[orm.Session] | None = None

    def __repr__(self) -> str:
        return f"Database({self.url_for_display!r})"

    # -- engine, schema ------------------------------------------------------

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine, created on first use."""
        with self._lock:
            if self._engine is None:
                self._driver.prepare()
                kwargs = self._driver.engine_kwargs()
                try:
                    engine = sa.create_engine(self._driver.sqlalchemy_url(), echo=self._echo,
                                              hide_parameters=not self._echo, **kwargs)
                except ImportError as err:
                    raise exceptions.ConfigError(
                        reason=f"the database driver for {self.url_for_display} is not installed ({err}); "
                               "install strongroom's 'postgresql' or 'mysql' extra") from err
                self._driver.setup_engine(engine)
                write_engine = engine.execution_options(**{drivers.WRITE_OPTION: True})
                self._read_sessions = orm.sessionmaker(bind=engine, expire_on_commit=False)
                self._write_sessions = orm.sessionmaker(bind=write_engine, expire_on_commit=False)
                self._engine = engine
            return self._engine

    def sync(self) -> None:
        """Create or upgrade the schema to the newest revision (idempotent)."""
        with self._serialized(), self._errors():
            migration.upgrade(self.engine.execution_options(**{drivers.WRITE_OPTION: True}))

    def version(self) -> str | None:
        """The schema revision of the database, or None if it was never synced."""
        if not self._driver.exists():
            return None
        with self._serialized(), self._errors():
            return migration.current(self.engine)

    def dispose(self) -> None:
        """Close every pooled connection (the next call reconnects)."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
            self._engine = None
            self._read_sessions = self._write_sessions = None

    # -- sessions --------------------------------------------------------------

    @contextlib.contextmanager
    def _serialized(self) -> Iterator[None]:
        if self._serial is None:
            yield
        else:
            with self._serial:
                yield

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError) as err:
            orig = getattr(err, "orig", None) or err
            reason = f"{type(orig).__name__}: {str(orig).splitlines()[0] if str(orig) else ''}"
            error_class = DBDeadlock if _is_deadlock(err) else exceptions.ServiceUnavailable
            raise error_class(what=f"metadata store {self.url_for_display}", reason=reason) from None

    @contextlib.contextmanager
    def _session(self, *, write: bool = False) -> Iterator[orm.Session]:
        self.engine  # noqa: B018 - creates the session factories
        factory = self._write_sessions if write else self._read_sessions
        assert factory is not None
        with self._serialized(), self._errors(), factory() as session, session.begin():
            yield session

    def _now(self) -> _dt.datetime:
        return self._clock.now().astimezone(_dt.UTC)

    def _list(self, session: orm.Session, model: type[M], *, scope: Sequence[ColumnElement[bool]],
              conditions: Sequence[ColumnElement[bool]], sort: Sequence[tuple[str, str]],
              allowed_sort: Mapping[str, ColumnElement[Any]], marker: str | None, limit: int | None,
              options: Sequence[Any] = ()) -> list[M]:
        stmt = sa.select(model).where(*scope, *conditions)
        if options:
            stmt = stmt.options(*options)
        stmt = pagination.paginate(session, stmt, id_column=cast(ColumnElement[Any], model.id),  # type: ignore[attr-defined]
                                   scope=scope, sort=sort, allowed_sort=allowed_sort, marker=marker,
                                   limit=limit)
        return list(session.execute(stmt).scalars().all())

    @staticmethod
    def _insert(session: orm.Session, model: Base, kind: str, obj_id: Any) -> None:
        session.add(model)
        try:
            session.flush()
        except sa.exc.IntegrityError as err:
            raise exceptions.Conflict(reason=f"{kind} {obj_id} already exists") from err

    # -- plans ------------------------------------------------------------------

    @staticmethod
    def _plan_scope(project_id: str | None) -> list[ColumnElement[bool]]:
        scope: list[ColumnElement[bool]] = [PlanModel.deleted_at.is_(None)]
        if project_id is not None:
            scope.append(PlanModel.project_id == project_id)
        return scope

    def _load_plan(self, session: orm.Session, plan_id: str, project_id: str | None,
                   *, for_update: bool = False) -> PlanModel:
        stmt = sa.select(PlanModel).where(PlanModel.id == plan_id, *self._plan_scope(project_id))
        stmt = stmt.options(orm.selectinload(PlanModel.resources))
        if for_update:
            stmt = stmt.with_for_update()
        model = session.execute(stmt).scalar_one_or_none()
        if model is None:
            raise exceptions.NotFound(kind="Plan", id=plan_id)
        return model

    def create_plan(self, plan: Plan) -> Plan:
        """Insert ``plan`` (its id is chosen by the caller); Conflict if the id is taken."""
        now = self._now()
        status = _status_value("plan", plan.status, PlanStatus)
        with self._session(write=True) as s:
            model = PlanModel(**_columns(PlanModel, plan, skip=("status", "created_at", "updated_at")),
                              status=status, created_at=_utc(plan.created_at) or now,
                              updated_at=_utc(plan.updated_at) or _utc(plan.created_at) or now)
            model.description = model.description or ""
            model.parameters = dict(plan.parameters or {})
            model.resources = _resource_models(plan.id, plan.resources)
            self._insert(s, model, "Plan", plan.id)
            return _plan_record(model)

    def get_plan(self, plan_id: str, project_id: str | None = None) -> Plan:
        with self._session() as s:
            return _plan_record(self._load_plan(s, plan_id, project_id))

    def list_plans(self, project_id: str | None, *, filters: Mapping[str, Any] | None = None,
                   marker: str | None = None, limit: int | None = None,
                   sort: Sequence[tuple[str, str]] = DEFAULT_SORT) -> list[Plan]:
        """Plans of ``project_id`` (None: every project), filtered by name, status, provider_id."""
        checked = pagination.check_filters(filters, PLAN_FILTERS)
        conds = [pagination.eq_filter(getattr(PlanModel, k), v) for k, v in checked.items()]
        with self._session() as s:
            rows = self._list(s, PlanModel, scope=self._plan_scope(project_id), conditions=conds, sort=sort,
                              allowed_sort=PLAN_SORT, marker=marker, limit=limit,
                              options=[orm.selectinload(PlanModel.resources)])
            return [_plan_record(m) for m in rows]

    def update_plan(self, plan_id: str, values: Mapping[str, Any], project_id: str | None = None) -> Plan:
        """Change name, description, status, parameters or resources (a list that replaces all)."""
        _check_keys("plan", values, PLAN_UPDATABLE)
        with self._session(write=True) as s:
            model = self._load_plan(s, plan_id, project_id, for_update=True)
            for key, value in values.items():
                if key == "status":
                    target = _status_value("plan", value, PlanStatus)
                    check_transition("Plan", plan_id, model.status, target, PlanStatus)
                    model.status = target
                elif key == "resources":
                    new_resources = _resource_models(plan_id, value or [])
                    model.resources.clear()
                    s.flush()  # delete before insert: the unique (plan, type, id) key
                    model.resources.extend(new_resources)
                elif key == "parameters":
                    model.parameters = dict(value or {})
                elif key == "description":
                    model.description = value or ""
                else:
                    setattr(model, key, value)
            model.updated_at = self._now()
            s.flush()
            return _plan_record(model)

    def delete_plan(self, plan_id: str, project_id: str | None = None) -> None:
        """Soft-delete a plan: it disappears from get and list."""
        with self._session(write=True) as s:
            model = self._load_plan(s, plan_id, project_id, for_update=True)
            model.deleted_at = model.updated_at = self._now()

    # -- checkpoint catalogue ----------------------------------------------------

    def create_checkpoint(self, cp: CheckpointRecord) -> CheckpointRecord:
        """Insert a catalogue entry; ``created_at`` is kept when given (the bank's index has one)."""
        now = self._now()
        status = _status_value("checkpoint", cp.status, CheckpointStatus)
        with self._session(write=True) as s:
            columns = _columns(CheckpointModel, cp, skip=("status", "created_at", "updated_at"))
            model = CheckpointModel(**columns, status=status, created_at=_utc(cp.created_at) or now,
                                    updated_at=_utc(cp.updated_at) or _utc(cp.created_at) or now)
            model.protection_plan = dict(cp.protection_plan or {})
            model.extra_info = dict(cp.extra_info or {})
            self._insert(s, model, "Checkpoint", cp.id)
            return _record(CheckpointRecord, model)

    def get_checkpoint(self, checkpoint_id: str, project_id: str | None = None,
                       provider_id: str | None = None) -> CheckpointRecord:
        with self._session() as s:
            model = s.execute(sa.select(CheckpointModel).where(
                CheckpointModel.id == checkpoint_id, *self._checkpoint_scope(provider_id, project_id),
            )).scalar_one_or_none()
            if model is None:
                raise exceptions.NotFound(kind="Checkpoint", id=checkpoint_id)
            return _record(CheckpointRecord, model)

    @staticmethod
    def _checkpoint_scope(provider_id: str | None, project_id: str | None) -> list[ColumnElement[bool]]:
        scope: list[ColumnElement[bool]] = []
        if provider_id is not None:
            scope.append(CheckpointModel.provider_id == provider_id)
        if project_id is not None:
            scope.append(CheckpointModel.project_id == project_id)
        return scope

    def list_checkpoints(self, provider_id: str | None, project_id: str | None, *,
                         filters: Mapping[str, Any] | None = None, marker: str | None = None,
                         limit: int | None = None,
                         sort: Sequence[tuple[str, str]] = DEFAULT_SORT) -> list[CheckpointRecord]:
        """Catalogue entries; filters: plan_id, status, start_date / end_date (whole UTC days, inclusive)."""
        checked = pagination.check_filters(filters, CHECKPOINT_FILTERS)
        start, end = checked.pop("start_date", None), checked.pop("end_date", None)
        conds = [pagination.eq_filter(getattr(CheckpointModel, k), v) for k, v in checked.items()]
        conds += pagination.date_range(cast(ColumnElement[Any], CheckpointModel.created_at), start, end)
        with self._session() as s:
            rows = self._list(s, CheckpointModel, scope=self._checkpoint_scope(provider_id, project_id),
                              conditions=conds, sort=sort, allowed_sort=CHECKPOINT_SORT, marker=marker,
                              limit=limit)
            return [_record(CheckpointRecord, m) for m in rows]

    def update_checkpoint(self, checkpoint_id: str, values: Mapping[str, Any], *,
                          expected_status: str | Sequence[str] | None = None,
                          check: bool = True) -> CheckpointRecord:
        """Update a catalogue entry.

        ``expected_status``: compare-and-set; Conflict unless the current status
        is one of these when the update is applied (atomic: one of two racing
        callers wins).  ``check=False`` skips the transition table (admin reset).
        """
        _check_keys("checkpoint", values, CHECKPOINT_UPDATABLE)
        updates = dict(values)
        if "status" in updates:
            updates["status"] = _status_value("checkpoint", updates["status"], CheckpointStatus)
        expected: tuple[str, ...] | None = None
        if expected_status is not None:
            items = [expected_status] if isinstance(expected_status, str) else list(expected_status)
            expected = tuple(_status_value("checkpoint", v, CheckpointStatus) for v in items)
        table = cast(sa.Table, CheckpointModel.__table__)
        for _attempt in range(_CAS_ATTEMPTS):
            with contextlib.suppress(DBDeadlock), self._session(write=True) as s:
                current = s.execute(sa.select(CheckpointModel.status).where(
                    CheckpointModel.id == checkpoint_id)).scalar_one_or_none()
                if current is None:
                    raise exceptions.NotFound(kind="Checkpoint", id=checkpoint_id)
                if expected is not None and current not in expected:
                    raise exceptions.Conflict(
                        reason=f"Checkpoint {checkpoint_id} is '{current}', expected "
                               f"{' or '.join(repr(e) for e in expected)}")
                if check and "status" in updates:
                    check_transition("Checkpoint", checkpoint_id, current, updates["status"],
                                     CheckpointStatus)
                guard = expected if expected is not None else (current,)
                stmt = (sa.update(table)
                        .where(table.c.id == checkpoint_id, table.c.status.in_(guard))
                        .values(**updates, updated_at=self._now()))
                result = cast(sa.CursorResult[Any], s.execute(stmt))
                if result.rowcount == 1:
                    model = s.execute(sa.select(CheckpointModel).where(CheckpointModel.id == checkpoint_id)
                                      .execution_options(populate_existing=True)).scalar_one()
                    return _record(CheckpointRecord, model)
            # The status changed between our read and our write (or the server chose us as a
            # deadlock victim): judge again on the new status.
        raise exceptions.Conflict(reason=f"Checkpoint {checkpoint_id} is changing too often; try again")

    # -- restores and verifications ------------------------------------------------

    @staticmethod
    def _kind_name(kind: str | None) -> str:
        return "Verification" if kind == "verification" else "Restore"

    @staticmethod
    def _check_kind(kind: str) -> str:
        if kind not in RESTORE_KINDS:
            raise exceptions.InvalidInput(
                reason=f"unknown restore kind '{kind}' (allowed: {', '.join(RESTORE_KINDS)})")
        return kind

    @staticmethod
    def _restore_scope(project_id: str | None, kind: str | None) -> list[ColumnElement[bool]]:
        scope: list[ColumnElement[bool]] = []
        if project_id is not None:
            scope.append(RestoreModel.project_id == project_id)
        if kind is not None:
            scope.append(RestoreModel.kind == kind)
        return scope

    def _load_restore(self, session: orm.Session, restore_id: str, project_id: str | None, kind: str | None,
                      *, for_update: bool = False) -> RestoreModel:
        stmt = sa.select(RestoreModel).where(RestoreModel.id == restore_id,
                                             *self._restore_scope(project_id, kind))
        if for_update:
            stmt = stmt.with_for_update()
        model = session.execute(stmt).scalar_one_or_none()
        if model is None:
            raise exceptions.NotFound(kind=self._kind_name(kind), id=restore_id)
        return model

    def create_restore(self, r: Restore) -> Restore:
        now = self._now()
        kind = self._check_kind(r.kind)
        status = _status_value(kind, r.status, RestoreStatus)
        with self._session(write=True) as s:
            model = RestoreModel(**_columns(RestoreModel, r, skip=("status", "created_at", "updated_at")),
                                 status=status, created_at=_utc(r.created_at) or now,
                                 updated_at=_utc(r.updated_at) or _utc(r.created_at) or now)
            for key in ("parameters", "resources_status", "resources_reason", "extra_info"):
                setattr(model, key, dict(getattr(r, key) or {}))
            self._insert(s, model, self._kind_name(kind), r.id)
            return _record(Restore, model)

    def get_restore(self, restore_id: str, project_id: str | None = None, kind: str | None = None) -> Restore:
        if kind is not None:
            self._check_kind(kind)
        with self._session() as s:
            return _record(Restore, self._load_restore(s, restore_id, project_id, kind))

    def list_restores(self, project_id: str | None, *, kind: str = "restore",
                      filters: Mapping[str, Any] | None = None, marker: str | None = None,
                      limit: int | None = None,
                      sort: Sequence[tuple[str, str]] = DEFAULT_SORT) -> list[Restore]:
        """Restores (or verifications); filters: checkpoint_id, provider_id, status, restore_target."""
        self._check_kind(kind)
        checked = pagination.check_filters(filters, RESTORE_FILTERS)
        conds = [pagination.eq_filter(getattr(RestoreModel, k), v) for k, v in checked.items()]
        with self._session() as s:
            rows = self._list(s, RestoreModel, scope=self._restore_scope(project_id, kind), conditions=conds,
                              sort=sort, allowed_sort=RESTORE_SORT, marker=marker, limit=limit)
            return [_record(Restore, m) for m in rows]

    def update_restore(self, restore_id: str, values: Mapping[str, Any]) -> Restore:
        """Update a restore or verification; status changes follow the transition table."""
        _check_keys("restore", values, RESTORE_UPDATABLE)
        with self._session(write=True) as s:
            model = self._load_restore(s, restore_id, None, None, for_update=True)
            for key, value in values.items():
                if key == "status":
                    target = _status_value(model.kind, value, RestoreStatus)
                    check_transition(self._kind_name(model.kind), restore_id, model.status, target,
                                     RestoreStatus)
                    model.status = target
                elif key == "restore_target":
                    model.restore_target = value
                else:
                    setattr(model, key, dict(value or {}))
            model.updated_at = self._now()
            s.flush()
            return _record(Restore, model)

    def delete_restore(self, restore_id: str) -> None:
        with self._session(write=True) as s:
            s.delete(self._load_restore(s, restore_id, None, None, for_update=True))

    # -- operation logs -------------------------------------------------------------

    def create_operation_log(self, log: OperationLog) -> OperationLog:
        now = self._now()
        with self._session(write=True) as s:
            model = OperationLogModel(**_columns(OperationLogModel, log, skip=(
                "created_at", "updated_at", "started_at", "ended_at")),
                created_at=_utc(log.created_at) or now,
                updated_at=_utc(log.updated_at) or _utc(log.created_at) or now,
                started_at=_utc(log.started_at), ended_at=_utc(log.ended_at))
            model.extra_info = dict(log.extra_info or {})
            self._insert(s, model, "OperationLog", log.id)
            return _record(OperationLog, model)

    def get_operation_log(self, log_id: str, project_id: str | None = None) -> OperationLog:
        with self._session() as s:
            return _record(OperationLog, self._load_oplog(s, log_id, project_id))

    @staticmethod
    def _load_oplog(session: orm.Session, log_id: str, project_id: str | None,
                    *, for_update: bool = False) -> OperationLogModel:
        stmt = sa.select(OperationLogModel).where(OperationLogModel.id == log_id)
        if project_id is not None:
            stmt = stmt.where(OperationLogModel.project_id == project_id)
        if for_update:
            stmt = stmt.with_for_update()
        model = session.execute(stmt).scalar_one_or_none()
        if model is None:
            raise exceptions.NotFound(kind="OperationLog", id=log_id)
        return model

    def list_operation_logs(self, project_id: str | None, *, filters: Mapping[str, Any] | None = None,
                            marker: str | None = None, limit: int | None = None,
                            sort: Sequence[tuple[str, str]] = DEFAULT_SORT) -> list[OperationLog]:
        """Filters: checkpoint_id, plan_id, restore_id, status, operation_type, provider_id."""
        checked = pagination.check_filters(filters, OPLOG_FILTERS)
        conds = [pagination.eq_filter(getattr(OperationLogModel, k), v) for k, v in checked.items()]
        scope = [] if project_id is None else [OperationLogModel.project_id == project_id]
        with self._session() as s:
            rows = self._list(s, OperationLogModel, scope=scope, conditions=conds, sort=sort,
                              allowed_sort=OPLOG_SORT, marker=marker, limit=limit)
            return [_record(OperationLog, m) for m in rows]

    def update_operation_log(self, log_id: str, values: Mapping[str, Any]) -> OperationLog:
        _check_keys("operation log", values, OPLOG_UPDATABLE)
        with self._session(write=True) as s:
            model = self._load_oplog(s, log_id, None, for_update=True)
            for key, value in values.items():
                if key in ("started_at", "ended_at"):
                    value = _utc(value)
                elif key == "extra_info":
                    value = dict(value or {})
                setattr(model, key, value)
            model.updated_at = self._now()
            s.flush()
            return _record(OperationLog, model)

    # -- services ------------------------------------------------------------------

    def service_heartbeat(self, host: str, binary: str, topic: str = "") -> Service:
        """Record that ``binary`` on ``host`` is alive (creates its row on first call)."""
        for _attempt in range(_CAS_ATTEMPTS):
            try:
                with self._session(write=True) as s:
                    now = self._now()
                    model = s.execute(sa.select(ServiceModel).where(
                        ServiceModel.host == host, ServiceModel.binary == binary).with_for_update(),
                    ).scalar_one_or_none()
                    if model is None:
                        model = ServiceModel(host=host, binary=binary, topic=topic or "", disabled=False,
                                             created_at=now, updated_at=now, last_heartbeat=now)
                        s.add(model)
                    else:
                        model.last_heartbeat = model.updated_at = now
                        if topic:
                            model.topic = topic
                    s.flush()
                    return _record(Service, model)
            except (sa.exc.IntegrityError, DBDeadlock):
                continue  # another thread inserted the same (host, binary) first: update it
        raise exceptions.Conflict(reason=f"service {binary} on {host} could not be recorded; try again")

    def list_services(self, *, host: str | None = None, binary: str | None = None) -> list[Service]:
        """Every service row in id order, optionally only those of ``host`` and/or ``binary``."""
        stmt = sa.select(ServiceModel).order_by(ServiceModel.id)
        if host is not None:
            stmt = stmt.where(ServiceModel.host == host)
        if binary is not None:
            stmt = stmt.where(ServiceModel.binary == binary)
        with self._session() as s:
            return [_record(Service, m) for m in s.execute(stmt).scalars().all()]

    def get_service(self, service_id: int) -> Service:
        with self._session() as s:
            model = s.get(ServiceModel, service_id)
            if model is None:
                raise exceptions.NotFound(kind="Service", id=service_id)
            return _record(Service, model)

    def service_is_disabled(self, host: str, binary: str) -> bool:
        """True when an administrator disabled ``binary`` on ``host`` (False for a service never seen).

        A disabled worker keeps running and beating but takes no new work.
        """
        with self._session() as s:
            return bool(s.execute(sa.select(ServiceModel.disabled).where(
                ServiceModel.host == host, ServiceModel.binary == binary)).scalar_one_or_none())

    def update_service(self, service_id: int, values: Mapping[str, Any]) -> Service:
        """Change topic, disabled, disabled_reason or last_heartbeat of a service."""
        _check_keys("service", values, SERVICE_UPDATABLE)
        with self._session(write=True) as s:
            model = s.execute(sa.select(ServiceModel).where(ServiceModel.id == service_id)
                              .with_for_update()).scalar_one_or_none()
            if model is None:
                raise exceptions.NotFound(kind="Service", id=service_id)
            for key, value in values.items():
                if key == "last_heartbeat":
                    value = _utc(value)
                elif key == "disabled":
                    value = bool(value)
                setattr(model, key, value)
            model.updated_at = self._now()
            s.flush()
            return _record(Service, model)
