"""``strongroom-manage db sync`` / ``db version`` as an operator runs them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from strongroom.cmd import manage


def _manage(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STRONGROOM_STATE_DIR"}
    return subprocess.run([sys.executable, "-m", "strongroom.cmd.manage", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def _version_in(path: Path) -> str:
    with sqlite3.connect(path) as raw:
        return raw.execute("SELECT version_num FROM strongroom_alembic_version").fetchone()[0]


def test_db_sync_and_version_with_connection_option(tmp_path: Path) -> None:
    db_file = tmp_path / "meta" / "strongroom.sqlite"
    conf = tmp_path / "strongroom.conf"
    conf.write_text(f"[database]\nconnection = sqlite:///{db_file}\n")

    before = _manage("--config-file", str(conf), "db", "version", cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    assert before.stdout.strip() == "none"
    assert "db sync" in before.stderr

    for _ in range(2):  # idempotent
        sync = _manage("--config-file", str(conf), "db", "sync", cwd=tmp_path)
        assert sync.returncode == 0, sync.stderr
        assert "is at revision 0005_quotas (head)" in sync.stdout
    assert _version_in(db_file) == "0005_quotas"

    after = _manage("--config-file", str(conf), "db", "version", cwd=tmp_path)
    assert (after.returncode, after.stdout.strip()) == (0, "0005_quotas")


def test_db_sync_defaults_to_sqlite_under_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    conf = tmp_path / "strongroom.conf"
    conf.write_text(f"[DEFAULT]\nstate_dir = {state}\n")
    sync = _manage("--config-file", str(conf), "db", "sync", cwd=tmp_path)
    assert sync.returncode == 0, sync.stderr
    assert _version_in(state / "strongroom.sqlite") == "0005_quotas"


def test_errors_are_one_line_without_the_password(tmp_path: Path) -> None:
    conf = tmp_path / "strongroom.conf"
    conf.write_text("[database]\nconnection = postgresql+psycopg2://admin:hunter2@127.0.0.1:9/strongroom\n")
    out = _manage("--config-file", str(conf), "db", "sync", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.startswith("strongroom-manage: error: metadata store "
                                 "postgresql+psycopg2://admin:***@127.0.0.1:9/strongroom is unavailable")
    assert len(out.stderr.strip().splitlines()) == 1
    assert "hunter2" not in out.stderr + out.stdout
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("args", [[], ["db"], ["db", "frobnicate"], ["bank", "frobnicate"]])
def test_usage_errors(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        manage.build_parser().parse_args(args)
    assert info.value.code == 2
    assert "usage: strongroom-manage" in capsys.readouterr().err


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    out = _manage("--config-file", str(tmp_path / "absent.conf"), "db", "version", cwd=tmp_path)
    assert out.returncode == 1
    assert "absent.conf" in out.stderr and "Traceback" not in out.stderr


def test_db_sync_with_the_urls_the_docs_show(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``postgresql://`` and ``mysql://`` as doc/deployment.md writes them (no driver named): the metadata
    schema and taskflow's tables both, with the drivers the Makefile's install brings (psycopg2, PyMySQL)."""
    if server.backend == "sqlite":
        pytest.skip("the bare-URL question is PostgreSQL's and MariaDB's")
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    url = make_url(server.create_database())
    bare = url.set(drivername=url.get_backend_name()).render_as_string(hide_password=False)
    assert "+" not in bare.split("://")[0]
    conf = tmp_path / "strongroom.conf"
    conf.write_text(f"[database]\nconnection = {bare}\ntaskflow_persistence = true\n")
    sync = _manage("--config-file", str(conf), "db", "sync", cwd=tmp_path)
    assert sync.returncode == 0, sync.stderr
    engine = sa.create_engine(url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"checkpoints", "plans", "logbooks", "flowdetails", "atomdetails"} <= tables, tables


def test_a_sync_whose_driver_is_missing_changes_nothing(tmp_path: Path) -> None:
    db_file = tmp_path / "strongroom.sqlite"
    conf = tmp_path / "strongroom.conf"
    conf.write_text("[database]\nconnection = postgresql+psycopg://strongroom:SECRET@127.0.0.1/none\n")
    sync = _manage("--config-file", str(conf), "db", "sync", cwd=tmp_path)
    assert sync.returncode != 0
    assert "the database driver 'psycopg' is not installed" in sync.stderr and "nothing was changed" in sync.stderr
    assert "SECRET" not in sync.stderr + sync.stdout and "Traceback" not in sync.stderr
    assert not db_file.exists()


def test_a_sync_that_stopped_half_way_is_finished_by_the_next(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A sync cut off after its second migration (the database went away) leaves a schema at 0002 and none of
    taskflow's tables; the next ``db sync`` takes it to head and makes them, and the rows written before stay."""
    import sqlalchemy as sa

    from strongroom.db import migration

    url = server.create_database()
    engine = sa.create_engine(url)
    try:
        migration.upgrade(engine, "0002_scheduling")
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO plans (id, name, description, provider_id, project_id, status, parameters, created_at, "
                "updated_at) VALUES ('plan-1', 'kept', '', 'p', 'proj', 'suspended', '{}', CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"))
        assert "logbooks" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    conf = tmp_path / "strongroom.conf"
    conf.write_text(f"[database]\nconnection = {url}\ntaskflow_persistence = true\n")
    sync = _manage("--config-file", str(conf), "db", "sync", cwd=tmp_path)
    assert sync.returncode == 0, sync.stderr
    assert f"is at revision {migration.head()} (head)" in sync.stdout
    engine = sa.create_engine(url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
        with engine.connect() as conn:
            names = conn.execute(sa.text("SELECT name FROM plans")).scalars().all()
    finally:
        engine.dispose()
    assert {"quotas", "logbooks", "flowdetails", "atomdetails"} <= tables, tables
    assert names == ["kept"]
