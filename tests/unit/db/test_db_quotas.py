"""Quotas in the metadata store, on every reachable SQL server: limits, classes, and creates that race."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from strongroom import exceptions
from strongroom.db.api import Database
from strongroom.objects.records import CheckpointRecord, Plan, Resource
from tests.race import race

pytestmark = pytest.mark.db

PROVIDER = "cf56bd3e-97a7-4078-b6d5-f36246333fd9"


def _plan(project: str = "p1") -> Plan:
    return Plan(id=str(uuid.uuid4()), name="plan", provider_id=PROVIDER, project_id=project, status="suspended",
                resources=[Resource(id="vol-1", type="OS::Cinder::Volume", name="v")])


def _checkpoint(project: str = "p1", status: str = "protecting") -> CheckpointRecord:
    return CheckpointRecord(id=str(uuid.uuid4()), provider_id=PROVIDER, project_id=project, status=status)


def test_defaults_come_from_the_options_then_the_default_class(db: Database) -> None:
    assert db.quota_defaults_of() == {"plans": 50, "checkpoints": -1}
    assert db.get_project_quotas("p1") == {"plans": 50, "checkpoints": -1}
    db.quota_defaults = {"plans": 7, "checkpoints": 3}  # what Database(..., quota_defaults=) sets from [quota]
    try:
        assert db.get_project_quotas("p1") == {"plans": 7, "checkpoints": 3}
        assert db.set_quota_class("default", {"plans": 12}) == {"plans": 12, "checkpoints": 3}
        assert db.quota_defaults_of() == {"plans": 12, "checkpoints": 3}
        assert db.get_quota_class("gold") == {"plans": 7, "checkpoints": 3}
        assert db.set_quota_class("gold", {"plans": 100, "checkpoints": 100}) == {"plans": 100, "checkpoints": 100}
        assert db.set_quota_class("gold", {"plans": -1}) == {"plans": -1, "checkpoints": 100}
        assert db.set_project_quotas("p1", {"checkpoints": 9}) == {"plans": 12, "checkpoints": 9}
        assert db.get_project_quotas("p2") == {"plans": 12, "checkpoints": 3}
    finally:
        del db.quota_defaults


def test_bad_limits_and_resources_are_refused_naming_them(db: Database) -> None:
    with pytest.raises(exceptions.InvalidInput, match="plans: the limit must be -1"):
        db.set_project_quotas("p1", {"plans": -2})
    with pytest.raises(exceptions.InvalidInput, match="unknown quota resource 'volumes'"):
        db.set_project_quotas("p1", {"volumes": 3})
    with pytest.raises(exceptions.InvalidInput, match="checkpoints: the limit must be an integer"):
        db.set_quota_class("default", {"checkpoints": True})


def test_the_limit_is_enforced_and_deleted_plans_do_not_count(db: Database) -> None:
    db.set_project_quotas("p1", {"plans": 2})
    first = db.create_plan(_plan(), enforce_quota=True)
    db.create_plan(_plan(), enforce_quota=True)
    with pytest.raises(exceptions.QuotaExceeded, match="Quota exceeded for plans: limit 2, in use 2"):
        db.create_plan(_plan(), enforce_quota=True)
    db.create_plan(_plan("p2"), enforce_quota=True)  # another project's limit is its own
    db.create_plan(_plan())  # not enforced: a plan rebuilt from the bank
    db.delete_plan(first.id)
    with pytest.raises(exceptions.QuotaExceeded, match="limit 2, in use 2"):
        db.create_plan(_plan(), enforce_quota=True)  # the unenforced one counts, the deleted one not
    db.set_project_quotas("p1", {"plans": -1})
    for _ in range(3):
        db.create_plan(_plan(), enforce_quota=True)
    usage = db.get_project_usages("p1")
    assert (usage["plans"].to_dict(), usage["checkpoints"].to_dict()) == (
        {"limit": -1, "in_use": 5, "reserved": 0}, {"limit": -1, "in_use": 0, "reserved": 0})


def test_checkpoints_count_until_deleted(db: Database) -> None:
    db.set_project_quotas("p1", {"checkpoints": 1})
    cp = db.create_checkpoint(_checkpoint(), enforce_quota=True)
    with pytest.raises(exceptions.QuotaExceeded, match="Quota exceeded for checkpoints: limit 1, in use 1"):
        db.create_checkpoint(_checkpoint(), enforce_quota=True)
    db.update_checkpoint(cp.id, {"status": "deleted"}, check=False)
    db.create_checkpoint(_checkpoint(), enforce_quota=True)
    assert db.get_project_usages("p1")["checkpoints"].in_use == 1


@pytest.mark.parametrize("kind", ["plans", "checkpoints"])
def test_twenty_racing_creates_against_ten_make_exactly_ten(db: Database, kind: str) -> None:
    project = f"race-{uuid.uuid4().hex[:8]}"  # no quota row yet: the racers also race to insert it
    db.set_quota_class("default", {kind: 10})
    if kind == "plans":
        def work(_i: int) -> Any:
            return db.create_plan(_plan(project), enforce_quota=True)
    else:
        def work(_i: int) -> Any:
            return db.create_checkpoint(_checkpoint(project), enforce_quota=True)
    results, errors = race(20, work)
    assert len(results) == 10, errors
    assert len(errors) == 10 and all(isinstance(e, exceptions.QuotaExceeded) for e in errors), errors
    assert {str(e) for e in errors} == {f"Quota exceeded for {kind}: limit 10, in use 10"}
    assert db.get_project_usages(project)[kind].in_use == 10
