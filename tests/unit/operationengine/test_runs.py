"""What a run logs when things go wrong: the user reads it in the scheduled operation's logs."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strongroom import exceptions
from strongroom.clock import FakeClock
from strongroom.db.api import Database
from strongroom.db.scheduling import SchedulingStore
from strongroom.objects.scheduling import FireState, ScheduledFire
from strongroom.operationengine.engine import EngineSettings, InlineExecutor, OperationEngine
from strongroom.operationengine.identity import NoAuthIdentity
from tests.unit.operationengine.fakes import FakeProtectionForSchedulingTests, add_operation, add_plan, add_trigger


class Setup:
    def __init__(self, tmp: Path, finish: str | None = "available", **definition: Any) -> None:
        self.clock = FakeClock(_dt.datetime(2026, 8, 3, 6, 0, 30, tzinfo=_dt.UTC))
        self.db = Database(f"sqlite:///{tmp / 'runs.sqlite'}", clock=self.clock)
        self.db.sync()
        self.store = SchedulingStore(self.db)
        self.protection = FakeProtectionForSchedulingTests(self.db, self.clock, finish=finish)
        self.plan = add_plan(self.db)
        trigger = add_trigger(self.store, {"pattern": "0 * * * *", "window": 600}, self.clock.now())
        kind = "retention_protect" if definition else "protect"
        self.op = add_operation(self.store, trigger, self.plan, kind=kind, definition=definition)
        self.engine = OperationEngine(self.db, self.protection, NoAuthIdentity(), owner="e", clock=self.clock,
                                      executor=InlineExecutor(),
                                      settings=EngineSettings(plan_ahead=3600, checkpoint_timeout=30))

    def run_hour(self) -> ScheduledFire:
        self.engine.tick()
        self.clock.advance(3600)
        self.engine.tick()
        return self.store.list_fires(self.op.id)[0]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    s = Setup(tmp_path)
    yield s
    s.db.dispose()


def test_a_deleted_plan_fails_the_run(setup: Setup) -> None:
    setup.db.delete_plan(setup.plan.id)
    log = setup.run_hour()
    assert log.state == FireState.FAILED and f"Plan {setup.plan.id} could not be found" in (log.error_info or "")


def test_protection_refusing_fails_the_run_with_its_message(setup: Setup) -> None:
    setup.protection.fail_with = exceptions.InvalidInput(reason="plan has no resources")
    log = setup.run_hour()
    assert (log.state, log.error_info, log.checkpoint_id) == (
        FireState.FAILED, "Invalid input: plan has no resources", None)


def test_an_unanswered_protect_that_was_accepted_is_not_repeated(setup: Setup) -> None:
    real = setup.protection.protect

    def accepted_but_timed_out(*args: Any, **kwargs: Any) -> dict[str, Any]:
        real(*args, **kwargs)
        raise exceptions.ServiceUnavailable(what="protection", reason="no answer in time")

    setup.protection.protect = accepted_but_timed_out  # type: ignore[method-assign]
    log = setup.run_hour()
    assert log.state == FireState.SUCCESS
    assert setup.protection.protects[log.id] == [log.checkpoint_id]


def test_a_checkpoint_ending_in_error_fails_the_run(setup: Setup) -> None:
    setup.protection.finish = "error"
    log = setup.run_hour()
    assert log.state == FireState.FAILED
    assert log.error_info == f"checkpoint {log.checkpoint_id} ended error"


def test_a_checkpoint_that_never_finishes_fails_after_checkpoint_timeout(setup: Setup) -> None:
    setup.protection.finish = None
    log = setup.run_hour()
    assert log.state == FireState.FAILED and "still protecting after 30 seconds" in (log.error_info or "")


def test_retention_logs_what_it_deleted_and_what_it_kept(tmp_path: Path) -> None:
    s = Setup(tmp_path, max_backups=2)
    logs = [s.run_hour() for _ in range(4)]
    assert [log.state for log in logs] == [FireState.SUCCESS] * 4
    assert logs[-1].extra_info["retention"]["deleted"] == [logs[1].checkpoint_id]
    assert sorted(logs[-1].extra_info["retention"]["kept"]) == sorted([logs[2].checkpoint_id,
                                                                      logs[3].checkpoint_id])
    available = s.db.list_checkpoints(None, None, filters={"status": "available"})
    assert {c.id for c in available} == {logs[2].checkpoint_id, logs[3].checkpoint_id}
    s.db.dispose()


def test_retention_marks_locked_checkpoints_due_and_deletes_them_once_unlocked(tmp_path: Path) -> None:
    s = Setup(tmp_path, max_backups=1, retention_lock_days=1)
    logs = [s.run_hour() for _ in range(3)]
    assert [log.state for log in logs] == [FireState.SUCCESS] * 3  # no error for a locked checkpoint
    retained = logs[-1].extra_info["retention"]
    assert retained["deleted"] == [] and "skipped" not in retained
    assert sorted(retained["due_locked"]) == sorted([logs[0].checkpoint_id, logs[1].checkpoint_id])
    assert s.protection.deletes == []  # no delete is even tried before the lock date
    first = s.db.get_checkpoint(logs[0].checkpoint_id)
    assert retained["due_locked"][first.id] == first.extra_info["locked_until"]
    s.clock.advance(24 * 3600)  # the locks lapse (the fires missed meanwhile are dropped)
    for _ in range(2):
        s.run_hour()
    later = [f for f in s.store.list_fires(s.op.id) if f.state == FireState.SUCCESS
             and f.checkpoint_id not in {log.checkpoint_id for log in logs}]
    assert later, s.store.list_fires(s.op.id)
    deleted = {d for log in later for d in (log.extra_info.get("retention") or {}).get("deleted", [])}
    assert {logs[0].checkpoint_id, logs[1].checkpoint_id, logs[2].checkpoint_id} <= deleted
    assert set(s.protection.deletes) == deleted
    s.db.dispose()
