"""Filters, sort keys, keyset pagination and timestamps, on every reachable SQL server."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from strongroom import exceptions
from strongroom.db.api import Database
from strongroom.objects.records import CheckpointRecord, OperationLog, Plan, Restore

pytestmark = pytest.mark.db

PROVIDER = "cf56bd3e-97a7-4078-b6d5-f36246333fd9"
OTHER_PROVIDER = "3f8af6d6-7d3e-4e8a-9a5c-0a4a3a36c9a1"
BASE = dt.datetime(2026, 5, 17, 10, 0, 0, tzinfo=dt.UTC)


def _id() -> str:
    return str(uuid.uuid4())


def _sorted(items: list[Any], keys: list[tuple[str, str]]) -> list[Any]:
    """What the database should return: sort by keys, then by id in the last key's direction."""
    out = sorted(items, key=lambda x: x.id, reverse=keys[-1][1] == "desc")
    for key, direction in reversed(keys):
        out = sorted(out, key=lambda x, k=key: getattr(x, k), reverse=direction == "desc")
    return out


def _pages(fetch: Callable[..., list[Any]], limit: int, **kw: Any) -> list[list[Any]]:
    pages: list[list[Any]] = []
    marker = None
    while True:
        page = fetch(marker=marker, limit=limit, **kw)
        if not page:
            return pages
        pages.append(page)
        marker = page[-1].id


@pytest.fixture
def plans(db: Database) -> list[Plan]:
    """25 plans; created_at values repeat in threes so that the id tie-breaker matters."""
    out = []
    for i in range(25):
        out.append(db.create_plan(Plan(
            id=_id(), name=f"plan-{i % 4}", provider_id=PROVIDER if i % 5 else OTHER_PROVIDER,
            project_id="p1", status="started" if i % 2 else "suspended",
            created_at=BASE + dt.timedelta(microseconds=i // 3),
        )))
    return out


@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_keyset_pagination_visits_every_row_once_in_order(db: Database, plans: list[Plan],
                                                         direction: str) -> None:
    sort = [("created_at", direction)]
    pages = _pages(lambda **kw: db.list_plans("p1", **kw), 7, sort=sort)
    assert [len(p) for p in pages] == [7, 7, 7, 4]
    flat = [p.id for page in pages for p in page]
    assert flat == [p.id for p in _sorted(plans, sort)]


@pytest.mark.parametrize("sort", [
    [("name", "asc"), ("created_at", "desc")],
    [("status", "desc"), ("provider_id", "asc"), ("created_at", "asc")],
    [("id", "desc")],
])
def test_pagination_with_several_sort_keys(db: Database, plans: list[Plan],
                                           sort: list[tuple[str, str]]) -> None:
    flat = [p.id for page in _pages(lambda **kw: db.list_plans(None, **kw), 7, sort=sort) for p in page]
    assert flat == [p.id for p in _sorted(plans, sort)]
    assert len(set(flat)) == 25


def test_default_sort_is_newest_first(db: Database, plans: list[Plan]) -> None:
    assert [p.id for p in db.list_plans("p1")] == [p.id for p in _sorted(plans, [("created_at", "desc")])]


def test_plan_filters(db: Database, plans: list[Plan]) -> None:
    got = db.list_plans("p1", filters={"status": "started", "name": "plan-1"}, sort=[("created_at", "asc")])
    expected = [p for p in plans if p.status == "started" and p.name == "plan-1"]
    assert [p.id for p in got] == [p.id for p in _sorted(expected, [("created_at", "asc")])]
    assert len(db.list_plans(None, filters={"provider_id": OTHER_PROVIDER})) == 5
    assert len(db.list_plans(None, filters={"name": ["plan-0", "plan-3"]})) == 13


def test_limit_zero_and_bad_limit(db: Database, plans: list[Plan]) -> None:
    assert db.list_plans("p1", limit=0) == []
    with pytest.raises(exceptions.InvalidInput, match="limit must be a non-negative integer"):
        db.list_plans("p1", limit=-1)


def test_unknown_sort_key_filter_and_marker_are_named(db: Database, plans: list[Plan]) -> None:
    with pytest.raises(exceptions.InvalidInput, match="unknown sort key 'size'"):
        db.list_plans("p1", sort=[("size", "asc")])
    with pytest.raises(exceptions.InvalidInput, match="sort direction 'up' of key 'name'"):
        db.list_plans("p1", sort=[("name", "up")])
    with pytest.raises(exceptions.InvalidInput, match="unknown filter 'colour'"):
        db.list_plans("p1", filters={"colour": "red"})
    missing = _id()
    with pytest.raises(exceptions.InvalidInput, match=f"marker {missing} could not be found"):
        db.list_plans("p1", marker=missing)
    # a plan of another project is not a valid marker either
    with pytest.raises(exceptions.InvalidInput, match=f"marker {plans[0].id}"):
        db.list_plans("p2", marker=plans[0].id)
    with pytest.raises(exceptions.InvalidInput, match="unknown filter 'name'"):
        db.list_checkpoints(None, None, filters={"name": "x"})
    with pytest.raises(exceptions.InvalidInput, match="unknown sort key 'name'"):
        db.list_operation_logs(None, sort=[("name", "asc")])


def test_timestamps_are_utc_aware_and_microsecond_ordered(db: Database) -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    given = dt.datetime(2026, 6, 1, 14, 0, 0, 123456, tzinfo=paris)
    cp = db.create_checkpoint(CheckpointRecord(id=_id(), provider_id=PROVIDER, project_id="p1",
                                               status="available", created_at=given))
    got = db.get_checkpoint(cp.id)
    assert got.created_at == given and got.created_at is not None
    assert got.created_at.utcoffset() == dt.timedelta(0)
    assert got.created_at.microsecond == 123456

    # rows created within one second come back in creation order
    ids = [db.create_checkpoint(CheckpointRecord(id=_id(), provider_id=PROVIDER, project_id="p2",
                                                 status="protecting")).id for _ in range(5)]
    listed = db.list_checkpoints(PROVIDER, "p2", sort=[("created_at", "asc")])
    assert [c.id for c in listed] == ids
    stamps = [c.created_at for c in listed]
    assert all(s is not None and s.tzinfo is not None for s in stamps)
    assert stamps == sorted(stamps) and len(set(stamps)) == 5

    for same_second in (BASE + dt.timedelta(microseconds=2), BASE + dt.timedelta(microseconds=1)):
        db.create_checkpoint(CheckpointRecord(id=_id(), provider_id=PROVIDER, project_id="p3",
                                              status="available", created_at=same_second))
    got_stamps = [c.created_at for c in db.list_checkpoints(None, "p3", sort=[("created_at", "asc")])]
    assert got_stamps == [BASE + dt.timedelta(microseconds=1), BASE + dt.timedelta(microseconds=2)]


def test_checkpoint_date_filters_are_whole_utc_days(db: Database) -> None:
    def make(when: dt.datetime, **kw: Any) -> str:
        return db.create_checkpoint(CheckpointRecord(id=_id(), provider_id=PROVIDER, project_id="p1",
                                                     status="available", created_at=when, **kw)).id

    before = make(dt.datetime(2026, 3, 9, 23, 59, 59, 999999, tzinfo=dt.UTC))
    first = make(dt.datetime(2026, 3, 10, 0, 0, 0, tzinfo=dt.UTC))
    # 01:30 at UTC+2 on the 11th is the 10th, 23:30 UTC
    late = make(dt.datetime(2026, 3, 11, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))))
    last = make(dt.datetime(2026, 3, 12, 23, 59, 59, 999999, tzinfo=dt.UTC))
    after = make(dt.datetime(2026, 3, 13, 0, 0, 0, tzinfo=dt.UTC))

    def ids(**filters: Any) -> list[str]:
        got = db.list_checkpoints(PROVIDER, "p1", filters=filters, sort=[("created_at", "asc")])
        return [c.id for c in got]

    assert ids(start_date=dt.date(2026, 3, 10), end_date=dt.date(2026, 3, 12)) == [first, late, last]
    assert ids(start_date="2026-03-10", end_date="2026-03-10") == [first, late]
    assert ids(start_date=dt.date(2026, 3, 13)) == [after]
    assert ids(end_date=dt.date(2026, 3, 9)) == [before]
    with pytest.raises(exceptions.InvalidInput, match="filter 'start_date' must be a date"):
        ids(start_date="yesterday")


def test_checkpoint_filters_scope_and_pagination(db: Database) -> None:
    plan_a, plan_b = _id(), _id()
    made = []
    for i in range(12):
        made.append(db.create_checkpoint(CheckpointRecord(
            id=_id(), provider_id=PROVIDER if i < 10 else OTHER_PROVIDER, project_id="p1",
            status="available" if i % 3 else "error", plan_id=plan_a if i % 2 else plan_b,
            created_at=BASE + dt.timedelta(seconds=i // 2))))
    mine = [c for c in made if c.provider_id == PROVIDER]
    sort = [("created_at", "desc")]
    flat = [c.id for page in _pages(lambda **kw: db.list_checkpoints(PROVIDER, "p1", **kw), 4, sort=sort)
            for c in page]
    assert flat == [c.id for c in _sorted(mine, sort)]
    got = db.list_checkpoints(PROVIDER, "p1", filters={"plan_id": plan_a, "status": "available"})
    assert {c.id for c in got} == {c.id for c in mine if c.plan_id == plan_a and c.status == "available"}
    assert len(db.list_checkpoints(None, "p1")) == 12
    assert db.list_checkpoints(PROVIDER, "p2") == []
    sort = [("plan_id", "asc"), ("created_at", "asc")]
    by_plan = db.list_checkpoints(None, None, sort=sort)
    assert [c.id for c in by_plan] == [c.id for c in _sorted(made, sort)]


def test_restore_and_operation_log_listing(db: Database) -> None:
    cp = _id()
    restores = [db.create_restore(Restore(id=_id(), project_id="p1", provider_id=PROVIDER,
                                          checkpoint_id=cp if i % 2 else _id(),
                                          created_at=BASE + dt.timedelta(seconds=i))) for i in range(6)]
    got = db.list_restores("p1", filters={"checkpoint_id": cp}, sort=[("created_at", "asc")])
    assert [r.id for r in got] == [r.id for r in restores if r.checkpoint_id == cp]
    flat = [r.id for page in _pages(lambda **kw: db.list_restores("p1", **kw), 4) for r in page]
    assert flat == [r.id for r in reversed(restores)]

    logs = [db.create_operation_log(OperationLog(
        id=_id(), project_id="p1", operation_type="protect" if i % 2 else "delete",
        status="success" if i < 4 else "running", checkpoint_id=cp if i < 3 else None,
        created_at=BASE + dt.timedelta(seconds=i))) for i in range(8)]
    got_logs = db.list_operation_logs("p1", filters={"operation_type": "protect", "status": "success"})
    assert [x.id for x in got_logs] == [x.id for x in reversed(logs[:4]) if x.operation_type == "protect"]
    assert [x.id for x in db.list_operation_logs(None, filters={"checkpoint_id": cp})] == \
        [x.id for x in reversed(logs[:3])]
    sort = [("checkpoint_id", "desc"), ("created_at", "asc")]
    flat_logs = [x.id for page in _pages(lambda **kw: db.list_operation_logs("p1", **kw), 3, sort=sort)
                 for x in page]
    assert flat_logs == [x.id for x in logs[:3]] + [x.id for x in logs[3:]]
