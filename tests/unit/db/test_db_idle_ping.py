"""Pooled connections of a server's database are pinged before use once they have been idle
(``PersistenceDriver.ping_after_idle``), not before every session: a connection the server closed meanwhile
(a restart, a failover, an idle timeout) is replaced and the caller never sees it, while one used a moment
ago is handed out without a round trip."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from strongroom import exceptions
from strongroom.db import drivers
from strongroom.db.api import Database
from tests.unit.db.conftest import Server


def _close_server_side(server: Server, db: Database) -> int:
    """Make the server end every connection of ``db``'s database; how many it ended."""
    url = db.engine.url
    admin = sa.create_engine(url.set(database="postgres" if server.backend == "postgresql" else ""),
                             isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            if server.backend == "postgresql":
                return len(conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                    {"name": url.database}).all())
            ids = conn.execute(sa.text("SELECT id FROM information_schema.processlist WHERE db = :name"),
                               {"name": url.database}).scalars().all()
            for conn_id in ids:
                conn.execute(sa.text(f"KILL {int(conn_id)}"))
            return len(ids)
    finally:
        admin.dispose()


@pytest.fixture
def fresh(server: Server) -> Database:
    if server.backend == "sqlite":
        pytest.skip("a sqlite file has no server to lose the connection to")
    db = Database(server.create_database())
    db.sync()
    return db


def test_an_idle_connection_the_server_closed_is_replaced(fresh: Database, server: Server,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drivers.PersistenceDriver, "ping_after_idle", 0.0)  # every reused connection is "idle"
    fresh.dispose()  # the engine is made again with the patched threshold
    assert fresh.list_plans("p1") == []
    assert _close_server_side(server, fresh) >= 1
    assert fresh.list_plans("p1") == []  # the dead connection failed its ping and was replaced
    fresh.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(fresh: Database, server: Server,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The other side of the bargain: within the threshold a connection the server has just closed is handed
    out as it is, and that session fails (503 through the API); the next one gets a new connection."""
    monkeypatch.setattr(drivers.PersistenceDriver, "ping_after_idle", 3600.0)
    fresh.dispose()
    assert fresh.list_plans("p1") == []
    assert _close_server_side(server, fresh) >= 1
    with pytest.raises(exceptions.ServiceUnavailable):
        fresh.list_plans("p1")
    assert fresh.list_plans("p1") == []
    fresh.dispose()
