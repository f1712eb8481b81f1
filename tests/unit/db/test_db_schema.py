"""Schema migrations, drivers and URL handling."""

from __future__ import annotations

import os
import sqlite3

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from strongroom import exceptions
from strongroom.db import drivers, migration
from strongroom.db.api import Database, mask_url
from strongroom.db.models import Base

pytestmark = pytest.mark.db


def test_sync_twice_is_idempotent_and_reaches_head(fresh_url: str) -> None:
    db = Database(fresh_url)
    try:
        assert db.version() is None
        db.sync()
        db.sync()
        assert db.version() == migration.head() == "0005_quotas"
        tables = set(sa.inspect(db.engine).get_table_names())
        assert {"plans", "resources", "checkpoints", "restores", "operation_logs", "services", "triggers",
                "scheduled_operations", "scheduled_fires",
                migration.VERSION_TABLE} <= tables
        assert "alembic_version" not in tables  # left for taskflow's own migrations
    finally:
        db.dispose()


def test_migration_matches_the_models(database: Database) -> None:
    """The models used by queries describe exactly what the migrations created."""
    with database.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                     "version_table": migration.VERSION_TABLE})
        diff = compare_metadata(ctx, Base.metadata)
    diff = [d for d in diff if not (isinstance(d, list) and _json_vs_longtext(d))]
    assert diff == []


def _json_vs_longtext(changes: list[object]) -> bool:
    # MariaDB reflects JSON columns as LONGTEXT (JSON is an alias there).
    return all(isinstance(c, tuple) and c[0] == "modify_type" and str(c[5]).upper() == "LONGTEXT"
               and isinstance(c[6], sa.JSON) for c in changes)


def test_sqlite_file_settings(tmp_path: str) -> None:
    path = os.path.join(str(tmp_path), "state", "deep", "strongroom.sqlite")
    db = Database("sqlite:///" + path)
    assert db.version() is None and not os.path.exists(path)  # asking does not create the file
    db.sync()
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    finally:
        db.dispose()
    with sqlite3.connect(path) as raw:
        row = raw.execute("SELECT version_num FROM strongroom_alembic_version").fetchone()
    assert row == ("0005_quotas",)


def test_no_connection_until_first_use() -> None:
    db = Database("postgresql+psycopg2://nobody:pw@127.0.0.1:9/nowhere")
    assert db.url_for_display == "postgresql+psycopg2://nobody:***@127.0.0.1:9/nowhere"
    with pytest.raises(exceptions.ServiceUnavailable) as info:
        db.list_plans(None)
    assert "pw" not in str(info.value).replace("postgresql", "")
    assert "metadata store postgresql+psycopg2://nobody:***@127.0.0.1:9/nowhere" in str(info.value)
    assert isinstance(info.value, exceptions.TransientError)


@pytest.mark.parametrize(("url", "shown"), [
    ("mysql+pymysql://root:s3cr3t@db:3306/strongroom", "mysql+pymysql://root:***@db:3306/strongroom"),
    ("postgresql://u@h/d?password=s3cr3t&sslmode=require", "postgresql://u@h/d?password=***&sslmode=require"),
    ("sqlite:////var/lib/strongroom/strongroom.sqlite", "sqlite:////var/lib/strongroom/strongroom.sqlite"),
])
def test_passwords_are_never_shown(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    db = Database(url)
    assert db.url_for_display == shown
    assert "s3cr3t" not in repr(db)


@pytest.mark.parametrize(("url", "engine_url"), [
    ("postgresql://u@h/d", "postgresql+psycopg2://u@h/d"),
    ("mysql://u@h/d", "mysql+pymysql://u@h/d?charset=utf8mb4"),
    ("mariadb+pymysql://u@h/d?charset=utf8", "mariadb+pymysql://u@h/d?charset=utf8"),
    ("memory://", "sqlite://"),
])
def test_drivers_pick_the_shipped_dbapi(url: str, engine_url: str) -> None:
    assert drivers.driver_for(url).sqlalchemy_url().render_as_string() == engine_url


def test_unknown_scheme_names_the_scheme() -> None:
    with pytest.raises(exceptions.PluginLoadError, match="strongroom.persistence.*'oracle'"):
        Database("oracle://u:p@h/d")
    with pytest.raises(exceptions.ConfigError, match="not a database URL"):
        Database("not a url")
