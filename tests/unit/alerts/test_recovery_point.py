"""Done-when 3: a plan whose scheduled runs fail raises its recovery-point alert within one interval plus grace
of its last good checkpoint, and clears after the next good one.

The real operation engine runs an hourly scheduled protect on a ``FakeClock``, over the real metadata store
(sqlite); the protection service it calls is ``FakeProtectionForSchedulingTests`` (a FAKE that writes real
catalogue rows), made to refuse protects for a while.  The alerts are evaluated by the real collector and
evaluator over that store, as the protection service evaluates them.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom import exceptions
from strongroom.alerts.collect import Collector
from strongroom.alerts.engine import AT_RISK, visible_to
from strongroom.alerts.model import Alert, Settings
from strongroom.alerts.service import AlertService
from strongroom.clock import FakeClock
from strongroom.db.api import Database
from strongroom.db.scheduling import SchedulingStore
from strongroom.operationengine.engine import EngineSettings, InlineExecutor, OperationEngine
from strongroom.operationengine.identity import NoAuthIdentity
from tests.unit.operationengine.fakes import FakeProtectionForSchedulingTests, add_operation, add_plan, add_trigger

START = _dt.datetime(2026, 3, 2, 9, 30, tzinfo=_dt.UTC)
STEP = 300
GRACE = 600


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[FakeClock, Database, FakeProtectionForSchedulingTests,
                                             OperationEngine, AlertService]]:
    clock = FakeClock(START)
    db = Database(f"sqlite:///{tmp_path / 'alerts.sqlite'}", clock=clock)
    db.sync()
    protection = FakeProtectionForSchedulingTests(db, clock)
    engine = OperationEngine(db, protection, NoAuthIdentity(), owner="engine-0", clock=clock,
                             settings=EngineSettings(poll_interval=STEP, plan_ahead=900, claim_timeout=300),
                             executor=InlineExecutor())
    alerts = AlertService(Collector(db, settings=Settings(recovery_point_grace=GRACE)), clock)
    yield clock, db, protection, engine, alerts
    db.dispose()


def _active(alerts: list[Alert], condition: str) -> list[Alert]:
    return [a for a in alerts if a.condition == condition and a.active]


def test_failing_scheduled_runs_raise_the_recovery_point_alert_in_time_and_a_good_checkpoint_clears_it(
        world: tuple[FakeClock, Database, FakeProtectionForSchedulingTests, OperationEngine, AlertService]) -> None:
    clock, db, protection, engine, service = world
    plan = add_plan(db)
    trigger = add_trigger(SchedulingStore(db), {"format": "crontab", "pattern": "0 * * * *", "window": 900},
                          clock.now())
    add_operation(SchedulingStore(db), trigger, plan)
    raised: dict[str, _dt.datetime] = {}
    cleared: dict[str, _dt.datetime] = {}
    good: list[_dt.datetime] = []
    while clock.now() < START + _dt.timedelta(hours=3, minutes=5):
        now = clock.now()
        protection.fail_with = exceptions.ServiceUnavailable(what="bank 'swift' of provider 'Cloud'",
                                                             reason="connection refused") \
            if _dt.time(10, 30) <= now.time() < _dt.time(11, 30) else None
        before = len(db.list_checkpoints(None, None, filters={"status": "available"}))
        engine.tick()
        if len(db.list_checkpoints(None, None, filters={"status": "available"})) > before:
            good.append(now)
        for alert in service.evaluate():
            if alert.active:
                raised.setdefault(alert.condition, alert.raised_at)
            elif alert.condition in raised:
                cleared.setdefault(alert.condition, alert.cleared_at or now)
        clock.advance(STEP)

    assert good[:2] == [START.replace(hour=10, minute=0), START.replace(hour=12, minute=0)]
    last_good = good[0]
    # The 11:00 run failed: its alert is up at once; the plan is past its recovery point once 11:00 + grace
    # has passed (one interval plus grace after the last good checkpoint), not before.
    assert raised["last_run_failed"] == START.replace(hour=11, minute=0)
    assert last_good + _dt.timedelta(seconds=3600 + GRACE) < raised["recovery_point_missed"] \
        <= last_good + _dt.timedelta(seconds=3600 + GRACE + STEP)
    # The 12:00 run made a good checkpoint: both clear at that evaluation.
    assert cleared["recovery_point_missed"] == cleared["last_run_failed"] == good[1]
    assert not [a for a in service.evaluate() if a.active]


def test_the_recovery_point_alert_names_the_plan_and_what_was_due_and_only_its_project_sees_it(
        world: tuple[FakeClock, Database, FakeProtectionForSchedulingTests, OperationEngine, AlertService]) -> None:
    clock, db, protection, engine, service = world
    plan = add_plan(db)
    store = SchedulingStore(db)
    add_operation(store, add_trigger(store, {"format": "crontab", "pattern": "0 * * * *", "window": 900},
                                     clock.now()), plan)
    protection.fail_with = exceptions.ServiceUnavailable(what="bank", reason="down")
    for _ in range(int((3600 + GRACE) / STEP) + 2):
        engine.tick()
        clock.advance(STEP)
    alerts = service.evaluate()
    [missed] = _active(alerts, "recovery_point_missed")
    assert missed.message == (
        "plan 'nightly' has no available checkpoint since never: a scheduled run was due at "
        "2026-03-02T10:00:00+00:00 (every 3600s), and the 600s grace is over")
    [failed] = _active(alerts, "last_run_failed")
    assert "ended failed" in failed.message and "bank is unavailable: down" in failed.message
    assert {a.resource_id for a in _active(alerts, AT_RISK)} == {plan.id}
    assert visible_to(alerts, "someone-else") == []
    assert {a.condition for a in visible_to(alerts, plan.project_id)} == {
        "recovery_point_missed", "last_run_failed", AT_RISK}
