"""``CheckpointCatalogue.rebuild``: the catalogue made again from a bank's indices, on a memory bank and sqlite.

The bank is filled by a writer's catalogue that has no database (what survives a lost database); the
rebuild runs on a fresh, synced database with an injected clock.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.bank_plugins import Bank
from strongroom.bank_plugins.layout import BankLayout
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.clock import FakeClock
from strongroom.db.api import Database
from strongroom.objects.records import CheckpointRecord, Plan, Resource
from strongroom.protection.catalogue import PROTECTED, CheckpointCatalogue
from strongroom.protection.rebuild import RECOVERED, Skip

PROVIDER = "11111111-2222-3333-4444-555555555555"
OTHER = "99999999-2222-3333-4444-555555555555"
VOLUME = {"id": "disk.img", "type": "OS::Cinder::Volume", "name": "disk.img", "extra_info": {}}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(_dt.datetime(2026, 3, 1, 12, 0, tzinfo=_dt.UTC))


@pytest.fixture
def bank(clock: FakeClock) -> Bank:
    return Bank(MemoryBank(clock=clock), name="memory")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'fresh.sqlite'}")
    database.sync()
    yield database
    database.dispose()


def _record(cid: str, *, plan: str = "plan-1", name: str = "nightly", provider: str = PROVIDER,
            owner: str = "worker-1", created: _dt.datetime, parameters: dict | None = None) -> CheckpointRecord:
    return CheckpointRecord(
        id=cid, provider_id=provider, project_id="proj", status="protecting", plan_id=plan, owner_id=owner,
        protection_plan={"id": plan, "name": name, "provider_id": provider, "resources": [VOLUME],
                         "parameters": parameters or {}},
        resource_graph='[{"0x0": ["OS::Cinder::Volume", "disk.img", "disk.img", {}]}, []]',
        extra_info={"note": cid}, bytes_total=4096, created_at=created)


class Writer:
    """What the service that is gone wrote: indices and markers only (its catalogue had this database)."""

    def __init__(self, bank: Bank, clock: FakeClock, provider: str = PROVIDER) -> None:
        self.catalogue = CheckpointCatalogue(bank, None, clock, provider_id=provider)
        self.clock = clock
        self.provider = provider

    def protect(self, cid: str, **kwargs: object) -> CheckpointRecord:
        self.clock.advance(60)
        record = _record(cid, created=self.clock.now(), provider=self.provider, **kwargs)  # type: ignore[arg-type]
        self.catalogue.begin_protect(record)
        return record

    def available(self, cid: str, **kwargs: object) -> None:
        record = self.protect(cid, **kwargs)
        self.catalogue.publish(cid, owner_id=record.owner_id, bytes_done=4096,
                               protected={"OS::Cinder::Volume#disk.img": {"mode": "full"}})

    def error(self, cid: str) -> None:
        record = self.protect(cid)
        self.catalogue.fail_protect(cid, "the volume vanished", str(record.owner_id), 0)

    def deleted(self, cid: str) -> None:
        self.available(cid)
        record = self.catalogue.read(cid)
        self.catalogue.begin_delete(record, "worker-1")
        self.catalogue.unlist(cid)
        self.catalogue.finish_delete(cid, "worker-1", sweep=lambda: None)

    def error_deleting(self, cid: str) -> None:
        self.available(cid)
        self.catalogue.begin_delete(self.catalogue.read(cid), "worker-1")
        self.catalogue.fail_delete(cid, "worker-1", "bank refused")


def _alive(owner: str) -> bool:
    return owner == "live-worker"


def _skips(report: object) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for s in report.skipped:  # type: ignore[attr-defined]
        out.setdefault(str(s.kind), []).append(s.checkpoint_id)
    return out


def test_rebuild_adds_settled_checkpoints_and_their_plan_and_skips_the_rest(
        bank: Bank, db: Database, clock: FakeClock) -> None:
    writer = Writer(bank, clock)
    writer.error("cp-3")
    writer.error_deleting("cp-4")
    writer.available("cp-1", parameters={"OS::Cinder::Volume": {"old": True}})
    writer.available("cp-2", name="nightly renamed")  # the newest snapshot of plan-1
    writer.deleted("cp-5")
    writer.protect("cp-6", owner="live-worker")
    writer.protect("cp-7", owner="dead-worker")
    Writer(bank, clock, provider=OTHER).available("cp-8")

    catalogue = CheckpointCatalogue(bank, db, clock, provider_id=PROVIDER)
    report = catalogue.rebuild(_alive)

    assert report.indices == 8
    assert report.added == {"available": ["cp-1", "cp-2"], "error": ["cp-3"], "error-deleting": ["cp-4"]}
    assert _skips(report) == {"deleted": ["cp-5"], "in-progress": ["cp-6"], "abandoned": ["cp-7"],
                              "other-provider": ["cp-8"]}
    assert report.unreadable == []

    # Each row is the index's copy, bytes done as the publish left them.
    for cid in ("cp-1", "cp-2", "cp-3", "cp-4"):
        row, index = db.get_checkpoint(cid), catalogue.read(cid)
        assert (row.status, row.status_reason, row.created_at, row.resource_graph, row.extra_info, row.plan_id,
                row.protection_plan, row.project_id, row.owner_id) == (
            index.status, index.status_reason, index.created_at, index.resource_graph, index.extra_info,
            index.plan_id, index.protection_plan, index.project_id, index.owner_id)
    assert db.get_checkpoint("cp-1").bytes_done == 4096
    assert db.get_checkpoint("cp-3").bytes_done == 0
    assert db.get_checkpoint("cp-3").status_reason == "the volume vanished"
    assert db.get_checkpoint("cp-1").extra_info[PROTECTED] == {"OS::Cinder::Volume#disk.img": {"mode": "full"}}

    # The plan, from its newest snapshot, marked recovered and suspended; `checkpoint list` by plan works.
    assert report.plans_added == ["plan-1"]
    plan = db.get_plan("plan-1", "proj")
    assert (plan.name, plan.status, plan.provider_id, plan.parameters) == ("nightly renamed", "suspended",
                                                                           PROVIDER, {})
    assert plan.description.startswith(RECOVERED) and "cp-2" in plan.description
    assert [r.key for r in plan.resources] == ["OS::Cinder::Volume#disk.img"]
    listed = db.list_checkpoints(PROVIDER, "proj", filters={"plan_id": "plan-1"})
    assert sorted(c.id for c in listed) == ["cp-1", "cp-2", "cp-3", "cp-4"]

    lines = report.lines()
    assert lines[1] == "  added 4 checkpoint(s): 2 available, 1 error, 1 error-deleting"
    assert "  added 1 plan(s), suspended, described as recovered" in lines
    assert any(line.startswith("  skipped 1 deleted tombstones") for line in lines)
    assert any(line.startswith("  skipped 1 left unfinished by a dead writer") for line in lines)
    assert any(line.startswith("  skipped 1 being written by a live owner") for line in lines)
    verbose = report.lines(verbose=True)
    assert "    cp-7: protecting, writer dead-worker gone" in verbose
    assert "    plan plan-1" in verbose


def test_a_second_rebuild_adds_nothing_and_says_so(bank: Bank, db: Database, clock: FakeClock) -> None:
    writer = Writer(bank, clock)
    writer.available("cp-1")
    writer.error("cp-2")
    writer.deleted("cp-3")
    catalogue = CheckpointCatalogue(bank, db, clock, provider_id=PROVIDER)
    first = catalogue.rebuild(_alive)
    assert first.added_count == 2 and first.plans_added == ["plan-1"]
    rows = {c.id: c.to_dict() for c in db.list_checkpoints(PROVIDER, None)}

    again = catalogue.rebuild(_alive)
    assert again.added == {} and again.plans_added == []
    assert _skips(again) == {"catalogued": ["cp-1", "cp-2"], "deleted": ["cp-3"]}
    assert "  nothing to add: the catalogue already holds every checkpoint this bank can give" in again.lines()
    assert "  skipped 2 already in the catalogue" in again.lines()
    assert {c.id: c.to_dict() for c in db.list_checkpoints(PROVIDER, None)} == rows
    assert len(db.list_plans(None)) == 1


def test_a_dry_run_writes_nothing(bank: Bank, db: Database, clock: FakeClock) -> None:
    Writer(bank, clock).available("cp-1")
    catalogue = CheckpointCatalogue(bank, db, clock, provider_id=PROVIDER)
    report = catalogue.rebuild(_alive, dry_run=True)
    assert report.added == {"available": ["cp-1"]} and report.plans_added == ["plan-1"]
    assert report.lines()[1] == "  would add 1 checkpoint(s): 1 available"
    assert db.list_checkpoints(PROVIDER, None) == [] and db.list_plans(None) == []
    assert catalogue.rebuild(_alive).added_count == 1


def test_a_plan_the_database_holds_is_kept_and_a_deleted_one_is_not_recreated(
        bank: Bank, db: Database, clock: FakeClock) -> None:
    writer = Writer(bank, clock)
    writer.available("cp-1", plan="kept")
    writer.available("cp-2", plan="gone")
    db.create_plan(Plan(id="kept", name="the operator's", provider_id=PROVIDER, project_id="proj",
                        resources=[Resource(id="disk.img", type="OS::Cinder::Volume")]))
    db.create_plan(Plan(id="gone", name="deleted", provider_id=PROVIDER, project_id="proj"))
    db.delete_plan("gone")

    report = CheckpointCatalogue(bank, db, clock, provider_id=PROVIDER).rebuild(_alive)
    assert report.added == {"available": ["cp-1", "cp-2"]}
    assert report.plans_added == []
    assert report.plans_not_added == {"gone": "the database holds it as deleted"}
    assert db.get_plan("kept").name == "the operator's"
    assert "    plan gone: the database holds it as deleted" in report.lines()


def test_unreadable_and_malformed_indices_are_skipped_with_the_reason(
        bank: Bank, db: Database, clock: FakeClock) -> None:
    writer = Writer(bank, clock)
    writer.available("cp-good")
    writer.available("cp-bad")
    bank.put(BankLayout.index_key("cp-bad"), b"{not json")
    bank.put_json(BankLayout.index_key("cp-odd"), {"id": "cp-odd", "provider_id": PROVIDER, "project_id": "p",
                                                   "status": "sleeping"})

    report = CheckpointCatalogue(bank, db, clock, provider_id=PROVIDER).rebuild(_alive)
    assert report.added == {"available": ["cp-good"]}
    assert sorted(s.checkpoint_id for s in report.unreadable) == ["cp-bad", "cp-odd"]
    assert [s.detail for s in report.unreadable if s.checkpoint_id == "cp-odd"] == ["unknown status 'sleeping'"]
    line = [ln for ln in report.lines() if "unreadable" in ln]
    assert line and line[0].startswith("  skipped 2 unreadable indices (first: cp-bad: ")


def test_a_reclaimed_zombie_is_added_as_error_by_the_next_rebuild(bank: Bank, db: Database,
                                                                   clock: FakeClock) -> None:
    writer = Writer(bank, clock)
    writer.protect("cp-zombie", owner="dead-worker")
    catalogue = CheckpointCatalogue(bank, db, clock, provider_id=PROVIDER)
    assert [s.kind for s in catalogue.rebuild(_alive).skipped] == [Skip.ABANDONED]
    marker = next(m for m in catalogue.store.active_markers() if m.checkpoint_id == "cp-zombie")
    catalogue.reclaim(marker, catalogue.read("cp-zombie"), by="gc", why="its writer dead-worker lost its lease")
    assert catalogue.rebuild(_alive).added == {"error": ["cp-zombie"]}
    assert "reclaimed by garbage collection" in str(db.get_checkpoint("cp-zombie").status_reason)


def test_a_checkpoint_whose_index_names_its_plan_only_in_the_snapshot_lists_under_it(
        bank: Bank, db: Database, clock: FakeClock) -> None:
    writer = Writer(bank, clock)
    writer.available("cp-1", plan="plan-9")
    record = writer.catalogue.read("cp-1")
    data = record.to_dict()
    data["plan_id"] = None
    bank.put_json(BankLayout.index_key("cp-1"), data)
    report = CheckpointCatalogue(bank, db, clock, provider_id=PROVIDER).rebuild(_alive)
    assert report.added == {"available": ["cp-1"]} and report.plans_added == ["plan-9"]
    assert [c.id for c in db.list_checkpoints(PROVIDER, None, filters={"plan_id": "plan-9"})] == ["cp-1"]
