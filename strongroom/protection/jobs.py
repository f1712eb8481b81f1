"""The runs a protection service has accepted: which checkpoints it works on, and where each run goes.

Embedded (no jobboard), a run goes to this process's bounded pool.  Deployed,
it is posted on the jobboard (:mod:`strongroom.protection.conductor`) and any
worker's conductor claims it; :meth:`JobTracker.run_claimed` is what a
conductor calls.  The tracker knows which checkpoints this process is writing
(or has posted a job for), so that garbage collection never takes their active
markers for orphans.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent import futures

from taskflow.persistence import models

from strongroom import context as sr_context
from strongroom import exceptions
from strongroom.context import RequestContext
from strongroom.db.api import Database
from strongroom.objects.kinds import LoggedOperation, OperationKind
from strongroom.protection.catalogue import Catalogues
from strongroom.protection.conductor import Claim, JobBoard, JobSpec
from strongroom.protection.job import Job
from strongroom.protection.leases import BankLeases
from strongroom.protection.providers import ProviderRegistry
from strongroom.protection.runner import Runner

LOG = logging.getLogger(__name__)

#: The kinds of run that write the checkpoint, and the bank operation each one marks.
_WRITES: dict[OperationKind, LoggedOperation] = {OperationKind.PROTECT: LoggedOperation.PROTECT,
                                               OperationKind.DELETE: LoggedOperation.DELETE}


class ActiveCheckpoints:
    """The checkpoints this process is writing, or has posted a job for and no conductor has taken over
    yet (their active markers are still ours, and live): garbage collection must not take them for orphans."""

    def __init__(self) -> None:
        self._running: set[str] = set()
        self._posted: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._running | self._posted)

    def claim(self, checkpoint_id: str) -> None:
        """Mark ``checkpoint_id`` as being written here; ``Conflict`` if it already is."""
        with self._lock:
            if checkpoint_id in self._running:
                raise exceptions.Conflict(reason=f"checkpoint {checkpoint_id} is already being worked on")
            self._running.add(checkpoint_id)

    def release(self, checkpoint_id: str) -> None:
        with self._lock:
            self._running.discard(checkpoint_id)

    def posted(self, checkpoint_id: str) -> None:
        """Its job is on the jobboard: still ours until a conductor takes it over."""
        with self._lock:
            self._posted.add(checkpoint_id)
            self._running.discard(checkpoint_id)

    def taken_over(self, checkpoint_ids: set[str]) -> None:
        with self._lock:
            self._posted -= checkpoint_ids

    def posted_now(self) -> set[str]:
        with self._lock:
            return set(self._posted)


class _Release:
    """Lets go of one run's checkpoint in :class:`ActiveCheckpoints`, once: the runner calls it as soon as the
    run's end is recorded and the tracker again when the run returns, and the second call must not release
    a claim another operation has taken on the checkpoint in between."""

    def __init__(self, active: ActiveCheckpoints, checkpoint_id: str) -> None:
        self._active = active
        self._checkpoint_id = checkpoint_id
        self._done = False
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._active.release(self._checkpoint_id)


class JobTracker:
    """Accepted runs of one process: its own pool, or the jobboard hand-off."""

    def __init__(self, db: Database, registry: ProviderRegistry, runner: Runner, leases: BankLeases,
                 catalogues: Catalogues, active: ActiveCheckpoints, *, owner_id: str, host: str,
                 max_concurrent: int = 4, board: JobBoard | None = None) -> None:
        self.db = db
        self.registry = registry
        self.runner = runner
        self.leases = leases
        self.catalogues = catalogues
        self.owner_id = owner_id
        self.host = host
        self.board = board
        self.active = active
        self._pool = futures.ThreadPoolExecutor(max_concurrent, thread_name_prefix="sr-job")
        self._pending: set[futures.Future[None]] = set()

    def submit(self, job: Job) -> None:
        """Start ``job``: post it on the jobboard, or run it on this process's pool."""
        if self.board is not None:
            self._post(job)
            return
        if job.fence is not None:
            job.release = _Release(self.active, job.checkpoint.id)

        def run() -> None:
            try:
                self.runner.run(job)
            finally:
                if job.release is not None:
                    job.release()

        future = self._pool.submit(run)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait for every run accepted here to end (tests and clean shutdown)."""
        futures.wait(list(self._pending), timeout=timeout)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    # -- the jobboard (deployed mode) -------------------------------------------

    def _post(self, job: Job) -> None:
        """Hand ``job`` to whichever worker's conductor claims it; on failure the run ends failed."""
        assert self.board is not None
        spec = JobSpec(kind=job.kind, provider_id=job.provider.id, checkpoint_id=job.checkpoint.id,
                       log_id=job.log.id, context=job.context.to_dict(),
                       restore_id=job.restore.id if job.restore else None)
        cid = job.checkpoint.id
        if job.fence is not None:
            self.active.posted(cid)
        try:
            self.board.post(spec)
        except exceptions.ServiceUnavailable as err:
            self.active.taken_over({cid})
            self.runner.fail_unstarted(job, f"could not hand the job to the protection workers: {err}")
            raise

    def run_claimed(self, spec: JobSpec, claim: Claim, book: models.LogBook | None,
                    flow_detail: models.FlowDetail | None) -> None:
        """Run a job this worker's conductor claimed (posted by any worker, maybe begun by a dead one)."""
        kind = OperationKind(spec.kind)
        provider = self.registry.get(spec.provider_id)
        log = self.db.get_operation_log(spec.log_id)
        if log.ended_at is not None:
            return  # finished before its worker could consume the job
        checkpoint = self.db.get_checkpoint(spec.checkpoint_id, provider_id=spec.provider_id)
        restore = self.db.get_restore(spec.restore_id) if spec.restore_id else None
        job = Job(kind, RequestContext.from_dict(spec.context), provider, checkpoint, log, restore=restore,
                  claim=claim)
        operation = _WRITES.get(kind)
        if operation is not None:
            job.fence = self.leases.fence(provider)  # ServiceUnavailable: left for another worker
            self.active.claim(checkpoint.id)
            try:
                job.checkpoint = self.catalogues.of(provider).take_over(checkpoint.id, self.owner_id, operation)
            except exceptions.Conflict as err:
                self.active.release(checkpoint.id)
                self.runner.fail_unstarted(job, str(err))
                return
            except BaseException:
                self.active.release(checkpoint.id)
                raise
            self.active.taken_over({checkpoint.id})
            job.release = _Release(self.active, checkpoint.id)
        job.resumed = bool(flow_detail is not None and any(True for _ in flow_detail))
        self.db.update_operation_log(log.id, {"host": self.host, "extra_info": {
            **log.extra_info, "worker": self.owner_id, "resumed": job.resumed}})
        job.log = self.db.get_operation_log(log.id)
        try:
            self.runner.run(job, book=book, flow_detail=flow_detail)
        finally:
            if job.release is not None:
                job.release()

    def forget_taken_over(self) -> None:
        """Posted checkpoints whose marker is no longer ours were taken over by a conductor: forget them."""
        before = self.active.posted_now()  # only these may go: a job posted during the listing stays
        if not before:
            return
        ours: set[str] = set()
        for provider in self.registry.providers():
            try:
                ours.update(m.checkpoint_id for m in self.catalogues.of(provider).store.active_markers()
                            if m.owner_id == self.owner_id)
            except exceptions.StrongroomError:
                return  # cannot tell for this bank now: keep them all
        self.active.taken_over(before - ours)

    # -- copies -------------------------------------------------------------------------

    def submit_copy(self, checkpoint_id: str, run: Callable[[], object]) -> None:
        """Run a copy on this process's pool, in either mode: a copy is not posted on the jobboard (its
        worker's death leaves a zombie that the target's garbage collection reclaims; ``doc/copy.md``).
        ``checkpoint_id`` was claimed in :attr:`active` by the caller and is released when it ends."""

        @sr_context.carrying  # under the context of the copy's request
        def go() -> None:
            try:
                run()
            finally:
                self.active.release(checkpoint_id)

        future = self._pool.submit(go)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
