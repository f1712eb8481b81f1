"""The core of the metadata store: the engine, the one session helper, and the helpers every query shares.

Every aggregate (:mod:`~strongroom.db.plans`, :mod:`~strongroom.db.checkpoints`, :mod:`~strongroom.db.runs`,
:mod:`~strongroom.db.services`, :mod:`~strongroom.db.scheduling`) builds on the public names here, never on
a private member of another module:

- :meth:`Core.session`: one session and transaction, with the driver's serialization and error mapping;
- :meth:`Core.write`: a write transaction run again when the server picked it as a deadlock victim or when
  its compare-and-set lost (:class:`TryAgain`);
- :meth:`Core.now`: the injected clock, in UTC;
- :func:`load`: one row by id, project-scoped, optionally ``FOR UPDATE``; :func:`insert`;
  :func:`list_rows` with :func:`filter_conditions` and :func:`project_scope`;
- :func:`to_record`, :func:`columns`: between ORM rows and the typed records callers get.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import enum
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.engine import URL
from sqlalchemy.sql.elements import ColumnElement

from strongroom import exceptions
from strongroom.clock import Clock
from strongroom.db import drivers, migration, pagination
from strongroom.db.models import Base
from strongroom.objects.records import Record, parse_time

R = TypeVar("R", bound=Record)
M = TypeVar("M", bound=Base)
T = TypeVar("T")

DEFAULT_SORT: Sequence[tuple[str, str]] = (("created_at", "desc"),)
#: How many times :meth:`Core.write` runs a transaction before it gives up.
ATTEMPTS = 5


class DBDeadlock(exceptions.ServiceUnavailable):
    """{what} is unavailable: {reason}"""


class TryAgain(Exception):
    """Raised by the function given to :meth:`Core.write`: what it read changed before its write; run it again."""


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


# -- values -------------------------------------------------------------------------------------------


def utc(value: _dt.datetime | str | None) -> _dt.datetime | None:
    """``value`` (a datetime or ISO-8601 text; naive means UTC) as an aware UTC datetime."""
    parsed = parse_time(value)
    return None if parsed is None else parsed.astimezone(_dt.UTC)


def status_value(kind: str, value: Any, enum_type: type[enum.Enum]) -> str:
    """``value`` as a member of ``enum_type``; InvalidInput naming the allowed ones otherwise."""
    try:
        return str(enum_type(value).value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum_type)
        raise exceptions.InvalidInput(
            reason=f"unknown {kind} status '{value}' (allowed: {allowed})") from None


def check_keys(kind: str, values: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """InvalidInput unless every key of ``values`` is an updatable field of a ``kind``."""
    for key in values:
        if key not in allowed:
            raise exceptions.InvalidInput(
                reason=f"field '{key}' of a {kind} cannot be updated (allowed: {', '.join(sorted(allowed))})")


def to_record(cls: type[R], model: Base, **extra: Any) -> R:
    """The typed record ``cls`` of an ORM row; ``extra`` gives fields that are not plain columns, and fields
    the row has no attribute for (the bank's alone, such as a checkpoint's ``encryption``) keep their default."""
    kwargs = {f.name: getattr(model, f.name) for f in dataclasses.fields(cls)
              if f.name not in extra and hasattr(type(model), f.name)}
    kwargs.update(extra)
    return cls(**kwargs)


def row_record(cls: type[R], row: sa.Row[Any], **extra: Any) -> R:
    """The typed record ``cls`` of a plain result row (a ``select`` of a table's columns), as
    :func:`to_record` makes it of an ORM row: the fields the row has a column for, then ``extra``."""
    mapping = row._mapping
    kwargs = {f.name: mapping[f.name] for f in dataclasses.fields(cls) if f.name not in extra and f.name in mapping}
    kwargs.update(extra)
    return cls(**kwargs)


def columns(model_cls: type[Base], record: Record, *, skip: Sequence[str] = ()) -> dict[str, Any]:
    """The fields of ``record`` that are columns of ``model_cls`` (but ``skip``)."""
    names = set(sa.inspect(model_cls).columns.keys())
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)
            if f.name in names and f.name not in skip}


def sortable(model: type[Base], *names: str, nullable: Sequence[str] = ()) -> dict[str, ColumnElement[Any]]:
    """The sort keys of a listing: ``names`` as they are, ``nullable`` text columns with NULL as ''."""
    cols: dict[str, ColumnElement[Any]] = {n: getattr(model, n) for n in names}
    # Nullable text keys sort as '' so that NULLs order the same way on every database.
    cols.update({n: sa.func.coalesce(getattr(model, n), "").label(n) for n in nullable})
    return cols


# -- queries --------------------------------------------------------------------------------------------


def project_scope(model: type[Base], project_id: str | None) -> list[ColumnElement[bool]]:
    """``model.project_id == project_id``, or nothing when ``project_id`` is None (every project)."""
    return [] if project_id is None else [cast(Any, model).project_id == project_id]


def filter_conditions(model: type[Base], filters: Mapping[str, Any] | None,
                      allowed: Sequence[str]) -> list[ColumnElement[bool]]:
    """``filters`` as conditions on ``model``'s columns (see :func:`~strongroom.db.pagination.eq_filter`);
    InvalidInput when one is not ``allowed``."""
    checked = pagination.check_filters(filters, allowed)
    return [pagination.eq_filter(getattr(model, k), v) for k, v in checked.items()]


def load(session: orm.Session, model: type[M], obj_id: Any, *, kind: str, project_id: str | None = None,
         scope: Sequence[ColumnElement[bool]] = (), for_update: bool = False,
         options: Sequence[Any] = ()) -> M:
    """The row of ``model`` with id ``obj_id``, of ``project_id`` (None: any) and matching ``scope``.

    ``for_update``: lock the row until the transaction ends.  NotFound (naming ``kind``) when there is none.
    """
    stmt = sa.select(model).where(cast(Any, model).id == obj_id, *project_scope(model, project_id), *scope)
    if options:
        stmt = stmt.options(*options)
    if for_update:
        stmt = stmt.with_for_update()
    row = session.execute(stmt).unique().scalar_one_or_none()  # unique(): a joined collection repeats the row
    if row is None:
        raise exceptions.NotFound(kind=kind, id=obj_id)
    return row


def insert(session: orm.Session, model: Base, kind: str, obj_id: Any) -> None:
    """Add ``model``; Conflict when a ``kind`` with the same key exists already."""
    session.add(model)
    try:
        session.flush()
    except sa.exc.IntegrityError as err:
        raise exceptions.Conflict(reason=f"{kind} {obj_id} already exists") from err


def list_rows(session: orm.Session, model: type[M], *, scope: Sequence[ColumnElement[bool]],
              conditions: Sequence[ColumnElement[bool]], sort: Sequence[tuple[str, str]],
              allowed_sort: Mapping[str, ColumnElement[Any]], marker: str | None, limit: int | None,
              options: Sequence[Any] = ()) -> list[M]:
    """One page of ``model`` rows in ``scope`` matching ``conditions`` (see :mod:`~strongroom.db.pagination`)."""
    stmt = sa.select(model).where(*scope, *conditions)
    if options:
        stmt = stmt.options(*options)
    stmt = pagination.paginate(session, stmt, id_column=cast(Any, model).id,
                               scope=scope, sort=sort, allowed_sort=allowed_sort, marker=marker, limit=limit)
    return list(session.execute(stmt).scalars().all())


# -- the engine and its sessions --------------------------------------------------------------------------


class Core:
    """The engine behind one SQLAlchemy URL and its sessions.

    No connection is made until the first call.  Thread-safe: every session is a transaction of its own.
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
        return f"{type(self).__name__}({self.url_for_display!r})"

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
        with self._serialized(), self.errors():
            migration.upgrade(self.engine.execution_options(**{drivers.WRITE_OPTION: True}))

    def version(self) -> str | None:
        """The schema revision of the database, or None if it was never synced."""
        if not self._driver.exists():
            return None
        with self._serialized(), self.errors():
            return migration.current(self.engine)

    def dispose(self) -> None:
        """Close every pooled connection (the next call reconnects)."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
            self._engine = None
            self._read_sessions = self._write_sessions = None

    @contextlib.contextmanager
    def _serialized(self) -> Iterator[None]:
        if self._serial is None:
            yield
        else:
            with self._serial:
                yield

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Map a lost or unreachable server to ServiceUnavailable (DBDeadlock for a deadlock victim)."""
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError) as err:
            orig = getattr(err, "orig", None) or err
            reason = f"{type(orig).__name__}: {str(orig).splitlines()[0] if str(orig) else ''}"
            error_class = DBDeadlock if _is_deadlock(err) else exceptions.ServiceUnavailable
            raise error_class(what=f"metadata store {self.url_for_display}", reason=reason) from None

    @contextlib.contextmanager
    def session(self, *, write: bool = False) -> Iterator[orm.Session]:
        """One session in one transaction: committed when the block ends, rolled back if it raises."""
        self.engine  # noqa: B018 - creates the session factories
        factory = self._write_sessions if write else self._read_sessions
        assert factory is not None
        writing = self._driver.writing() if write else contextlib.nullcontext()
        with self._serialized(), writing, self.errors(), factory() as session, session.begin():
            yield session

    def write(self, fn: Callable[[orm.Session], T], *, retry_on: tuple[type[Exception], ...] = (),
              exhausted: Callable[[], Exception] | None = None) -> T:
        """``fn(session)`` in a write transaction, run again (up to :data:`ATTEMPTS` times in all) when the
        server picked it as a deadlock victim, when ``fn`` raises :class:`TryAgain`, or one of ``retry_on``.

        After the last attempt, ``exhausted()`` is raised, or without it the last error.
        """
        retryable: tuple[type[Exception], ...] = (DBDeadlock, TryAgain, *retry_on)
        last: Exception | None = None
        for _attempt in range(ATTEMPTS):
            try:
                with self.session(write=True) as s:
                    return fn(s)
            except retryable as err:
                last = err
        if exhausted is not None:
            raise exhausted()
        assert last is not None
        raise last

    def now(self) -> _dt.datetime:
        """The injected clock's time, in UTC."""
        return self._clock.now().astimezone(_dt.UTC)
