"""What a scheduled fire tells billing and monitoring: scheduled_operation.run.* notifications and the
fires-by-outcome counter."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strongroom import metrics
from strongroom.clock import FakeClock
from strongroom.db.api import Database
from strongroom.db.scheduling import SchedulingStore
from strongroom.notifications import Notifications
from strongroom.objects.scheduling import FireState
from strongroom.operationengine.engine import EngineSettings, InlineExecutor, OperationEngine
from strongroom.operationengine.identity import NoAuthIdentity
from tests.unit.operationengine.fakes import FakeProtectionForSchedulingTests, add_operation, add_plan, add_trigger


class Recorder:
    """Stands for oslo.messaging's Notifier: keeps what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, ctxt: Any, event_type: str, payload: dict[str, Any]) -> None:
        self.sent.append(("info", event_type, payload))

    def error(self, ctxt: Any, event_type: str, payload: dict[str, Any]) -> None:
        self.sent.append(("error", event_type, payload))


class Setup:
    def __init__(self, tmp: Path) -> None:
        self.clock = FakeClock(_dt.datetime(2026, 8, 3, 6, 0, 30, tzinfo=_dt.UTC))
        self.db = Database(f"sqlite:///{tmp / 'runs.sqlite'}", clock=self.clock)
        self.db.sync()
        self.store = SchedulingStore(self.db)
        self.protection = FakeProtectionForSchedulingTests(self.db, self.clock)
        self.plan = add_plan(self.db)
        trigger = add_trigger(self.store, {"pattern": "0 * * * *", "window": 600}, self.clock.now())
        self.op = add_operation(self.store, trigger, self.plan)
        self.recorder = Recorder()
        self.engine = OperationEngine(self.db, self.protection, NoAuthIdentity(), owner="e", clock=self.clock,
                                      executor=InlineExecutor(), notifications=Notifications(self.recorder),
                                      settings=EngineSettings(plan_ahead=3600, checkpoint_timeout=30))


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    s = Setup(tmp_path)
    yield s
    s.db.dispose()


def fires(outcome: str) -> float:
    return metrics.get().registry.get_sample_value("strongroom_scheduled_fires_total", {"outcome": outcome}) or 0.0


def test_a_good_fire_notifies_its_start_and_end_with_its_checkpoint(setup: Setup) -> None:
    before = fires("success")
    setup.engine.tick()
    setup.clock.advance(3600)
    setup.engine.tick()
    fire = setup.store.list_fires(setup.op.id)[0]
    assert fire.state == FireState.SUCCESS
    assert [(p, e) for p, e, _ in setup.recorder.sent] == [("info", "scheduled_operation.run.start"),
                                                           ("info", "scheduled_operation.run.end")]
    start, end = (payload for _, _, payload in setup.recorder.sent)
    assert start["scheduled_operation_id"] == end["scheduled_operation_id"] == setup.op.id
    assert start["fire_id"] == end["fire_id"] == fire.id and start["plan_id"] == setup.plan.id
    assert start["checkpoint_id"] is None and end["checkpoint_id"] == fire.checkpoint_id
    assert end["state"] == "success" and end["reason"] is None and end["checkpoint_status"] == "available"
    assert {"logical_size", "bytes_read", "bytes_stored", "duration_seconds"} <= set(end)
    assert "trust_id" not in end and "operation_definition" not in end
    assert fires("success") == before + 1


def test_a_failed_fire_notifies_an_error_with_its_reason(setup: Setup) -> None:
    setup.protection.finish = "error"
    before = fires("failed")
    setup.engine.tick()
    setup.clock.advance(3600)
    setup.engine.tick()
    priority, event, payload = setup.recorder.sent[-1]
    assert (priority, event) == ("error", "scheduled_operation.run.error")
    assert payload["state"] == "failed" and "ended error" in payload["reason"]
    assert fires("failed") == before + 1


def test_a_fire_nobody_claimed_in_its_window_is_counted_dropped(setup: Setup) -> None:
    before = fires("dropped_out_of_window")
    setup.engine.plan()
    setup.clock.advance(2 * 3600)  # the 07:00 fire's window (10 minutes) closed unclaimed
    setup.engine.dispatch()
    assert [f.state for f in setup.store.list_fires(setup.op.id)] == [FireState.DROPPED_OUT_OF_WINDOW]
    assert fires("dropped_out_of_window") == before + 1
