"""Scheduled operations of type ``copy``: the plan's newest available checkpoint the target lacks goes to the
target provider's bank; retention options apply to the copies there, never to the source's checkpoints."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.clock import FakeClock
from strongroom.db.api import Database
from strongroom.db.scheduling import SchedulingStore
from strongroom.objects.records import CheckpointRecord
from strongroom.objects.scheduling import FireState
from strongroom.operationengine.engine import EngineSettings, InlineExecutor, OperationEngine
from strongroom.operationengine.identity import NoAuthIdentity
from tests.unit.operationengine.fakes import (
    PROVIDER_ID,
    FakeProtectionForSchedulingTests,
    add_operation,
    add_plan,
    add_trigger,
)

TARGET = "e4008868-be97-492c-be41-44e50ef2e16f"


class Setup:
    def __init__(self, tmp: Path, **definition: object) -> None:
        self.clock = FakeClock(_dt.datetime(2026, 8, 3, 6, 0, 30, tzinfo=_dt.UTC))
        self.db = Database(f"sqlite:///{tmp / 'copies.sqlite'}", clock=self.clock)
        self.db.sync()
        self.store = SchedulingStore(self.db)
        self.protection = FakeProtectionForSchedulingTests(self.db, self.clock)
        self.plan = add_plan(self.db)
        trigger = add_trigger(self.store, {"pattern": "0 * * * *", "window": 600}, self.clock.now())
        self.op = add_operation(self.store, trigger, self.plan, kind="copy",
                                definition={"target_provider_id": TARGET, "max_backups": 2, **definition})
        self.engine = OperationEngine(self.db, self.protection, NoAuthIdentity(), owner="e", clock=self.clock,
                                      executor=InlineExecutor(),
                                      settings=EngineSettings(plan_ahead=3600, checkpoint_timeout=30))

    def checkpoint(self, status: str = "available") -> str:
        import uuid

        record = CheckpointRecord(id=str(uuid.uuid4()), provider_id=PROVIDER_ID, project_id=self.plan.project_id,
                                  status=status, plan_id=self.plan.id, protection_plan={}, resource_graph="[]",
                                  created_at=self.clock.now())
        self.clock.advance(1)
        return self.db.create_checkpoint(record).id

    def run_hour(self) -> dict[str, object]:
        self.engine.tick()
        self.clock.advance(3600)
        self.engine.tick()
        fire = self.store.list_fires(self.op.id)[0]
        return {"state": fire.state, "checkpoint_id": fire.checkpoint_id, "extra": fire.extra_info,
                "error": fire.error_info}


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    s = Setup(tmp_path)
    yield s
    s.db.dispose()


def test_each_run_copies_the_newest_checkpoint_the_target_lacks_and_retains_copies_there(setup: Setup) -> None:
    first = setup.checkpoint()
    run = setup.run_hour()
    assert (run["state"], run["checkpoint_id"]) == (FireState.SUCCESS, first)
    assert setup.protection.copies == [(first, TARGET)]

    run = setup.run_hour()  # nothing new: a success that says so
    assert run["state"] == FireState.SUCCESS and run["checkpoint_id"] is None
    assert "holds every available checkpoint" in str(run["extra"])

    older, newer = setup.checkpoint(), setup.checkpoint()
    setup.checkpoint(status="protecting")
    assert setup.run_hour()["checkpoint_id"] == newer  # the newest available one, not every one
    run = setup.run_hour()
    assert run["checkpoint_id"] == older
    # max_backups 2, applied in the target: the oldest copy goes there, the source keeps all three.
    assert setup.protection.deletes == [first]
    assert setup.db.get_checkpoint(first, provider_id=TARGET).status == "deleted"
    assert {cp.status for cp in setup.db.list_checkpoints(PROVIDER_ID, None, filters={"status": "available"})} \
        == {"available"}
    assert len(setup.db.list_checkpoints(PROVIDER_ID, None, filters={"status": "available"})) == 3
    assert run["extra"]["retention"]["deleted"] == [first]  # type: ignore[index]


def test_a_copy_ending_in_error_fails_the_run(setup: Setup) -> None:
    setup.checkpoint()
    setup.protection.finish = "error"
    run = setup.run_hour()
    assert run["state"] == FireState.FAILED and "ended error" in str(run["error"])


def test_a_scheduled_copy_asks_for_its_lock_in_the_target(setup: Setup, tmp_path: Path) -> None:
    first = setup.checkpoint()
    setup.run_hour()
    assert setup.protection.copy_locks == [None]  # none asked, none given
    locked = Setup(tmp_path / "locked", retention_lock_days=7)
    try:
        first = locked.checkpoint()
        assert locked.run_hour()["checkpoint_id"] == first
        assert locked.protection.copies == [(first, TARGET)] and locked.protection.copy_locks == [7]
    finally:
        locked.db.dispose()
