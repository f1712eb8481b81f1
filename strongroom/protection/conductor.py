"""Work distribution in the deployed topology: a taskflow jobboard and a conductor in each worker.

The protection service that accepts a request (any worker: RPC spreads calls
over them) records it, saves a taskflow logbook for its flow in the SQL
persistence and posts a job naming it on the jobboard (Redis).  Every worker
runs a :class:`Conductor` that claims jobs while it has room and its service
is not disabled, and runs them on its own pool.

A claim expires ``claim_expiry`` seconds after it was last extended (by the
Redis server's clock); the conductor extends the claims of its running jobs
every third of that.  When a worker dies, its claims expire, another
conductor claims the jobs, and the engine resumes each flow from its saved
atom states: finished hooks are skipped, the hook that was running is run
again (hooks are idempotent; plugins keep what a rerun must clean up in their
resume state).  A worker that notices it lost a claim (it was paused past the
expiry) stops that run without publishing or recording anything: the job is
someone else's now.  A worker stopped gracefully waits for its runs, then
leaves the claims of unfinished ones to expire (abandoning a job whose run may
still write would let two workers run it at once).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from taskflow import exceptions as tf_exceptions
from taskflow.jobs import backends as jobboard_backends
from taskflow.persistence import models

from strongroom import exceptions
from strongroom.objects.kinds import OperationKind
from strongroom.protection.flows import FlowPersistence
from strongroom.redaction import redact_url_credentials

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """What a posted job says: enough for any worker to rebuild the run from the catalogue."""

    kind: OperationKind
    provider_id: str
    checkpoint_id: str
    log_id: str
    context: dict[str, Any]
    restore_id: str | None = None
    flow_uuid: str = ""

    def details(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "kind": str(self.kind)}

    @classmethod
    def from_details(cls, details: dict[str, Any]) -> JobSpec:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in details.items() if k in fields}
        values["kind"] = OperationKind(values["kind"])
        return cls(**values)


class Claim:
    """This worker's claim on one job: ``valid()`` until the conductor sees it lost or released."""

    def __init__(self, board: JobBoard, job: Any, who: str) -> None:
        self.board = board
        self.job = job
        self.who = who
        self._lost = threading.Event()

    def valid(self) -> bool:
        return not self._lost.is_set()

    def lose(self) -> None:
        self._lost.set()

    def check(self) -> None:
        """Ask the jobboard whether the job is still ours (before publishing); raise if not."""
        if self._lost.is_set():
            raise exceptions.Conflict(reason=f"job {self.job.uuid} is no longer claimed by {self.who}")
        try:
            owner = self.board.owner(self.job)
        except tf_exceptions.TaskFlowException as err:
            raise exceptions.ServiceUnavailable(what="the jobboard", reason=str(err)) from err
        if owner != self.who:
            self._lost.set()
            raise exceptions.Conflict(reason=f"job {self.job.uuid} was taken over by {owner or 'nobody'}")


class JobBoard:
    """The jobboard (``[coordination] jobboard_url``) and the logbooks of the flows it hands out."""

    def __init__(self, url: str, namespace: str, persistence: FlowPersistence) -> None:
        self.persistence = persistence
        self.url_for_display = _redact(url)
        self._url = url
        self._load_prefix = f"{namespace}.strongroom-load."
        self._redis: Any = None
        try:
            self.board = jobboard_backends.fetch(namespace, {"board": url, "namespace": namespace},
                                                 persistence=persistence.backend)
            self.board.connect()
        except Exception as err:  # noqa: BLE001 - any driver error: one clear line naming the board
            raise exceptions.ServiceUnavailable(what=f"jobboard {self.url_for_display}",
                                                reason=_redact(str(err))) from err

    def post(self, spec: JobSpec) -> JobSpec:
        """Save the run's logbook, then post the job (returns the spec with its flow's uuid)."""
        book, detail = self.persistence.start(f"{spec.kind}-{spec.log_id}")
        posted = dataclasses.replace(spec, flow_uuid=detail.uuid)
        try:
            self.board.post(f"{spec.kind}-{spec.checkpoint_id}", book=book, details=posted.details())
        except tf_exceptions.TaskFlowException as err:
            self.persistence.finish(book)
            raise exceptions.ServiceUnavailable(what=f"jobboard {self.url_for_display}", reason=str(err)) from err
        return posted

    def owner(self, job: Any) -> str | None:
        """Who holds the claim on ``job`` now (None: nobody; taskflow's Redis board raises for that)."""
        try:
            return self.board.find_owner(job)  # type: ignore[no-any-return]
        except TypeError:  # taskflow cannot decode a missing owner key
            return None

    def flow_detail(self, job: Any, spec: JobSpec) -> tuple[models.LogBook | None, models.FlowDetail | None]:
        book = job.book
        if book is None:
            return None, None
        for detail in book:
            if detail.uuid == spec.flow_uuid:
                return book, detail
        return book, None

    def backlog(self) -> tuple[int, int]:
        """(unclaimed, claimed) jobs on the board now (the metrics' ``strongroom_jobboard_jobs``)."""
        unclaimed = claimed = 0
        for job in self.board.iterjobs(ensure_fresh=True):
            if self.owner(job) is None:
                unclaimed += 1
            else:
                claimed += 1
        return unclaimed, claimed

    # -- the workers' loads (who runs how many jobs, with room for more) ---------------

    def _client(self) -> Any:
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(self._url, socket_timeout=10)
        return self._redis

    def publish_load(self, who: str, running: int, ttl: float) -> None:
        """Say that ``who`` runs ``running`` jobs and may claim more, for ``ttl`` seconds (a worker that
        stops saying so, dead or full, drops out of the others' view by itself)."""
        self._client().set(self._load_prefix + who, str(running), px=max(int(ttl * 1000), 100))

    def withdraw_load(self, who: str) -> None:
        with contextlib.suppress(Exception):
            self._client().delete(self._load_prefix + who)

    def loads(self) -> dict[str, int]:
        """The workers that may claim now, with how many jobs each runs."""
        client = self._client()
        keys = list(client.scan_iter(match=self._load_prefix + "*", count=100))
        out: dict[str, int] = {}
        for key, value in zip(keys, client.mget(keys) if keys else [], strict=True):
            if value is not None:
                name = key.decode() if isinstance(key, bytes) else str(key)
                out[name[len(self._load_prefix):]] = int(value)
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.board.close()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                self._redis.close()


Runner = Callable[[JobSpec, Claim, "models.LogBook | None", "models.FlowDetail | None"], None]


class Conductor:
    """Claims jobs for this worker and runs them with ``run(spec, claim, book, flow_detail)``.

    ``run`` may raise ``ServiceUnavailable`` (e.g. the provider's bank is
    unreachable from here): the job is then abandoned for another worker or a
    later attempt.  Any other outcome consumes the job: the run has recorded
    success or failure in the catalogue.
    """

    def __init__(self, board: JobBoard, run: Runner, *, who: str, capacity: int, claim_expiry: float,
                 poll_interval: float = 1.0, may_claim: Callable[[], bool] = lambda: True) -> None:
        self.board = board
        self._run = run
        self.who = who
        self.capacity = capacity
        self.claim_expiry = claim_expiry
        self.poll_interval = poll_interval
        self._may_claim = may_claim
        self._claims: dict[str, Claim] = {}
        self._lock = threading.Lock()
        self._stop_claiming = threading.Event()
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(capacity, thread_name_prefix="sr-conductor")
        self._threads: list[threading.Thread] = []
        self._refused: set[str] = set()

    def start(self) -> None:
        for target, name in ((self._claim_loop, "sr-claim"), (self._keepalive_loop, "sr-keepalive")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def running(self) -> int:
        with self._lock:
            return len(self._claims)

    # -- claiming ---------------------------------------------------------------

    def _claim_loop(self) -> None:
        while not self._stop_claiming.is_set():
            try:
                self.claim_some()
            except Exception:  # noqa: BLE001 - the jobboard may be down: keep trying
                LOG.warning("cannot look for jobs on %s", self.board.url_for_display, exc_info=True)
            self._stop_claiming.wait(self.poll_interval)

    def claim_some(self) -> int:
        """Claim unclaimed jobs up to this worker's room, one at a time, each only while no other worker that
        may claim runs fewer jobs (their loads on the board, refreshed every poll): simultaneous jobs spread
        evenly over idle workers instead of filling the first one.  Returns how many were claimed."""
        if self.running() >= self.capacity or not self._may_claim():
            self.board.withdraw_load(self.who)  # full or held back: the others do not wait for this worker
            return 0
        ttl = max(3 * self.poll_interval, 1.0)
        self.board.publish_load(self.who, self.running(), ttl)
        claimed = 0
        for job in self.board.board.iterjobs(only_unclaimed=True, ensure_fresh=True):
            if self._stop_claiming.is_set() or self.running() >= self.capacity:
                break
            mine = self.running()
            if any(n < mine for who, n in self.board.loads().items() if who != self.who):
                break  # a less-loaded worker takes it at its next poll
            try:
                self.board.board.claim(job, self.who, expiry=self.claim_expiry)
            except (tf_exceptions.UnclaimableJob, tf_exceptions.NotFound):
                continue
            claim = Claim(self.board, job, self.who)
            with self._lock:
                self._claims[job.uuid] = claim
            self.board.publish_load(self.who, self.running(), ttl)
            LOG.info("claimed job %s (%s)", job.uuid, job.name)
            self._pool.submit(self._dispatch, claim)
            claimed += 1
        if self.running() >= self.capacity:
            self.board.withdraw_load(self.who)
        return claimed

    def _dispatch(self, claim: Claim) -> None:
        job = claim.job
        consume = True
        try:
            spec = JobSpec.from_details(dict(job.details or {}))
            book, detail = self.board.flow_detail(job, spec)
            self._run(spec, claim, book, detail)
        except exceptions.ServiceUnavailable as err:
            consume = False
            if job.uuid not in self._refused:
                LOG.warning("job %s left for another worker: %s", job.uuid, err)
                self._refused.add(job.uuid)
        except Exception:  # noqa: BLE001 - recorded by the run; the job is done either way
            LOG.exception("job %s failed", job.uuid)
        finally:
            with self._lock:
                self._claims.pop(job.uuid, None)
            if consume:
                self._refused.discard(job.uuid)
            self._finish(claim, consume)

    def _finish(self, claim: Claim, consume: bool) -> None:
        if not claim.valid():
            return  # someone else's job now
        try:
            if consume:
                self.board.board.consume(claim.job, self.who)
            else:
                self.board.board.abandon(claim.job, self.who)
        except (tf_exceptions.NotFound, tf_exceptions.UnclaimableJob):
            pass  # expired or taken over meanwhile
        except Exception:  # noqa: BLE001 - its claim expires by itself
            LOG.warning("could not %s job %s", "consume" if consume else "abandon", claim.job.uuid, exc_info=True)

    # -- keeping claims -----------------------------------------------------------

    def _keepalive_loop(self) -> None:
        while not self._stop.wait(self.claim_expiry / 3):
            self.extend_claims()

    def extend_claims(self) -> None:
        with self._lock:
            claims = list(self._claims.values())
        for claim in claims:
            try:
                owner = self.board.owner(claim.job)
                if owner != self.who:
                    LOG.error("lost the claim on job %s to %s: its run stops", claim.job.uuid, owner or "nobody")
                    claim.lose()
                    continue
                claim.job.extend_expiry(self.claim_expiry)
            except Exception:  # noqa: BLE001 - tried again at the next beat; the claim may expire meanwhile
                LOG.warning("could not extend the claim on job %s", claim.job.uuid, exc_info=True)

    def stop(self, wait: float = 30.0) -> None:
        """Stop claiming and extending; wait up to ``wait`` seconds for the running jobs.

        Jobs still running when the process then exits are not abandoned: a job
        abandoned while its run still writes could be resumed elsewhere at the
        same time.  Their claims expire instead, and other workers resume them.
        """
        self._stop_claiming.set()
        self.board.withdraw_load(self.who)
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + wait
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        self._stop.set()  # no more extensions: unfinished jobs go to other workers once their claims expire
        for thread in self._threads:
            thread.join(timeout=10)


def _redact(text: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:***@host`` (see :mod:`strongroom.redaction`)."""
    return redact_url_credentials(text)
