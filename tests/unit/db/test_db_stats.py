"""The catalogue's figures a scrape shows (strongroom.db.stats read by metrics.CatalogueCollector), on every
reachable SQL server."""

from __future__ import annotations

import datetime as dt
import math
import uuid

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from strongroom import metrics
from strongroom.clock import FakeClock
from strongroom.db.api import Database
from strongroom.objects.records import CheckpointRecord, Plan

PROVIDER = "p-provider"
OTHER = "o-provider"
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _id() -> str:
    return str(uuid.uuid4())


def _plan(db: Database, *, created: dt.datetime, provider: str = PROVIDER, status: str = "started") -> Plan:
    return db.create_plan(Plan(id=_id(), name="p", provider_id=provider, project_id="proj", status=status,
                               created_at=created))


def _checkpoint(db: Database, plan: Plan | None, status: str, created: dt.datetime, *, provider: str = PROVIDER,
                read: int = 0, stored: int = 0, cid: str | None = None) -> CheckpointRecord:
    extra = {"protected": {"OS::Cinder::Volume#v": {"bytes_read": read, "bytes_stored": stored}}} if read else {}
    return db.create_checkpoint(CheckpointRecord(id=cid or _id(), provider_id=provider, project_id="proj",
                                                 status=status, plan_id=plan.id if plan else None,
                                                 created_at=created, extra_info=extra))


def _scrape(db: Database) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(metrics.CatalogueCollector(db))
    out = {}
    for family in registry.collect():
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    generate_latest(registry)  # and it renders
    return out


def test_checkpoints_by_status_match_the_catalogue(db: Database) -> None:
    plan = _plan(db, created=T0)
    for status in ("available", "available", "error", "protecting"):
        _checkpoint(db, plan, status, T0)
    _checkpoint(db, None, "deleted", T0, provider=OTHER)
    counts = db.count_checkpoints()
    assert counts == {(PROVIDER, "available"): 2, (PROVIDER, "error"): 1, (PROVIDER, "protecting"): 1,
                      (OTHER, "deleted"): 1}
    scrape = _scrape(db)
    assert scrape[("strongroom_checkpoints", (("provider", PROVIDER), ("status", "available")))] == 2
    assert scrape[("strongroom_checkpoints", (("provider", PROVIDER), ("status", "deleting")))] == 0
    assert scrape[("strongroom_checkpoints", (("provider", OTHER), ("status", "deleted")))] == 1
    assert scrape[("strongroom_catalogue_up", ())] == 1


def test_each_plan_is_aged_from_its_newest_available_checkpoint_in_its_own_provider(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "_clock", FakeClock(T0 + dt.timedelta(hours=10)))  # the scrape's "now"
    protected = _plan(db, created=T0)
    _checkpoint(db, protected, "available", T0 + dt.timedelta(hours=1), read=100, stored=25)
    newest = _checkpoint(db, protected, "available", T0 + dt.timedelta(hours=4), read=90, stored=30)
    _checkpoint(db, protected, "error", T0 + dt.timedelta(hours=9))  # a failure is no recovery point
    # A copy of the newest in another provider's bank (same id, same created_at) does not count twice.
    _checkpoint(db, protected, "available", T0 + dt.timedelta(hours=8), provider=OTHER, cid=newest.id)
    never = _plan(db, created=T0 + dt.timedelta(hours=7))
    deduped = _plan(db, created=T0)
    _checkpoint(db, deduped, "available", T0 + dt.timedelta(hours=9), read=50, stored=0)
    gone = _plan(db, created=T0)
    db.delete_plan(gone.id, gone.project_id)

    by_plan = {r.plan_id: r for r in db.plan_recoveries()}
    assert set(by_plan) == {protected.id, never.id, deduped.id}
    assert by_plan[protected.id].last_available_at == T0 + dt.timedelta(hours=4)
    assert by_plan[never.id].last_available_at is None

    scrape = _scrape(db)
    age = "strongroom_plan_seconds_since_last_available_checkpoint"
    labels = lambda plan: (("plan", plan.id), ("project", "proj"), ("provider", PROVIDER))  # noqa: E731
    assert scrape[(age, (*labels(protected), ("status", "started")))] == 6 * 3600
    assert scrape[(age, (*labels(never), ("status", "started")))] == 3 * 3600  # since it was created
    ratio = "strongroom_plan_dedup_ratio"
    assert scrape[(ratio, labels(protected))] == 3.0  # 90 read for 30 stored
    assert math.isinf(scrape[(ratio, labels(deduped))])  # everything read was in the bank already
    assert (ratio, labels(never)) not in scrape


def test_a_store_that_cannot_be_read_shows_the_catalogue_down() -> None:
    broken = Database("postgresql+psycopg2://nobody@127.0.0.1:1/none")
    try:
        scrape = _scrape(broken)
    finally:
        broken.dispose()
    assert scrape == {("strongroom_catalogue_up", ()): 0}
