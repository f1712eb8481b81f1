"""One Database shared by many threads, on every reachable SQL server."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from strongroom import exceptions
from strongroom.db.api import Database
from strongroom.objects.records import CheckpointRecord
from tests.race import race

pytestmark = pytest.mark.db

PROVIDER = "cf56bd3e-97a7-4078-b6d5-f36246333fd9"


def test_compare_and_set_has_exactly_one_winner(db: Database) -> None:
    for _round in range(5):
        cp = db.create_checkpoint(CheckpointRecord(id=str(uuid.uuid4()), provider_id=PROVIDER,
                                                   project_id="p1", status="available"))
        results, errors = race(2, lambda i, cp_id=cp.id: db.update_checkpoint(
            cp_id, {"status": "deleting", "status_reason": f"thread {i}"}, expected_status="available"))
        assert len(results) == 1, errors
        assert len(errors) == 1 and isinstance(errors[0], exceptions.Conflict), errors
        assert "is 'deleting', expected 'available'" in str(errors[0])
        assert db.get_checkpoint(cp.id).status_reason == results[0].status_reason


def test_racing_transitions_never_break_the_table(db: Database) -> None:
    """Without expected_status, racing writers are still judged on the status they overwrite."""
    cp = db.create_checkpoint(CheckpointRecord(id=str(uuid.uuid4()), provider_id=PROVIDER, project_id="p1",
                                               status="protecting"))
    targets = ["available", "error"]
    results, errors = race(2, lambda i: db.update_checkpoint(cp.id, {"status": targets[i]}))
    assert len(results) == 1, errors
    assert len(errors) == 1 and isinstance(errors[0], exceptions.InvalidStatusTransition), errors


def test_heartbeats_from_many_threads_make_one_row(db: Database) -> None:
    results, errors = race(6, lambda i: db.service_heartbeat("node-1", "strongroom-protection"))
    assert errors == []
    assert len({s.id for s in results}) == 1
    assert len(db.list_services()) == 1


def test_memory_database_is_shared_by_threads() -> None:
    database = Database("memory://")
    database.sync()
    try:
        results, errors = race(4, lambda i: database.create_checkpoint(CheckpointRecord(
            id=str(uuid.uuid4()), provider_id=PROVIDER, project_id=f"p{i}", status="protecting")))
        assert errors == []
        seen: list[int] = []

        def count() -> None:
            seen.append(len(database.list_checkpoints(None, None)))

        t = threading.Thread(target=count)
        t.start()
        t.join()
        assert seen == [4]
    finally:
        database.dispose()


def test_sqlite_writers_of_one_process_queue_for_the_file(tmp_path: Path) -> None:
    """Two stores on one sqlite file, eight writers each: every write lands, none meets SQLITE_BUSY; a writer
    stuck past the busy timeout makes the next one a 503-class error naming the file, not a hang."""
    from strongroom.db import drivers

    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    stores = [Database(url), Database(url)]
    stores[0].sync()
    try:
        results, errors = race(16, lambda i: stores[i % 2].create_checkpoint(CheckpointRecord(
            id=str(uuid.uuid4()), provider_id=PROVIDER, project_id=f"p{i}", status="protecting")))
        assert errors == [] and len(results) == 16
        assert len(stores[1].list_checkpoints(None, None)) == 16

        holder = drivers.driver_for(url)
        waiter = drivers.driver_for(url)
        waiter.busy_timeout_ms = 200
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with holder.writing():
                held.set()
                release.wait(10)

        thread = threading.Thread(target=hold)
        thread.start()
        assert held.wait(10)
        try:
            with pytest.raises(exceptions.ServiceUnavailable, match="shared.sqlite"), waiter.writing():
                pass
        finally:
            release.set()
            thread.join(10)
        with waiter.writing():  # free again
            pass
    finally:
        for store in stores:
            store.dispose()
