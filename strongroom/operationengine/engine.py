"""The operation engine: plans fires in the database, claims the due ones, runs them.

Any number of engines share one metadata store; none holds a schedule in memory.  Each pass
(:meth:`OperationEngine.tick`):

1. renews the claims of the fires this engine is running (every third of ``claim_timeout``);
2. plans: for every enabled operation planned less than ``plan_ahead`` seconds ahead, computes the next
   fire times from its trigger and inserts them, compare-and-set on the operation's ``plan_version``
   (fires whose window already closed, because every engine was down, are inserted as
   ``dropped_out_of_window``);
3. claims due fires (and fires whose claim expired, their engine having died) by compare-and-set on the
   fire's ``version``, no more than it has free run slots, and runs them (:mod:`.runs`); a planned fire
   whose window closed before anyone claimed it is logged ``dropped_out_of_window``.

Time comes from an injected :class:`~strongroom.clock.Clock` and runs go to an injected executor, so tests
drive several engines through a simulated week with :class:`~strongroom.clock.FakeClock` in seconds.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import threading
import uuid
from concurrent import futures
from typing import Any

from oslo_config import cfg

from strongroom import exceptions, metrics
from strongroom.clock import Clock
from strongroom.db.api import Database
from strongroom.db.scheduling import NEVER, SchedulingStore
from strongroom.notifications import DISABLED, Notifications
from strongroom.objects.scheduling import FireState, ScheduledFire, ScheduledOperation, Trigger
from strongroom.operationengine.identity import RunIdentity
from strongroom.operationengine.runs import FireRun, ProtectionClient, RunContext
from strongroom.operationengine.schedule import TimeSpec, schedule_for

LOG = logging.getLogger(__name__)

#: At most this many fires of one operation are planned in one pass (catching up after a long outage).
PLAN_BATCH = 500
MISSED = "no operation engine could start it before its window closed"


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    poll_interval: float = 5.0
    plan_ahead: float = 600.0
    claim_timeout: float = 60.0
    max_concurrent_runs: int = 4
    checkpoint_timeout: float = 24 * 3600.0
    log_retention_days: int = 90
    suspend_after_identity_failures: int = 3

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> EngineSettings:
        g = conf.operationengine
        return cls(poll_interval=float(g.poll_interval), plan_ahead=float(g.plan_ahead),
                   claim_timeout=float(g.claim_timeout), max_concurrent_runs=int(g.max_concurrent_runs),
                   checkpoint_timeout=float(g.checkpoint_timeout), log_retention_days=int(g.log_retention_days),
                   suspend_after_identity_failures=int(g.suspend_after_identity_failures))


@dataclasses.dataclass
class TickReport:
    planned: int = 0
    dropped: int = 0
    claimed: int = 0


class InlineExecutor(futures.Executor):
    """Runs each submitted call at once, in the caller's thread (tests)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        future: futures.Future[Any] = futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 - handed to the future, as a thread pool would
            future.set_exception(err)
        return future


def new_owner_id(host: str) -> str:
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class OperationEngine:
    def __init__(self, db: Database, protection: ProtectionClient, identity: RunIdentity, *,
                 host: str = "localhost", owner: str | None = None, settings: EngineSettings | None = None,
                 clock: Clock | None = None, executor: futures.Executor | None = None,
                 notifications: Notifications = DISABLED) -> None:
        self.db = db
        self.store = SchedulingStore(db)
        self.settings = settings or EngineSettings()
        self.clock = clock or Clock()
        self.host = host
        self.owner = owner or new_owner_id(host)
        self._executor = executor or futures.ThreadPoolExecutor(self.settings.max_concurrent_runs,
                                                                thread_name_prefix="sr-sched")
        self._env = RunContext(store=self.store, db=db, protection=protection, identity=identity,
                               clock=self.clock, owner=self.owner, claim_timeout=self.settings.claim_timeout,
                               poll_interval=min(self.settings.poll_interval, 1.0),
                               checkpoint_timeout=self.settings.checkpoint_timeout,
                               suspend_after=self.settings.suspend_after_identity_failures,
                               notifications=notifications)
        self._running: dict[str, str] = {}  # fire id -> claim token
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_renew = -1e18
        self._last_purge = -1e18

    # -- life cycle --------------------------------------------------------------

    def start(self) -> None:
        """Run :meth:`tick` in a thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._loop, name="sr-operationengine", daemon=True)
        self._thread.start()
        LOG.info("operation engine %s started", self.owner)

    def _loop(self) -> None:
        interval = min(self.settings.poll_interval, self.settings.claim_timeout / 3)
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a failed pass (database away) is retried at the next one
                LOG.exception("operation engine pass failed")
            self._stop.wait(interval)

    def stop(self, wait: bool = True, timeout: float | None = 30.0) -> None:
        """Stop planning and claiming; with ``wait``, let running fires finish (else their claims expire and
        another engine takes them over)."""
        self._stop.set()
        self._env.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._executor.shutdown(wait=wait, cancel_futures=True)

    def release_stale_claims(self) -> int:
        """Expire now the claims of earlier engines of this host (the all-in-one after a restart, which its
        state-directory lock proves alone): what its previous process was running is taken over at once.
        Engines of other hosts sharing the database keep theirs."""
        return self.store.release_claims(self.owner, self.host + ":")

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._running)

    # -- one pass ------------------------------------------------------------------

    def tick(self) -> TickReport:
        """One pass: renew claims, plan, drop and claim due fires (one read transaction for both lists)."""
        report = TickReport()
        self.renew_claims()
        now = self.clock.now()
        free = self.settings.max_concurrent_runs - self.running
        to_plan, due = self.store.poll(now, self._horizon(now), due_limit=max(free, 0) + 50)
        if to_plan:
            report.planned = self._plan(to_plan, now)
            due = self.store.due_fires(now, limit=max(free, 0) + 50)  # may include what was just planned
        report.dropped, report.claimed = self._dispatch(due, now)
        self._purge_history()
        return report

    def _horizon(self, now: _dt.datetime) -> _dt.datetime:
        return now + _dt.timedelta(seconds=self.settings.plan_ahead)

    def renew_claims(self, force: bool = False) -> None:
        mono = self.clock.monotonic()
        if not force and mono - self._last_renew < self.settings.claim_timeout / 3:
            return
        self._last_renew = mono
        with self._lock:
            tokens = list(self._running.values())
        if tokens:
            expires = self.clock.now() + _dt.timedelta(seconds=self.settings.claim_timeout)
            self.store.renew(tokens, expires)

    def plan(self) -> int:
        """Plan the fires of every operation due for planning; returns how many fires were inserted."""
        now = self.clock.now()
        return self._plan(self.store.operations_to_plan(self._horizon(now)), now)

    def _plan(self, to_plan: list[tuple[ScheduledOperation, Trigger]], now: _dt.datetime) -> int:
        horizon = self._horizon(now)
        inserted = 0
        for op, trigger in to_plan:
            try:
                spec = TimeSpec.from_properties(trigger.properties)
                schedule = schedule_for(spec)
            except (exceptions.InvalidInput, KeyError, ValueError) as err:
                LOG.error("trigger %s of scheduled operation %s cannot be read: %s", trigger.id, op.id, err)
                continue
            times: list[_dt.datetime] = []
            nxt: _dt.datetime | None = None
            for t in schedule.iter_after(op.planned_until or now):
                if t > horizon or len(times) == PLAN_BATCH:
                    nxt = t
                    break
                times.append(t)
            if nxt is None:
                until = NEVER  # the trigger ended: nothing to plan until it is changed
            elif len(times) == PLAN_BATCH:
                until = times[-1]
            else:
                # Nothing fires between the horizon and the next fire: plan again just before it.
                until = nxt - _dt.timedelta(microseconds=1)
            window = _dt.timedelta(seconds=spec.window)
            rows = [(t, t + window, FireState.PLANNED.value if t + window >= now
                     else FireState.DROPPED_OUT_OF_WINDOW.value) for t in times]
            if self.store.extend_plan(op, until, rows):
                inserted += len(rows)
        return inserted

    def dispatch(self) -> tuple[int, int]:
        """Drop expired fires, claim due ones for free run slots; returns (dropped, claimed)."""
        now = self.clock.now()
        free = self.settings.max_concurrent_runs - self.running
        return self._dispatch(self.store.due_fires(now, limit=max(free, 0) + 50), now)

    def _dispatch(self, due: list[ScheduledFire], now: _dt.datetime) -> tuple[int, int]:
        free = self.settings.max_concurrent_runs - self.running
        dropped = claimed = 0
        for fire in due:
            if fire.state == FireState.PLANNED and now > fire.window_end:
                if self.store.drop(fire, MISSED) is not None:
                    metrics.scheduled_fire(FireState.DROPPED_OUT_OF_WINDOW.value)
                    dropped += 1
                continue
            if free <= 0:
                continue
            expires = now + _dt.timedelta(seconds=self.settings.claim_timeout)
            mine = self.store.claim(fire, self.owner, expires)
            if mine is None:
                continue  # another engine was faster
            if fire.state == FireState.IN_PROGRESS:
                LOG.warning("engine %s takes over scheduled fire %s from %s", self.owner, fire.id, fire.owner)
            claimed += 1
            free -= 1
            self._submit(mine)
        return dropped, claimed

    def _submit(self, fire: ScheduledFire) -> None:
        assert fire.claim_token is not None
        with self._lock:
            self._running[fire.id] = fire.claim_token
        try:
            future = self._executor.submit(FireRun(self._env, fire).run)
        except RuntimeError:  # shutting down: the claim expires and another engine takes it
            self._done(fire.id)
            return
        future.add_done_callback(lambda _f: self._done(fire.id))

    def _done(self, fire_id: str) -> None:
        with self._lock:
            self._running.pop(fire_id, None)

    def _purge_history(self) -> None:
        days = self.settings.log_retention_days
        mono = self.clock.monotonic()
        if days <= 0 or mono - self._last_purge < 3600:
            return
        self._last_purge = mono
        self.store.purge_history(self.clock.now() - _dt.timedelta(days=days))
