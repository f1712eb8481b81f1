"""Data migrations, on every reachable server: what a revision moves, it moves for rows written before it."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from alembic import command

from strongroom.db import drivers, migration
from strongroom.db.api import Database

pytestmark = pytest.mark.db

_RESTORES_0002 = sa.table(
    "restores", *(sa.column(n, sa.String()) for n in ("id", "project_id", "provider_id", "checkpoint_id", "kind",
                                                      "status")),
    *(sa.column(n, sa.JSON()) for n in ("parameters", "resources_status", "resources_reason", "extra_info")),
    sa.column("created_at", sa.DateTime()), sa.column("updated_at", sa.DateTime()))


def _old_restore(conn: sa.Connection, extra_info: dict[str, object]) -> str:
    """A restore as Strongroom wrote it at 0002_scheduling (progress and resume state inside extra_info)."""
    restore_id = str(uuid.uuid4())
    conn.execute(sa.insert(_RESTORES_0002).values(
        id=restore_id, project_id="p1", provider_id="prov", checkpoint_id=str(uuid.uuid4()), kind="restore",
        status="in_progress", parameters={}, resources_status={}, resources_reason={}, extra_info=extra_info,
        created_at=sa.func.current_timestamp(), updated_at=sa.func.current_timestamp()))
    return restore_id


def test_0003_moves_progress_and_resume_state_out_of_extra_info_and_back(fresh_url: str) -> None:
    db = Database(fresh_url)
    try:
        write = db.engine.execution_options(**{drivers.WRITE_OPTION: True})
        migration.upgrade(write, "0002_scheduling")
        resume = {"OS::Cinder::Volume#v1": {"volume_id": "partial-1"}}
        progress = {"bytes_total": 1 << 33, "bytes_done": 1 << 30}
        with write.begin() as conn:
            running = _old_restore(conn, {"resume": resume, "progress": progress, "restored_resources": {"a": 1}})
            finished = _old_restore(conn, {"progress": {"bytes_total": 5, "bytes_done": 5}})
            untouched = _old_restore(conn, {"note": "no progress yet"})
            empty = _old_restore(conn, {})

        db.sync()
        assert db.version() == migration.head() == "0005_quotas"
        got = db.get_restore(running)
        assert (got.progress, got.resume_state, got.extra_info) == (progress, resume, {"restored_resources": {"a": 1}})
        got = db.get_restore(finished)
        assert (got.progress, got.resume_state, got.extra_info) == ({"bytes_total": 5, "bytes_done": 5}, {}, {})
        got = db.get_restore(untouched)
        assert (got.progress, got.resume_state, got.extra_info) == ({}, {}, {"note": "no progress yet"})
        got = db.get_restore(empty)
        assert (got.progress, got.resume_state, got.extra_info) == ({}, {}, {})
        with write.begin() as conn:  # the server fills the new columns of rows inserted without them
            late = _old_restore(conn, {})
        assert (db.get_restore(late).progress, db.get_restore(late).resume_state) == ({}, {})

        with write.begin() as conn:
            command.downgrade(migration.alembic_config(conn), "0002_scheduling")
        assert db.version() == "0002_scheduling"
        assert {"progress", "resume_state"}.isdisjoint(c["name"] for c in sa.inspect(db.engine).get_columns("restores"))
        with db.engine.connect() as conn:
            extra = dict(conn.execute(sa.select(_RESTORES_0002.c.id, _RESTORES_0002.c.extra_info)).all())
        assert extra[running] == {"resume": resume, "progress": progress, "restored_resources": {"a": 1}}
        assert extra[finished] == {"progress": {"bytes_total": 5, "bytes_done": 5}}
        assert extra[untouched] == {"note": "no progress yet"} and extra[empty] == {}
    finally:
        db.dispose()
