"""Done-when 1: a simulated week of 100 triggers (hourly, daily, cron, calendar) across three engines
produces exactly the expected fires, each once, in seconds of real time.

``make test`` simulates two days (``STRONGROOM_SIMULATED_DAYS``, default 2: every kind of trigger fires
and the outage falls in the middle); ``make soak`` the whole week (about 80 s of CPU on two cores).

Three :class:`OperationEngine` instances, each with its own connection pool to one database, tick in
parallel threads on a shared :class:`FakeClock` that moves two minutes per step.  Expected fire times are
computed by plain arithmetic on each minute of the week (not by croniter or dateutil, which the engine
uses).  All engines stop for two hours in the middle: fires whose window closed meanwhile must be logged
``dropped_out_of_window``, those still inside their window must run once on restart.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import pytest

from strongroom.clock import FakeClock
from strongroom.db.api import Database
from strongroom.db.scheduling import SchedulingStore
from strongroom.objects.scheduling import FireState
from strongroom.operationengine.engine import EngineSettings, InlineExecutor, OperationEngine
from strongroom.operationengine.identity import NoAuthIdentity
from tests.unit.operationengine.fakes import FakeProtectionForSchedulingTests, add_operation, add_plan, add_trigger

UTC = _dt.UTC
START = _dt.datetime(2026, 3, 2, 0, 0, 7, tzinfo=UTC)  # a Monday, seconds past the minute
WINDOW = 600
STEP = 300
DAYS = int(os.environ.get("STRONGROOM_SIMULATED_DAYS", "2"))


@dataclasses.dataclass
class Spec:
    properties: dict[str, object]
    fires_at: Callable[[_dt.datetime], bool]  # the expected schedule, on whole minutes


def hundred_triggers() -> list[Spec]:
    specs: list[Spec] = []
    for i in range(6):  # hourly, at minute 10*i
        m = 10 * i
        specs.append(Spec({"format": "crontab", "pattern": f"{m} * * * *"}, lambda t, m=m: t.minute == m))
    for i in range(44):  # daily
        h, m = i % 24, (7 * i) % 60
        specs.append(Spec({"format": "crontab", "pattern": f"{m} {h} * * *"},
                          lambda t, h=h, m=m: t.hour == h and t.minute == m))
    for i in range(25):  # cron: every six hours on weekdays
        m = (11 * i) % 60
        specs.append(Spec({"format": "crontab", "pattern": f"{m} */6 * * 1-5"},
                          lambda t, m=m: t.weekday() < 5 and t.hour % 6 == 0 and t.minute == m))
    for i in range(15):  # calendar: twice a day
        m = (13 * i) % 60
        pattern = f"BEGIN:VEVENT\nRRULE:FREQ=DAILY;BYHOUR=3,15;BYMINUTE={m};BYSECOND=0\nEND:VEVENT"
        specs.append(Spec({"format": "calendar", "pattern": pattern},
                          lambda t, m=m: t.hour in (3, 15) and t.minute == m))
    for i in range(10):  # calendar: every four hours from a start time, until an end time
        first = START.replace(second=0) + _dt.timedelta(hours=1, minutes=17 + i)
        end = first + _dt.timedelta(days=5)
        pattern = "BEGIN:VEVENT\\nRRULE:FREQ=HOURLY;INTERVAL=4\\nEND:VEVENT"  # Karbor's escaped form
        specs.append(Spec({"format": "calendar", "pattern": pattern, "start_time": first.isoformat(),
                           "end_time": end.isoformat()},
                          lambda t, first=first, end=end: first <= t <= end
                          and (t - first).total_seconds() % (4 * 3600) == 0))
    assert len(specs) == 100
    return specs


def expected_fires(spec: Spec, after: _dt.datetime, until: _dt.datetime) -> list[_dt.datetime]:
    t = after.replace(second=0) + _dt.timedelta(minutes=1)
    out = []
    while t <= until:
        if spec.fires_at(t):
            out.append(t)
        t += _dt.timedelta(minutes=1)
    return out


@dataclasses.dataclass
class World:
    clock: FakeClock
    store: SchedulingStore
    protection: FakeProtectionForSchedulingTests
    engines: list[OperationEngine]
    databases: list[Database]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = FakeClock(START)
    # On tmpfs where there is one: this test is about scheduling, not about the disk's sync latency.
    where = Path(tempfile.mkdtemp(dir="/dev/shm")) if os.path.isdir("/dev/shm") else tmp_path
    url = f"sqlite:///{where / 'week.sqlite'}"
    databases = [Database(url, clock=clock) for _ in range(3)]
    databases[0].sync()
    protection = FakeProtectionForSchedulingTests(databases[0], clock)
    settings = EngineSettings(poll_interval=STEP, plan_ahead=900, claim_timeout=300, max_concurrent_runs=50)
    engines = [OperationEngine(db, protection, NoAuthIdentity(), owner=f"engine-{i}", settings=settings,
                               clock=clock, executor=InlineExecutor()) for i, db in enumerate(databases)]
    yield World(clock, SchedulingStore(databases[0]), protection, engines, databases)
    for db in databases:
        db.dispose()
    shutil.rmtree(where, ignore_errors=True)


def run_engines(world: World, until: _dt.datetime, pool: futures.Executor) -> None:
    """Advance the clock step by step; at each step every engine ticks, in parallel threads."""
    step = 0
    while world.clock.now() < until:
        world.clock.advance(STEP)
        step += 1
        order = world.engines[step % 3:] + world.engines[:step % 3]  # nobody is always first
        for result in [pool.submit(engine.tick) for engine in order]:
            result.result()


def test_days_of_100_triggers_on_three_engines(world: World) -> None:
    specs = hundred_triggers()
    ops = {}
    for spec in specs:
        plan = add_plan(world.databases[0])
        trigger = add_trigger(world.store, {**spec.properties, "window": WINDOW}, world.clock.now())
        kind, definition = ("retention_protect", {"max_backups": 3}) if len(ops) % 4 == 0 else ("protect", {})
        ops[add_operation(world.store, trigger, plan, kind=kind, definition=definition).id] = spec
    outage_start = START + _dt.timedelta(days=DAYS / 2, hours=1)
    outage_end = outage_start + _dt.timedelta(hours=2)
    week_end = START + _dt.timedelta(days=DAYS)

    started = time.monotonic()
    with futures.ThreadPoolExecutor(3) as pool:
        run_engines(world, outage_start, pool)
        # Every engine is down; the first pass after the outage happens at outage_end.
        world.clock.advance((outage_end - outage_start).total_seconds() - STEP)
        run_engines(world, week_end, pool)
    elapsed = time.monotonic() - started

    settled = week_end - _dt.timedelta(seconds=WINDOW + STEP)  # later fires may still be running
    seen: dict[tuple[str, _dt.datetime], list[str]] = collections.defaultdict(list)
    fires_by_id = {}
    for op_id in ops:
        for fire in world.store.list_fires(op_id, include_planned=True):
            seen[(op_id, fire.fire_time)].append(fire.state)
            fires_by_id[fire.id] = fire
    expected = {(op_id, t) for op_id, spec in ops.items() for t in expected_fires(spec, START, settled)}
    settled_seen = {key for key in seen if key[1] <= settled}
    assert settled_seen == expected, (sorted(expected - settled_seen)[:5], sorted(settled_seen - expected)[:5])
    assert all(len(states) == 1 for states in seen.values())  # one row per (operation, time)

    dropped = {key for key in expected if seen[key] == [FireState.DROPPED_OUT_OF_WINDOW]}
    missed = {key for key in expected
              if outage_start < key[1] and key[1] + _dt.timedelta(seconds=WINDOW) < outage_end}
    assert dropped == missed and missed, "exactly the fires whose window closed during the outage are dropped"
    caught_up = {key for key in expected if outage_start < key[1] <= outage_end and key not in missed}
    assert caught_up and all(seen[key] == [FireState.SUCCESS] for key in caught_up)
    assert all(seen[key] == [FireState.SUCCESS] for key in expected - dropped)

    # Each successful fire protected exactly once; a dropped one never.
    protects = world.protection.protects
    for fire in fires_by_id.values():
        runs = protects.get(fire.id, [])
        if fire.state == FireState.SUCCESS:
            assert runs == [fire.checkpoint_id]
        elif fire.state == FireState.DROPPED_OUT_OF_WINDOW:
            assert runs == []
    assert set(protects) <= set(fires_by_id)

    owners = collections.Counter(f.owner for f in fires_by_id.values() if f.state == FireState.SUCCESS)
    assert set(owners) == {"engine-0", "engine-1", "engine-2"}, owners

    # Retention kept the three newest available checkpoints of each retention_protect plan (all of
    # them where it fired fewer times).
    retained = [op for op in world.store.list_operations(None) if op.operation_type == "retention_protect"]
    for op in retained:
        available = world.databases[0].list_checkpoints(None, None, filters={"plan_id": op.plan_id,
                                                                            "status": "available"})
        made = sum(1 for f in fires_by_id.values() if f.operation_id == op.id and f.state == FireState.SUCCESS)
        assert len(available) == min(3, made), op.id
    assert any(len(world.databases[0].list_checkpoints(None, None, filters={"plan_id": op.plan_id})) > 3
               for op in retained), "retention had something to trim"
    total = sum(1 for f in fires_by_id.values() if f.state == FireState.SUCCESS)
    print(f"\nsimulated {DAYS} days: {len(expected)} expected fires, {total} runs, {len(dropped)} dropped "
          f"during the outage, runs per engine {dict(owners)}, {elapsed:.1f} s of real time")

