"""Exactly once, on every database: planning and claiming race between engines, takeover of a dead engine's
fire inside its window, fencing of an engine that paused past its claim, re-planning, suspend and resume."""

from __future__ import annotations

import collections
import datetime as _dt
import functools
import threading
from collections.abc import Iterator
from concurrent import futures

import pytest

from strongroom import exceptions
from strongroom.clock import FakeClock
from strongroom.db.api import Database
from strongroom.db.scheduling import SchedulingStore
from strongroom.objects.scheduling import FireState
from strongroom.operationengine.engine import EngineSettings, InlineExecutor, OperationEngine
from strongroom.operationengine.identity import NoAuthIdentity
from tests.unit.operationengine.fakes import FakeProtectionForSchedulingTests, add_operation, add_plan, add_trigger

pytestmark = pytest.mark.db

START = _dt.datetime(2026, 5, 4, 10, 0, 30, tzinfo=_dt.UTC)
SETTINGS = EngineSettings(poll_interval=10, plan_ahead=3600, claim_timeout=60, max_concurrent_runs=20)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def dbs(db: Database, clock: FakeClock) -> Iterator[list[Database]]:
    """Three connection pools to the test database (one per engine), on the fake clock."""
    pools = [Database(str(db.engine.url.render_as_string(hide_password=False)), clock=clock) for _ in range(3)]
    yield pools
    for pool in pools:
        pool.dispose()


def engines(dbs: list[Database], protection: FakeProtectionForSchedulingTests, clock: FakeClock,
            settings: EngineSettings = SETTINGS) -> list[OperationEngine]:
    return [OperationEngine(d, protection, NoAuthIdentity(), owner=f"engine-{i}", settings=settings, clock=clock,
                            executor=InlineExecutor()) for i, d in enumerate(dbs)]


def parallel(calls: list[object]) -> list[object]:
    barrier = threading.Barrier(len(calls))

    def run(call: object) -> object:
        barrier.wait()
        return call()  # type: ignore[operator]

    with futures.ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(run, c) for c in calls]]


def test_one_of_many_racing_claims_wins(dbs: list[Database], clock: FakeClock) -> None:
    store = SchedulingStore(dbs[0])
    plan = add_plan(dbs[0])
    op = add_operation(store, add_trigger(store, {"pattern": "*/5 * * * *", "window": 120}, clock.now()), plan)
    stores = [SchedulingStore(d) for d in dbs]
    assert OperationEngine(dbs[0], None, NoAuthIdentity(), clock=clock, settings=SETTINGS).plan() == 12  # type: ignore[arg-type]
    clock.advance(300)
    for _round in range(2):
        [fire] = [f for f in store.due_fires(clock.now(), 10) if f.state == FireState.PLANNED][:1]
        expires = clock.now() + _dt.timedelta(seconds=60)
        won = parallel([functools.partial(s.claim, fire, f"engine-{i}", expires)
                        for i, s in enumerate(stores * 2)])
        winners = [w for w in won if w is not None]
        assert len(winners) == 1
        after = store.get_fire(fire.id)
        assert after.state == FireState.IN_PROGRESS and after.owner == winners[0].owner  # type: ignore[union-attr]
        assert after.attempts == 1 and after.claim_token == winners[0].claim_token  # type: ignore[union-attr]
        clock.advance(300)
    assert [f.operation_id for f in store.list_fires(op.id)] == [op.id, op.id]


def test_three_engines_in_parallel_for_three_hours(dbs: list[Database], clock: FakeClock) -> None:
    store = SchedulingStore(dbs[0])
    protection = FakeProtectionForSchedulingTests(dbs[0], clock)
    ops = [add_operation(store, add_trigger(store, {"pattern": f"{i}-59/15 * * * *", "window": 300}, clock.now()),
                         add_plan(dbs[0])) for i in range(10)]
    fleet = engines(dbs, protection, clock)
    for _step in range(3 * 60 // 2):
        clock.advance(120)
        parallel([e.tick for e in fleet])
    fires = [f for op in ops for f in store.list_fires(op.id)]
    limit = clock.now() - _dt.timedelta(seconds=300)
    settled = [f for f in fires if f.fire_time <= limit]
    minutes = [START.replace(second=0) + _dt.timedelta(minutes=k) for k in range(1, 3 * 60 + 1)]
    expected = sum(1 for i in range(10) for t in minutes if t.minute % 15 == i and t <= limit)
    assert len(settled) == expected > 100
    assert all(f.state == FireState.SUCCESS for f in settled)
    assert all(protection.protects[f.id] == [f.checkpoint_id] for f in settled)
    assert sum(len(v) for v in protection.protects.values()) == sum(1 for f in fires if f.checkpoint_id)
    assert len(collections.Counter(f.owner for f in settled)) >= 2


def test_takeover_inside_the_window_after_an_engine_died(dbs: list[Database], clock: FakeClock) -> None:
    store = SchedulingStore(dbs[0])
    protection = FakeProtectionForSchedulingTests(dbs[0], clock)
    op = add_operation(store, add_trigger(store, {"pattern": "0 * * * *", "window": 900}, clock.now()),
                       add_plan(dbs[0]))
    a, b = engines(dbs[:2], protection, clock)
    a.plan()  # the 11:00 fire
    clock.advance(3600)
    [fire] = store.due_fires(clock.now(), 10)
    dead = store.claim(fire, "engine-that-died", clock.now() + _dt.timedelta(seconds=60))
    assert dead is not None
    clock.advance(30)
    assert b.tick().claimed == 0  # the claim still holds
    clock.advance(60)
    assert b.tick().claimed == 1  # expired, window still open: taken over
    [log] = store.list_fires(op.id)
    assert (log.state, log.owner, log.attempts) == (FireState.SUCCESS, "engine-1", 2)
    assert protection.protects[log.id] == [log.checkpoint_id]


def test_takeover_adopts_the_checkpoint_the_dead_engine_started(dbs: list[Database], clock: FakeClock) -> None:
    """The dead engine had protect accepted but died before recording it: no second checkpoint."""
    store = SchedulingStore(dbs[0])
    protection = FakeProtectionForSchedulingTests(dbs[0], clock, finish=None)
    op = add_operation(store, add_trigger(store, {"pattern": "0 * * * *", "window": 120}, clock.now()),
                       add_plan(dbs[0]))
    [b] = engines(dbs[1:2], protection, clock)
    b.plan()
    clock.advance(3600 - 30)
    [fire] = store.due_fires(clock.now(), 10)
    dead = store.claim(fire, "engine-that-died", clock.now() + _dt.timedelta(seconds=60))
    assert dead is not None
    plan = dbs[0].get_plan(op.plan_id)
    started = protection.protect(NoAuthIdentity().context_for(op), plan.to_dict(), op.provider_id,
                                 extra_info={"scheduled_fire_id": fire.id})  # accepted, never recorded
    dbs[0].update_checkpoint(started["id"], {"status": "available"})
    clock.advance(600)  # long past the window: what was started is still finished and logged
    assert b.tick().claimed == 1
    [log] = store.list_fires(op.id)
    assert (log.state, log.checkpoint_id) == (FireState.SUCCESS, started["id"])
    assert protection.protects[fire.id] == [started["id"]]


def test_expired_claim_past_the_window_is_dropped(dbs: list[Database], clock: FakeClock) -> None:
    store = SchedulingStore(dbs[0])
    protection = FakeProtectionForSchedulingTests(dbs[0], clock)
    op = add_operation(store, add_trigger(store, {"pattern": "0 * * * *", "window": 120}, clock.now()),
                       add_plan(dbs[0]))
    [b] = engines(dbs[1:2], protection, clock)
    b.plan()
    clock.advance(3600 - 30)
    [fire] = store.due_fires(clock.now(), 10)
    store.claim(fire, "engine-that-died", clock.now() + _dt.timedelta(seconds=60))
    clock.advance(600)
    b.tick()
    [log] = store.list_fires(op.id)
    assert log.state == FireState.DROPPED_OUT_OF_WINDOW and "window closed" in (log.error_info or "")
    assert not protection.protects


class WaitingClock(FakeClock):
    """A fake clock whose ``sleep`` really waits a little and does not move time (runs poll in threads)."""

    def sleep(self, seconds: float) -> None:
        threading.Event().wait(0.005)


def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():  # type: ignore[operator]
            return
        deadline.wait(0.01)
    raise AssertionError("condition not reached")


def test_an_engine_that_paused_past_its_claim_cannot_finish_the_fire(dbs: list[Database]) -> None:
    """Engine a claims and starts a fire, then pauses (renews nothing); b takes the fire over when the claim
    expires; when a wakes up its writes no longer count, and the checkpoint is not made twice."""
    clock_a, clock_b = WaitingClock(START), WaitingClock(START)
    store = SchedulingStore(dbs[0])
    protection = FakeProtectionForSchedulingTests(dbs[0], clock_b, finish=None)
    op = add_operation(store, add_trigger(store, {"pattern": "0 * * * *", "window": 900}, clock_b.now()),
                       add_plan(dbs[0]))
    a, b = (OperationEngine(d, protection, NoAuthIdentity(), owner=name, clock=c, settings=SETTINGS,
                            executor=futures.ThreadPoolExecutor(1))
            for d, name, c in ((dbs[0], "engine-a", clock_a), (dbs[1], "engine-b", clock_b)))
    b.plan()
    clock_a.advance(3600)
    clock_b.advance(3600)
    assert a.tick().claimed == 1
    wait_until(lambda: store.list_fires(op.id)[0].checkpoint_id is not None)
    [checkpoint_id] = protection.protects[store.list_fires(op.id)[0].id]

    clock_b.advance(30)
    assert b.tick().claimed == 0  # a's claim still holds
    clock_b.advance(60)  # a is paused: its claim expires
    assert b.tick().claimed == 1
    wait_until(lambda: store.list_fires(op.id)[0].owner == "engine-b")
    dbs[0].update_checkpoint(checkpoint_id, {"status": "available"})
    wait_until(lambda: store.list_fires(op.id)[0].state == FireState.SUCCESS)
    a.stop(wait=True)
    b.stop(wait=True)
    [log] = store.list_fires(op.id)
    assert (log.state, log.owner, log.attempts, log.checkpoint_id) == (FireState.SUCCESS, "engine-b", 2,
                                                                       checkpoint_id)
    assert sum(len(v) for v in protection.protects.values()) == 1


def test_trigger_update_replans_future_fires_and_delete_in_use_conflicts(dbs: list[Database],
                                                                        clock: FakeClock) -> None:
    store = SchedulingStore(dbs[0])
    trigger = add_trigger(store, {"pattern": "0 * * * *", "window": 120}, clock.now())
    op = add_operation(store, trigger, add_plan(dbs[0]))
    engine = OperationEngine(dbs[0], None, NoAuthIdentity(), clock=clock,  # type: ignore[arg-type]
                             settings=EngineSettings(plan_ahead=3 * 3600))
    engine.plan()
    assert [f.fire_time.hour for f in store.list_fires(op.id, include_planned=True)] == [13, 12, 11]
    store.update_trigger(trigger.id, {"properties": {**trigger.properties, "pattern": "30 */2 * * *"}})
    assert store.list_fires(op.id, include_planned=True) == []
    engine.plan()
    assert [(f.fire_time.hour, f.fire_time.minute) for f in store.list_fires(op.id, include_planned=True)] == [
        (12, 30), (10, 30)]
    with pytest.raises(exceptions.Conflict, match="used by scheduled operation"):
        store.delete_trigger(trigger.id)


def test_suspend_forgets_planned_fires_and_resume_does_not_catch_up(dbs: list[Database], clock: FakeClock) -> None:
    store = SchedulingStore(dbs[0])
    protection = FakeProtectionForSchedulingTests(dbs[0], clock)
    op = add_operation(store, add_trigger(store, {"pattern": "0 * * * *", "window": 120}, clock.now()),
                       add_plan(dbs[0]))
    [engine] = engines(dbs[:1], protection, clock)
    engine.tick()
    store.set_enabled(op.id, False)
    assert store.list_fires(op.id, include_planned=True) == []
    for _ in range(10):
        clock.advance(1800)
        engine.tick()
    assert store.list_fires(op.id, include_planned=True) == [] and not protection.protects
    store.set_enabled(op.id, True)
    for _ in range(4):
        clock.advance(1800)
        engine.tick()
    logs = store.list_fires(op.id)
    assert [f.state for f in logs] == [FireState.SUCCESS, FireState.SUCCESS]
    assert all(f.fire_time > START + _dt.timedelta(hours=5) for f in logs)


def test_a_restarted_all_in_one_takes_over_only_its_own_hosts_claims(dbs: list[Database], clock: FakeClock) -> None:
    store = SchedulingStore(dbs[0])
    protection = FakeProtectionForSchedulingTests(dbs[0], clock)
    for _ in range(2):
        add_operation(store, add_trigger(store, {"pattern": "0 * * * *", "window": 900}, clock.now()),
                      add_plan(dbs[0]))
    OperationEngine(dbs[0], protection, NoAuthIdentity(), clock=clock, settings=SETTINGS).plan()
    clock.advance(3600)
    mine, theirs = store.due_fires(clock.now(), 10)
    expires = clock.now() + _dt.timedelta(seconds=60)
    store.claim(mine, "aio-host:111:0a0a0a0a", expires)
    store.claim(theirs, "aio-host-2:222:0b0b0b0b", expires)
    restarted = OperationEngine(dbs[0], protection, NoAuthIdentity(), host="aio-host", clock=clock,
                                settings=SETTINGS, executor=InlineExecutor())
    assert restarted.release_stale_claims() == 1
    assert restarted.tick().claimed == 1
    states = {f.id: (f.state, f.owner) for f in store.list_fires(None)}
    assert states[mine.id] == ("success", restarted.owner)
    assert states[theirs.id] == ("in_progress", "aio-host-2:222:0b0b0b0b")
