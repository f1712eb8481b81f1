"""Fixtures of the metadata store suite: every test runs on sqlite, PostgreSQL and MariaDB.

Each reachable server gets a freshly named database for this test session, dropped
at the end.  An unreachable server SKIPs its tests, except with ``CI=true`` where
it FAILs them.  Override the admin URLs with ``STRONGROOM_TEST_POSTGRESQL_URL`` /
``STRONGROOM_TEST_MYSQL_URL`` (a URL whose database is the admin database).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from strongroom.db.api import Database
from strongroom.db.models import ALL_MODELS

BACKENDS = ("sqlite", "postgresql", "mysql")

_ADMIN_URLS = {
    "postgresql": [
        "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
        "postgresql+psycopg2://root@127.0.0.1:5432/postgres",
    ],
    "mysql": ["mysql+pymysql://root@127.0.0.1:3306/"],
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


class Server:
    """One SQL server: makes uniquely named databases and drops them at the end."""

    def __init__(self, backend: str, tmp_dir: str) -> None:
        self.backend = backend
        self._tmp_dir = tmp_dir
        self._admin: sa.Engine | None = None
        self._admin_url: URL | None = None
        self._created: list[str] = []

    def connect(self) -> None:
        """Raise a reason (str) if the server cannot be reached."""
        if self.backend == "sqlite":
            return
        env = os.environ.get(f"STRONGROOM_TEST_{self.backend.upper()}_URL")
        candidates = [env] if env else _ADMIN_URLS[self.backend]
        errors = []
        for candidate in candidates:
            url = make_url(candidate)
            engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool,
                                      connect_args={"connect_timeout": 3})
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
            except sa.exc.DBAPIError as err:
                errors.append(f"{url.render_as_string(hide_password=True)}: {str(err.orig).strip()}")
                engine.dispose()
                continue
            self._admin, self._admin_url = engine, url
            return
        raise ConnectionError("; ".join(errors))

    def create_database(self) -> str:
        name = f"strongroom_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        if self.backend == "sqlite":
            return "sqlite:///" + os.path.join(self._tmp_dir, f"{name}.sqlite")
        assert self._admin is not None and self._admin_url is not None
        with self._admin.connect() as conn:
            if self.backend == "mysql":
                conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            else:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        self._created.append(name)
        return self._admin_url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if self._admin is None:
            return
        with self._admin.connect() as conn:
            for name in self._created:
                if self.backend == "mysql":
                    conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
                else:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(request.param, str(tmp_path_factory.mktemp("sqlite")))
    try:
        srv.connect()
    except ConnectionError as err:
        message = f"{request.param} server unreachable: {err}"
        if _in_ci():
            pytest.fail(f"{message} (CI=true: every server must be reachable)")
        pytest.skip(message)
    yield srv
    srv.drop_all()


@pytest.fixture(scope="session")
def database(server: Server) -> Iterator[Database]:
    """One synced database per server, shared by the session (rows are wiped per test)."""
    db = Database(server.create_database())
    db.sync()
    yield db
    db.dispose()


@pytest.fixture
def db(database: Database) -> Database:
    """The server's database, empty."""
    with database.engine.begin() as conn:
        for model in ALL_MODELS:
            conn.execute(sa.delete(model.__table__))
    return database


@pytest.fixture
def fresh_url(server: Server) -> str:
    """The URL of a new, empty database on the server."""
    return server.create_database()
