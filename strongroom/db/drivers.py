"""Metadata store drivers: the ``strongroom.persistence`` plugin family.

A driver is chosen by the URL's scheme (the part before ``+``) and says how to
build the SQLAlchemy engine for it: the final URL, engine keyword arguments and
per-connection set-up.  Shipped: ``sqlite``, ``postgresql``, ``mysql`` (PyMySQL;
``mariadb`` is an alias) and ``memory`` (one in-memory sqlite database shared by
every thread).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from strongroom import exceptions

GROUP = "strongroom.persistence"

#: Execution option that marks a connection used for writing (sqlite: BEGIN IMMEDIATE).
WRITE_OPTION = "strongroom_write"


class PersistenceDriver:
    """How to reach one kind of SQL database.

    Subclasses override :meth:`sqlalchemy_url`, :meth:`engine_kwargs` and
    :meth:`setup_engine`.  ``serialized`` drivers share one DB-API connection
    between threads: :class:`~strongroom.db.api.Database` then runs one
    session at a time.
    """

    scheme: ClassVar[str] = ""

    def __init__(self, url: URL) -> None:
        self.url = url

    @property
    def serialized(self) -> bool:
        """True when every thread shares one DB-API connection (sessions must not overlap)."""
        return False

    def sqlalchemy_url(self) -> URL:
        """The URL given to ``create_engine``."""
        return self.url

    #: A pooled connection unused for this many seconds is pinged before it is handed out (below).
    ping_after_idle: ClassVar[float] = 1.0

    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``create_engine``."""
        return {}

    def prepare(self) -> None:
        """Called once before the engine is created (e.g. create directories)."""

    def setup_engine(self, engine: sa.Engine) -> None:
        """Attach per-connection events to a new engine: a server's connections are pinged when idle."""
        ping_idle_connections(engine, self.ping_after_idle)

    def exists(self) -> bool:
        """False when the database certainly does not exist yet (no need to connect)."""
        return True

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Held around every write transaction (nothing to hold for a server that locks rows itself)."""
        yield


_CHECKED_IN = "strongroom_checked_in"


def ping_idle_connections(engine: sa.Engine, idle: float, clock: Callable[[], float] = time.monotonic) -> None:
    """Before the pool hands out a connection that has been back in it for ``idle`` seconds or more, run
    ``SELECT 1`` on it; one that fails is replaced by a new connection (``DisconnectionError``: the pool
    connects again), so a restarted or failed-over server costs no request an error.

    SQLAlchemy's ``pool_pre_ping`` does this on every checkout: a round trip to the server before each
    session, 13% of a deployed API worker's time for a list or show request.  A connection that went back
    to the pool less than ``idle`` ago was working then; under load every connection is such a one.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_CHECKED_IN] = clock()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN)
        if since is None or clock() - since < idle:  # just connected, or in use a moment ago
            return
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
        except Exception as err:  # noqa: BLE001 - whatever the driver raises: this connection is no good
            record.info.pop(_CHECKED_IN, None)
            raise sa.exc.DisconnectionError(f"pooled connection failed its ping: {type(err).__name__}") from err


class _WriterQueues:
    """One re-entrant lock per sqlite file, shared by every engine of this process that writes to it.

    sqlite lets one writer in at a time; the others wait in its busy handler, which sleeps 1 to 100 ms
    between tries whether or not the lock came free meanwhile.  Writers of the same process queue on a
    lock instead and go in the moment the previous one commits; other processes still meet the busy
    handler (``busy_timeout``).
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}

    def lock_for(self, path: str) -> threading.RLock:
        key = os.path.realpath(path)
        with self._guard:
            return self._locks.setdefault(key, threading.RLock())


_WRITERS = _WriterQueues()


class SQLiteDriver(PersistenceDriver):
    """A sqlite file: WAL, ``busy_timeout``, foreign keys, BEGIN IMMEDIATE for writes."""

    scheme = "sqlite"
    busy_timeout_ms = 30_000

    @property
    def path(self) -> str | None:
        database = self.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return database

    @property
    def in_memory(self) -> bool:
        return self.path is None and not (self.url.database or "").startswith("file:")

    @property
    def serialized(self) -> bool:
        return self.in_memory

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        path = self.path
        if path is None:
            yield
            return
        lock = _WRITERS.lock_for(path)
        if not lock.acquire(timeout=self.busy_timeout_ms / 1000):
            raise exceptions.ServiceUnavailable(
                what=f"metadata store {path}",
                reason=f"another writer of this process held it for over {self.busy_timeout_ms // 1000} s")
        try:
            yield
        finally:
            lock.release()

    def engine_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False,
                                                   "timeout": self.busy_timeout_ms / 1000}}
        if self.in_memory:
            kwargs["poolclass"] = StaticPool
        return kwargs

    def prepare(self) -> None:
        path = self.path
        if path:
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)

    def exists(self) -> bool:
        path = self.path
        return path is None or os.path.exists(path)

    def setup_engine(self, engine: sa.Engine) -> None:
        in_memory = self.in_memory
        busy_timeout = self.busy_timeout_ms

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event issue BEGIN, not pysqlite.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            try:
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute(f"PRAGMA busy_timeout={int(busy_timeout)}")
                if not in_memory:
                    cur.execute("PRAGMA journal_mode=WAL")
                    cur.execute("PRAGMA synchronous=NORMAL")
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            # A deferred transaction that reads then writes fails at once with
            # SQLITE_BUSY when another writer committed in between: writers take
            # the write lock up front and wait for it (busy_timeout).
            if conn.get_execution_options().get(WRITE_OPTION):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("BEGIN")


class MemoryDriver(SQLiteDriver):
    """``memory://``: one in-memory sqlite database that every thread sees."""

    scheme = "memory"

    def sqlalchemy_url(self) -> URL:
        return make_url("sqlite://")

    @property
    def path(self) -> str | None:
        return None

    @property
    def in_memory(self) -> bool:
        return True


class PostgreSQLDriver(PersistenceDriver):
    """PostgreSQL.

    A bare ``postgresql://`` uses psycopg2 when it is installed (SQLAlchemy 2.1
    would pick psycopg 3, which the ``postgresql`` extra does not install).
    """

    scheme = "postgresql"

    def sqlalchemy_url(self) -> URL:
        url = self.url
        if "+" not in url.drivername and importlib.util.find_spec("psycopg2") is not None:
            url = url.set(drivername="postgresql+psycopg2")
        return url

    def engine_kwargs(self) -> dict[str, Any]:
        return {"pool_recycle": 3600}


class MySQLDriver(PersistenceDriver):
    """MariaDB/MySQL through PyMySQL, utf8mb4, strict SQL mode."""

    scheme = "mysql"

    def sqlalchemy_url(self) -> URL:
        url = self.url
        if "+" not in url.drivername:
            url = url.set(drivername=f"{url.get_backend_name()}+pymysql")
        if "charset" not in url.query:
            url = url.update_query_dict({"charset": "utf8mb4"})
        return url

    def engine_kwargs(self) -> dict[str, Any]:
        return {
            "pool_recycle": 3600,
            "connect_args": {"init_command": "SET SESSION sql_mode='TRADITIONAL'"},
        }


BUILTIN_DRIVERS: dict[str, type[PersistenceDriver]] = {
    "sqlite": SQLiteDriver,
    "memory": MemoryDriver,
    "postgresql": PostgreSQLDriver,
    "mysql": MySQLDriver,
    "mariadb": MySQLDriver,
}


def parse_url(url: str | URL) -> URL:
    try:
        return make_url(url)
    except (sa.exc.ArgumentError, ValueError) as err:
        raise exceptions.ConfigError(reason=f"[database] connection is not a database URL ({err})") from err


def driver_class(scheme: str) -> type[PersistenceDriver]:
    """The driver class for a URL scheme: an entry point of ``strongroom.persistence`` or a shipped one."""
    from stevedore import driver as sv_driver
    from stevedore.exception import NoMatches

    try:
        manager: sv_driver.DriverManager[Any] = sv_driver.DriverManager(GROUP, scheme, invoke_on_load=False)
    except NoMatches:
        pass
    except Exception as err:  # noqa: BLE001 - a broken third-party plugin, reported with its name
        raise exceptions.PluginLoadError(name=scheme, group=GROUP, where="", reason=str(err)) from err
    else:
        plugin = manager.driver
        if not (isinstance(plugin, type) and issubclass(plugin, PersistenceDriver)):
            raise exceptions.PluginLoadError(name=scheme, group=GROUP, where="",
                                             reason="not a PersistenceDriver subclass")
        return plugin
    try:
        return BUILTIN_DRIVERS[scheme]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_DRIVERS))
        raise exceptions.PluginLoadError(
            name=scheme, group=GROUP, where="",
            reason=f"no metadata store driver for URL scheme '{scheme}' (shipped: {known})",
        ) from None


def driver_for(url: str | URL) -> PersistenceDriver:
    parsed = parse_url(url)
    return driver_class(parsed.get_backend_name())(parsed)


#: The extra of Strongroom that installs each DB-API module a shipped driver uses.
_EXTRAS = {"psycopg2": "postgresql", "pymysql": "mysql"}


def engine_url(url: str | URL) -> str:
    """The URL as the metadata store connects with it (its driver's choices: ``postgresql://`` is
    psycopg2's, ``mysql://`` PyMySQL's), as text with its password, for other SQLAlchemy users of the same
    database (taskflow's persistence).  Never print it: ``Database.url_for_display`` is for that."""
    return driver_for(url).sqlalchemy_url().render_as_string(hide_password=False)


def check_dbapi(url: str | URL) -> None:
    """``ConfigError`` naming the module and the extra that installs it if the URL's DB-API module does not
    import; called before anything touches the database (a sync that dies half way leaves work behind)."""
    final = driver_for(url).sqlalchemy_url()
    try:
        final.get_dialect().import_dbapi()
    except ImportError as err:
        module = getattr(err, "name", None) or str(err)
        extra = _EXTRAS.get(str(module).split(".")[0])
        how = f"pip install 'strongroom[{extra}]'" if extra else f"install the Python module {module!r}"
        raise exceptions.ConfigError(
            reason=f"[database] connection {final.drivername}://...: the database driver {module!r} is not "
                   f"installed ({how}); nothing was changed") from None
