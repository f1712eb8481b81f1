"""CRUD of every record and the status rules, on every reachable SQL server."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from strongroom import exceptions
from strongroom.db.api import Database
from strongroom.objects.records import CheckpointRecord, OperationLog, Plan, Resource, Restore

pytestmark = pytest.mark.db

PROVIDER = "cf56bd3e-97a7-4078-b6d5-f36246333fd9"


def _id() -> str:
    return str(uuid.uuid4())


def _plan(project: str = "p1", **kw: object) -> Plan:
    values: dict = {"id": _id(), "name": "nightly", "provider_id": PROVIDER, "project_id": project}
    values.update(kw)
    return Plan(**values)


def _checkpoint(project: str = "p1", status: str = "protecting", **kw: object) -> CheckpointRecord:
    values: dict = {"id": _id(), "provider_id": PROVIDER, "project_id": project, "status": status}
    values.update(kw)
    return CheckpointRecord(**values)


# -- plans -------------------------------------------------------------------------


def test_plan_roundtrip_with_resources_and_json(db: Database) -> None:
    plan = _plan(description="all volumes", parameters={"OS::Cinder::Volume": {"backup_mode": "full",
                                                                               "n": [1, 2]}},
                 resources=[Resource(id="vol-1", type="OS::Cinder::Volume", name="data",
                                     extra_info={"az": "nova"}),
                            Resource(id="vol-2", type="OS::Cinder::Volume")])
    created = db.create_plan(plan)
    assert created.created_at is not None and created.created_at.tzinfo is not None

    got = db.get_plan(plan.id)
    assert got.name == "nightly" and got.description == "all volumes"
    assert got.status == "suspended"
    assert got.parameters == {"OS::Cinder::Volume": {"backup_mode": "full", "n": [1, 2]}}
    assert [r.key for r in got.resources] == ["OS::Cinder::Volume#vol-1", "OS::Cinder::Volume#vol-2"]
    assert got.resources[0].name == "data" and got.resources[0].extra_info == {"az": "nova"}
    assert got.created_at == created.created_at


def test_plan_is_scoped_to_its_project(db: Database) -> None:
    plan = db.create_plan(_plan(project="p1"))
    assert db.get_plan(plan.id, "p1").id == plan.id
    with pytest.raises(exceptions.NotFound, match=f"Plan {plan.id} could not be found"):
        db.get_plan(plan.id, "p2")
    with pytest.raises(exceptions.NotFound):
        db.update_plan(plan.id, {"name": "x"}, project_id="p2")
    assert db.list_plans("p2") == []
    assert [p.id for p in db.list_plans(None)] == [plan.id]


def test_plan_duplicate_id_is_a_conflict(db: Database) -> None:
    plan = db.create_plan(_plan())
    with pytest.raises(exceptions.Conflict, match=plan.id):
        db.create_plan(_plan(id=plan.id))


def test_plan_update_replaces_resources_and_checks_status(db: Database) -> None:
    plan = db.create_plan(_plan(resources=[Resource(id="a", type="t"), Resource(id="b", type="t")]))
    updated = db.update_plan(plan.id, {"name": "weekly", "status": "started",
                                       "resources": [Resource(id="b", type="t"), {"id": "c", "type": "t"}]})
    assert updated.name == "weekly" and updated.status == "started"
    assert [r.key for r in db.get_plan(plan.id).resources] == ["t#b", "t#c"]
    assert updated.updated_at is not None and plan.created_at is not None
    assert updated.updated_at > plan.created_at

    assert db.update_plan(plan.id, {"status": "suspended"}).status == "suspended"
    assert db.update_plan(plan.id, {"status": "started"}).status == "started"
    with pytest.raises(exceptions.InvalidInput, match="unknown plan status 'running'"):
        db.update_plan(plan.id, {"status": "running"})
    with pytest.raises(exceptions.InvalidInput, match="field 'provider_id'"):
        db.update_plan(plan.id, {"provider_id": _id()})
    with pytest.raises(exceptions.InvalidInput, match="t#x is listed twice"):
        db.update_plan(plan.id, {"resources": [Resource(id="x", type="t"), Resource(id="x", type="t")]})
    assert [r.key for r in db.get_plan(plan.id).resources] == ["t#b", "t#c"]


def test_plan_soft_delete(db: Database) -> None:
    plan = db.create_plan(_plan())
    db.delete_plan(plan.id)
    with pytest.raises(exceptions.NotFound):
        db.get_plan(plan.id)
    assert db.list_plans(None) == []
    with pytest.raises(exceptions.NotFound, match=plan.id):
        db.delete_plan(plan.id)
    with pytest.raises(exceptions.Conflict):  # the id stays taken
        db.create_plan(_plan(id=plan.id))


# -- checkpoints -------------------------------------------------------------------------


def test_checkpoint_roundtrip(db: Database) -> None:
    graph = '[{"type": "OS::Cinder::Volume", "id": "v1"}]' + " " * 70_000  # past MariaDB's TEXT limit
    cp = db.create_checkpoint(_checkpoint(plan_id=_id(), owner_id="host-1:42", protection_plan={"id": "x"},
                                          resource_graph=graph, extra_info={"k": "v"}, bytes_total=2**40))
    got = db.get_checkpoint(cp.id, project_id="p1", provider_id=PROVIDER)
    assert got == cp
    assert got.resource_graph == graph and got.bytes_total == 2**40
    with pytest.raises(exceptions.NotFound, match=f"Checkpoint {cp.id}"):
        db.get_checkpoint(cp.id, provider_id=_id())
    with pytest.raises(exceptions.NotFound):
        db.get_checkpoint(cp.id, project_id="p2")


def test_checkpoint_with_copies_answers_as_get_and_list_copies(db: Database) -> None:
    """A checkpoint's show reads its row and its copies in one query: the same answers as the two calls."""
    made = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    original = db.create_checkpoint(_checkpoint(status="available", created_at=made, updated_at=made))
    other = _id()
    copy = db.create_checkpoint(_checkpoint(id=original.id, provider_id=other, status="copying",
                                            created_at=made, updated_at=made + dt.timedelta(seconds=5)))
    db.create_checkpoint(_checkpoint())  # another checkpoint: not among the copies
    for provider in (PROVIDER, other, None):
        got, copies = db.get_checkpoint_with_copies(original.id, "p1", provider)
        assert got == db.get_checkpoint(original.id, "p1", provider)
        assert copies == db.list_checkpoint_copies(original.id) == [original, copy]
    assert db.get_checkpoint_with_copies(original.id, None, other)[0] == copy
    for project, provider in (("p2", None), ("p1", _id())):
        with pytest.raises(exceptions.NotFound, match=f"Checkpoint {original.id}"):
            db.get_checkpoint_with_copies(original.id, project, provider)
    with pytest.raises(exceptions.NotFound):
        db.get_checkpoint_with_copies(_id())


def test_checkpoint_transitions(db: Database) -> None:
    cp = db.create_checkpoint(_checkpoint())
    got = db.update_checkpoint(cp.id, {"status": "available", "bytes_done": 10}, expected_status="protecting")
    assert (got.status, got.bytes_done) == ("available", 10)
    with pytest.raises(exceptions.InvalidStatusTransition, match="from status 'available' to 'protecting'"):
        db.update_checkpoint(cp.id, {"status": "protecting"})
    with pytest.raises(exceptions.Conflict, match="is 'available', expected 'deleting'"):
        db.update_checkpoint(cp.id, {"status": "deleted"}, expected_status="deleting")
    # an administrator's reset-state skips the table
    assert db.update_checkpoint(cp.id, {"status": "error"}, check=False).status == "error"
    deleting = db.update_checkpoint(cp.id, {"status": "deleting"}, expected_status=["available", "error"])
    assert deleting.status == "deleting"
    with pytest.raises(exceptions.NotFound):
        db.update_checkpoint(_id(), {"status": "error"})
    with pytest.raises(exceptions.InvalidInput, match="unknown checkpoint status 'gone'"):
        db.update_checkpoint(cp.id, {"status": "gone"})
    progress = db.update_checkpoint(cp.id, {"extra_info": {"copy_of": "x", "n": [1]}, "bytes_total": 7})
    assert progress.extra_info == {"copy_of": "x", "n": [1]} and progress.bytes_total == 7
    assert db.get_checkpoint(cp.id).status == "deleting"


# -- restores and verifications -----------------------------------------------------


def test_restore_crud_and_transitions(db: Database) -> None:
    r = db.create_restore(Restore(id=_id(), project_id="p1", provider_id=PROVIDER, checkpoint_id=_id(),
                                  restore_target="http://keystone", parameters={"a": {"b": 1}}))
    assert db.get_restore(r.id, "p1", kind="restore") == r
    with pytest.raises(exceptions.NotFound, match=f"Verification {r.id}"):
        db.get_restore(r.id, kind="verification")

    done = db.update_restore(r.id, {"status": "success", "resources_status": {"t#v1": "success"},
                                    "resources_reason": {}})
    assert done.status == "success" and done.resources_status == {"t#v1": "success"}
    with pytest.raises(exceptions.InvalidStatusTransition) as info:
        db.update_restore(r.id, {"status": "in_progress"})
    assert "from status 'success' to 'in_progress'" in str(info.value)
    assert isinstance(info.value, exceptions.Conflict)  # the API answers 409

    db.delete_restore(r.id)
    with pytest.raises(exceptions.NotFound, match=f"Restore {r.id}"):
        db.get_restore(r.id)
    with pytest.raises(exceptions.NotFound):
        db.delete_restore(r.id)


def test_restore_progress_and_resume_state_round_trip(db: Database) -> None:
    resume = {"OS::Cinder::Volume#v1": {"volume_id": "new-1", "blocks": [1, 2]}, "OS::Nova::Server#s1": {}}
    r = db.create_restore(Restore(id=_id(), project_id="p1", provider_id=PROVIDER, checkpoint_id=_id(),
                                  progress={"bytes_total": 1 << 40, "bytes_done": 0}, resume_state=resume,
                                  extra_info={"note": "kept apart"}))
    got = db.get_restore(r.id)
    assert got == r
    assert got.progress == {"bytes_total": 1 << 40, "bytes_done": 0} and got.resume_state == resume
    assert got.extra_info == {"note": "kept apart"}

    updated = db.update_restore(r.id, {"progress": {"bytes_total": 1 << 40, "bytes_done": 1 << 39},
                                       "resume_state": {"OS::Cinder::Volume#v1": {"volume_id": "new-1"}}})
    assert updated.progress["bytes_done"] == 1 << 39
    again = db.list_restores("p1")[0]
    assert again.resume_state == {"OS::Cinder::Volume#v1": {"volume_id": "new-1"}}
    assert again.progress == updated.progress and again.extra_info == {"note": "kept apart"}
    assert db.update_restore(r.id, {"resume_state": None}).resume_state == {}

    plain = db.create_restore(Restore(id=_id(), project_id="p1", provider_id=PROVIDER, checkpoint_id=_id()))
    assert (db.get_restore(plain.id).progress, db.get_restore(plain.id).resume_state) == ({}, {})


def test_verifications_are_listed_apart_from_restores(db: Database) -> None:
    cp = _id()
    restore = db.create_restore(Restore(id=_id(), project_id="p1", provider_id=PROVIDER, checkpoint_id=cp))
    verify = db.create_restore(Restore(id=_id(), project_id="p1", provider_id=PROVIDER, checkpoint_id=cp,
                                       kind="verification"))
    assert [r.id for r in db.list_restores("p1")] == [restore.id]
    assert [r.id for r in db.list_restores("p1", kind="verification")] == [verify.id]
    assert db.update_restore(verify.id, {"status": "fail"}).status == "fail"
    with pytest.raises(exceptions.InvalidInput, match="unknown restore kind 'backup'"):
        db.list_restores("p1", kind="backup")


# -- operation logs -----------------------------------------------------------------


def test_operation_log_crud(db: Database) -> None:
    started = dt.datetime(2026, 3, 1, 12, 0, 0, 1, tzinfo=dt.UTC)
    log = db.create_operation_log(OperationLog(id=_id(), project_id="p1", operation_type="protect",
                                               status="running", provider_id=PROVIDER, checkpoint_id=_id(),
                                               plan_id=_id(), host="node-1", started_at=started))
    assert db.get_operation_log(log.id, "p1") == log
    with pytest.raises(exceptions.NotFound, match=f"OperationLog {log.id}"):
        db.get_operation_log(log.id, "p2")
    ended = started + dt.timedelta(minutes=5)
    done = db.update_operation_log(log.id, {"status": "failed", "error_info": "volume vanished",
                                            "ended_at": ended.isoformat()})
    assert (done.status, done.error_info, done.ended_at, done.started_at) == ("failed", "volume vanished",
                                                                              ended, started)
    with pytest.raises(exceptions.InvalidInput, match="field 'project_id'"):
        db.update_operation_log(log.id, {"project_id": "p2"})


# -- services -------------------------------------------------------------------------


def test_service_heartbeat_upserts(db: Database) -> None:
    first = db.service_heartbeat("node-1", "strongroom-protection", "strongroom-protection")
    again = db.service_heartbeat("node-1", "strongroom-protection")
    other = db.service_heartbeat("node-2", "strongroom-protection")
    assert again.id == first.id and again.topic == "strongroom-protection"
    assert first.last_heartbeat is not None and again.last_heartbeat is not None
    assert again.last_heartbeat > first.last_heartbeat
    assert [s.id for s in db.list_services()] == [first.id, other.id]

    disabled = db.update_service(first.id, {"disabled": True, "disabled_reason": "maintenance"})
    assert disabled.disabled is True and disabled.disabled_reason == "maintenance"
    assert db.list_services()[0].disabled is True
    with pytest.raises(exceptions.NotFound, match="Service 999999"):
        db.update_service(999999, {"disabled": False})
