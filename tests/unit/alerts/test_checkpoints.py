"""The checkpoint conditions over the real metadata store (sqlite, ``FakeClock``): a failed verification and a
checkpoint stuck protecting raise their alerts and put the plan at risk; a good verification or the end of the
run clears them."""

from __future__ import annotations

import uuid
from pathlib import Path

from strongroom.alerts.collect import Collector
from strongroom.alerts.engine import AT_RISK
from strongroom.alerts.model import Settings
from strongroom.alerts.service import AlertService
from strongroom.clock import FakeClock
from strongroom.db.api import Database
from strongroom.objects.records import CheckpointRecord
from tests.unit.operationengine.fakes import PROVIDER_ID, add_plan


def checkpoint(db: Database, clock: FakeClock, plan_id: str, status: str, **extra: object) -> CheckpointRecord:
    return db.create_checkpoint(CheckpointRecord(
        id=str(uuid.uuid4()), provider_id=PROVIDER_ID, project_id="proj-sched", status=status, plan_id=plan_id,
        protection_plan={"id": plan_id}, resource_graph="[]", extra_info=dict(extra), created_at=clock.now()))


def test_a_failed_verification_raises_its_alert_and_a_good_one_clears_it(tmp_path: Path) -> None:
    clock = FakeClock()
    db = Database(f"sqlite:///{tmp_path / 'a.sqlite'}", clock=clock)
    db.sync()
    plan = add_plan(db)
    cp = checkpoint(db, clock, plan.id, "available", last_verification={
        "id": "v1", "status": "fail", "at": "2026-05-04T12:00:00+00:00", "reason": "chunk 3 does not match"})
    service = AlertService(Collector(db), clock)
    alerts = {a.condition: a for a in service.evaluate() if a.active}
    assert alerts["verification_failed"].message == (
        f"the last verification of checkpoint {cp.id} (at 2026-05-04T12:00:00+00:00) failed: chunk 3 does not match")
    assert alerts[AT_RISK].resource_id == plan.id and alerts[AT_RISK].project_id == "proj-sched"
    db.update_checkpoint(cp.id, {"extra_info": {"last_verification": {"id": "v2", "status": "success"}}},
                         provider_id=PROVIDER_ID)
    assert [a for a in service.evaluate() if a.active] == []
    db.dispose()


def test_a_checkpoint_left_protecting_is_stuck_after_the_configured_time(tmp_path: Path) -> None:
    clock = FakeClock()
    db = Database(f"sqlite:///{tmp_path / 'a.sqlite'}", clock=clock)
    db.sync()
    plan = add_plan(db)
    cp = checkpoint(db, clock, plan.id, "protecting")
    service = AlertService(Collector(db, settings=Settings(checkpoint_stuck_after=3600)), clock)
    clock.advance(3500)
    assert [a for a in service.evaluate() if a.active] == []
    clock.advance(200)
    [stuck] = [a for a in service.evaluate() if a.condition == "checkpoint_stuck"]
    assert stuck.active and stuck.message.startswith(f"checkpoint {cp.id} has been protecting since ")
    assert stuck.message.endswith("longer than 3600s")
    db.update_checkpoint(cp.id, {"status": "available"}, provider_id=PROVIDER_ID)
    assert [a for a in service.evaluate() if a.active] == []
    db.dispose()
