"""Runs protect, restore, verify and delete: one code path driven by :data:`RUNS`.

For each kind the table says which record moves (the checkpoint or the
restore/verification record) and through which statuses.  The runner builds the
resource graph's flow, runs it, then publishes the outcome in the bank (the
source of truth) before the catalogue and the operation log.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable, Collection
from concurrent import futures
from typing import TYPE_CHECKING, Any

from taskflow.persistence import models

from strongroom import exceptions
from strongroom.clock import Clock
from strongroom.context import RequestContext
from strongroom.db.api import Database
from strongroom.objects.records import CheckpointRecord, OperationLog, Resource, Restore
from strongroom.objects.status import CheckpointStatus, RestoreStatus
from strongroom.protection import gc
from strongroom.protection import graph as graph_mod
from strongroom.protection.checkpoint import BankLayout, CheckpointStore
from strongroom.protection.flows import SPECS, FlowPersistence, ResourceTracker, build_flow, run_flow
from strongroom.protection.gc import Sweeping
from strongroom.protection.leases import Fence
from strongroom.protection.plugin import Operation, OperationContext, OperationKind
from strongroom.protection.providers import Provider

if TYPE_CHECKING:
    from strongroom.protection.conductor import Claim

#: A hook's resume state, beside the resource's objects in the bank (protect, delete).
RESUME_STATE = "resume.json"

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What one kind of run changes: the record it moves and the statuses it uses."""

    kind: OperationKind
    record: str  # "checkpoint" | "restore"
    running: str
    success: str
    failure: str


RUNS: dict[OperationKind, RunSpec] = {
    OperationKind.PROTECT: RunSpec(OperationKind.PROTECT, "checkpoint", CheckpointStatus.PROTECTING,
                                   CheckpointStatus.AVAILABLE, CheckpointStatus.ERROR),
    OperationKind.DELETE: RunSpec(OperationKind.DELETE, "checkpoint", CheckpointStatus.DELETING,
                                  CheckpointStatus.DELETED, CheckpointStatus.ERROR_DELETING),
    OperationKind.RESTORE: RunSpec(OperationKind.RESTORE, "restore", RestoreStatus.IN_PROGRESS,
                                   RestoreStatus.SUCCESS, RestoreStatus.FAIL),
    OperationKind.VERIFY: RunSpec(OperationKind.VERIFY, "restore", RestoreStatus.IN_PROGRESS,
                                  RestoreStatus.SUCCESS, RestoreStatus.FAIL),
}


class Progress:
    """Counts bytes done and writes them to the catalogue at most once a second."""

    def __init__(self, total: int, flush: Callable[[int], None], clock: Clock, interval: float = 1.0) -> None:
        self.total = total
        self.done = 0
        self._flush = flush
        self._clock = clock
        self._interval = interval
        self._last = clock.monotonic()
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = self._clock.monotonic()
            if now - self._last < self._interval:
                return
            self._last = now
            done = self.done
        self._flush(min(done, self.total) if self.total else done)


@dataclasses.dataclass
class Job:
    """One accepted run.  Runs that write the bank (protect, delete) carry the ``fence`` of their lease epoch."""

    kind: OperationKind
    context: RequestContext
    provider: Provider
    checkpoint: CheckpointRecord
    log: OperationLog
    restore: Restore | None = None
    fence: Fence | None = None
    #: The jobboard claim of a run a conductor claimed (deployed mode).
    claim: Claim | None = None
    #: An earlier attempt of this job ran some hooks (a worker died): hooks may find a resume state.
    resumed: bool = False

    def may_write(self) -> bool:
        return (self.fence is None or self.fence.valid()) and not self.lost_claim()

    def lost_claim(self) -> bool:
        """True once another worker owns this run's job (this process was paused past its claim)."""
        return self.claim is not None and not self.claim.valid()


class _LostClaim(Exception):
    """Internal: the job is another worker's now; this run records nothing."""


class Runner:
    def __init__(self, db: Database, host: str, owner_id: str, flow_executor: futures.Executor,
                 persistence: FlowPersistence | None = None, clock: Clock | None = None, *,
                 sweeping: Sweeping | None = None, running: Callable[[], Collection[str]] = frozenset) -> None:
        self.db = db
        self.host = host
        self.owner_id = owner_id
        self.flow_executor = flow_executor
        self.persistence = persistence
        self.clock = clock or Clock()
        self.sweeping = sweeping if sweeping is not None else Sweeping()
        self.running = running

    # -- operation logs ------------------------------------------------------

    def start_log(self, kind: OperationKind, context: RequestContext, provider_id: str,
                  checkpoint: CheckpointRecord, restore_id: str | None = None,
                  scheduled_operation_id: str | None = None) -> OperationLog:
        now = self.clock.now()
        return self.db.create_operation_log(OperationLog(
            id=str(uuid.uuid4()), project_id=checkpoint.project_id, operation_type=str(kind),
            status=RUNS[kind].running, provider_id=provider_id, checkpoint_id=checkpoint.id,
            plan_id=checkpoint.plan_id, restore_id=restore_id, scheduled_operation_id=scheduled_operation_id,
            host=self.host, started_at=now, extra_info={"request_id": context.request_id}))

    # -- the one run ---------------------------------------------------------

    def run(self, job: Job, book: models.LogBook | None = None, flow_detail: models.FlowDetail | None = None) -> None:
        """Run ``job`` to its end (``book``/``flow_detail``: the saved flow of a claimed job, to resume)."""
        spec = RUNS[job.kind]
        store = CheckpointStore(job.provider.bank, self.clock)
        tracker = ResourceTracker(self._on_resource_change(job))
        results: dict[str, dict[str, Any]] = {}
        progress = self._progress(job, store)
        error: str | None = None
        try:
            if job.kind == OperationKind.DELETE:
                current = store.read(job.checkpoint.id)
                store.remove_indices(current)
            if job.kind == OperationKind.PROTECT and job.fence is not None:
                gc.wait_for_sweeps(job.provider.bank, job.fence.keeper.lease, job.checkpoint.project_id,
                                   self.sweeping, clock=self.clock, should_stop=lambda: not job.may_write())
            roots = graph_mod.deserialize(job.checkpoint.resource_graph)
            flow = build_flow(SPECS[job.kind], roots, self._preparer(job, store, progress, results), tracker)
            stored = run_flow(flow, self.flow_executor, self.persistence, f"{job.kind}-{job.log.id}",
                              describe=lambda: f"checkpoint {job.checkpoint.id}", book=book,
                              flow_detail=flow_detail, keep_book=job.lost_claim)
            for key, result in results.items():  # what hooks finished by an earlier attempt produced
                saved = stored.get(f"on_main:{key}")
                if isinstance(saved, dict):
                    result.update({k: v for k, v in saved.items() if k not in result})
        except Exception as err:  # noqa: BLE001 - every failure ends the run with a reason, never stuck
            error = str(err) if isinstance(err, exceptions.StrongroomError) else f"{type(err).__name__}: {err}"
            bank_failure = isinstance(err, exceptions.BankError) or (
                isinstance(err, exceptions.FlowFailed) and err.kwargs.get("bank_failure"))
            if bank_failure and job.provider.bank_description not in error:
                error = f"{job.provider.bank_description}: {error}"
            if job.fence is not None and not job.fence.valid():
                error = f"{job.fence.lost('go on')} (stopped: {error})"
            LOG.warning("%s of checkpoint %s failed: %s", job.kind, job.checkpoint.id, error)
        self._finish(job, spec, store, tracker, results, progress, error)

    def fail_unstarted(self, job: Job, reason: str) -> None:
        """End a run that could not start (its job could not be posted, or was reclaimed meanwhile)."""
        store = CheckpointStore(job.provider.bank, self.clock)
        LOG.warning("%s of checkpoint %s failed before it started: %s", job.kind, job.checkpoint.id, reason)
        self._finish(job, RUNS[job.kind], store, ResourceTracker(), {}, Progress(0, lambda n: None, self.clock),
                     reason)

    def _preparer(self, job: Job, store: CheckpointStore, progress: Progress,
                  results: dict[str, dict[str, Any]]) -> Callable[[Resource], tuple[Operation, OperationContext]]:
        read_only = job.kind in (OperationKind.RESTORE, OperationKind.VERIFY)
        params = (job.restore.parameters if job.restore else job.checkpoint.protection_plan.get("parameters")) or {}

        def prepare(resource: Resource) -> tuple[Operation, OperationContext]:
            plugin = job.provider.plugin_for(resource.type)
            load, save = self._resume_state(job, store, resource)
            ctx = OperationContext(
                context=job.context, kind=job.kind, checkpoint_id=job.checkpoint.id,
                project_id=job.checkpoint.project_id, resource=resource,
                parameters=resource_parameters(params, resource), bank=job.provider.bank,
                section=store.resource_section(job.checkpoint.id, resource.key, read_only=read_only),
                progress=progress.add, should_stop=lambda: not job.may_write(),
                resume_state=load(), save_resume_state=save)
            results[resource.key] = ctx.result
            return plugin.get_operation(job.kind, resource), ctx

        return prepare

    def _resume_state(self, job: Job, store: CheckpointStore, resource: Resource) -> tuple[
            Callable[[], dict[str, Any]], Callable[[dict[str, Any]], None]]:
        """Where a hook's resume state lives: beside the resource in the bank for runs that write
        the checkpoint, in the restore record for restores and verifications."""
        if job.restore is None:
            section = store.resource_section(job.checkpoint.id, resource.key)

            def load_bank() -> dict[str, Any]:
                if not job.resumed:
                    return {}  # a first attempt: nothing to look for
                try:
                    value = section.get_json(RESUME_STATE)
                except exceptions.BankObjectNotFound:
                    return {}
                return value if isinstance(value, dict) else {}

            def save_bank(state: dict[str, Any]) -> None:
                if state:
                    section.put_json(RESUME_STATE, state)
                else:
                    section.delete(RESUME_STATE)

            return load_bank, save_bank
        restore = job.restore
        lock = threading.Lock()

        def load_db() -> dict[str, Any]:
            value = (restore.extra_info.get("resume") or {}).get(resource.key)
            return dict(value) if isinstance(value, dict) else {}

        def save_db(state: dict[str, Any]) -> None:
            with lock:
                resume = dict(restore.extra_info.get("resume") or {})
                if state:
                    resume[resource.key] = state
                else:
                    resume.pop(resource.key, None)
                restore.extra_info = {**restore.extra_info, "resume": resume}
                self.db.update_restore(restore.id, {"extra_info": restore.extra_info})

        return load_db, save_db

    def _progress(self, job: Job, store: CheckpointStore) -> Progress:
        if job.kind == OperationKind.PROTECT:
            total = job.checkpoint.bytes_total

            def flush_checkpoint(done: int) -> None:
                self.db.update_checkpoint(job.checkpoint.id, {"bytes_done": done}, check=False)

            return Progress(total, flush_checkpoint, self.clock)
        total = 0
        if job.kind in (OperationKind.RESTORE, OperationKind.VERIFY):
            for node in graph_mod.iter_nodes(graph_mod.deserialize(job.checkpoint.resource_graph)):
                plugin = job.provider.plugin_for_type.get(node.resource.type)
                if plugin is not None:
                    total += plugin.saved_size(store.resource_section(job.checkpoint.id, node.resource.key,
                                                                      read_only=True))
        restore = job.restore

        def flush(done: int) -> None:
            if restore is not None:
                self.db.update_restore(restore.id, {"extra_info": {**restore.extra_info,
                                                                    "progress": {"bytes_total": total,
                                                                                 "bytes_done": done}}})

        return Progress(total, flush, self.clock)

    def _on_resource_change(self, job: Job) -> Callable[[str, str, str | None], None]:
        if job.restore is None:
            return lambda key, status, reason: None
        restore = job.restore
        lock = threading.Lock()

        def record(key: str, status: str, reason: str | None) -> None:
            with lock:
                restore.resources_status[key] = status
                if reason:
                    restore.resources_reason[key] = reason
                self.db.update_restore(restore.id, {"resources_status": dict(restore.resources_status),
                                                    "resources_reason": dict(restore.resources_reason)})

        return record

    def _finish(self, job: Job, spec: RunSpec, store: CheckpointStore, tracker: ResourceTracker,
                results: dict[str, dict[str, Any]], progress: Progress, error: str | None) -> None:
        status = spec.success if error is None else spec.failure
        if job.lost_claim():
            LOG.warning("%s of checkpoint %s stopped: its job was taken over by another worker", job.kind,
                        job.checkpoint.id)
            return
        try:
            if spec.record == "checkpoint":
                self._finish_checkpoint(job, store, progress, status, error)
            else:
                assert job.restore is not None
                extra = dict(job.restore.extra_info)
                extra["progress"] = {"bytes_total": progress.total,
                                     "bytes_done": progress.total if error is None else progress.done}
                if job.kind == OperationKind.RESTORE:
                    extra["restored_resources"] = {k: v for k, v in results.items() if v.get("id")}
                else:
                    extra["verified_resources"] = {k: v for k, v in results.items() if v}
                self.db.update_restore(job.restore.id, {
                    "status": status, "extra_info": extra,
                    "resources_status": dict(tracker.status), "resources_reason": dict(tracker.reason)})
        except _LostClaim as err:
            LOG.warning("%s of checkpoint %s will not publish: %s", job.kind, job.checkpoint.id, err)
            return
        except Exception as err:  # noqa: BLE001 - the bank may be gone: record it, never leave it running
            LOG.warning("could not record the end of %s %s: %s", job.kind, job.checkpoint.id, err)
            status = spec.failure
            error = (f"{error}; then could not record the failure in the bank: {err}" if error
                     else f"could not publish the result: {err}")
            if spec.record == "checkpoint":
                # The bank may still say protecting: garbage collection reclaims it once this run is over.
                self.db.update_checkpoint(job.checkpoint.id, {"status": status, "status_reason": error},
                                          check=False)
        self.db.update_operation_log(job.log.id, {
            "status": status, "ended_at": self.clock.now(), "error_info": error,
            "extra_info": {**job.log.extra_info, "resources": dict(tracker.status),
                           "reasons": dict(tracker.reason)}})

    def _finish_checkpoint(self, job: Job, store: CheckpointStore, progress: Progress, status: str,
                           error: str | None) -> None:
        cid = job.checkpoint.id
        if job.kind == OperationKind.PROTECT:
            if error is None:
                error = self._publish(job, store)
            if error is None:
                self.db.update_checkpoint(cid, {"status": CheckpointStatus.AVAILABLE, "bytes_done": progress.total,
                                                "status_reason": None})
            else:
                self.db.update_checkpoint(cid, {"status": CheckpointStatus.ERROR, "status_reason": error,
                                                "bytes_done": progress.done}, check=False)
                store.fail(cid, error, self.owner_id)
        elif job.kind == OperationKind.DELETE:
            if error is None:
                store.remove_objects(cid)
                store.mark_deleted(cid)
                self._sweep_after_delete(job)  # before the catalogue says deleted: its unique chunks are gone
                store.clear_active(self.owner_id, cid)
                self.db.update_checkpoint(cid, {"status": status, "status_reason": None})
            else:
                store.set_status(cid, status, error)
                store.clear_active(self.owner_id, cid)
                self.db.update_checkpoint(cid, {"status": status, "status_reason": error})

    def _publish(self, job: Job, store: CheckpointStore) -> str | None:
        """Commit a protect if the lease allows it; returns why not, or None once it is published."""
        cid = job.checkpoint.id
        if job.fence is not None:
            try:
                job.fence.check("publish checkpoint " + cid)
            except exceptions.LeaseLost as err:
                return str(err)
        if job.claim is not None:
            try:
                job.claim.check()
            except (exceptions.Conflict, exceptions.ServiceUnavailable) as err:
                job.claim.lose()  # the job is someone else's now (or cannot be told): its run publishes
                raise _LostClaim(str(err)) from err
        store.commit(cid, owner_id=self.owner_id if job.fence is not None else None)
        if store.bank.exists(BankLayout.reclaimed_key(cid)):
            # Garbage collection judged this writer dead while it was publishing: withdraw.
            reason = "reclaimed by garbage collection while its writer was publishing it"
            record = store.set_status(cid, CheckpointStatus.ERROR, reason, check=False)
            store.remove_indices(record)
            return reason
        return None

    def _sweep_after_delete(self, job: Job) -> None:
        """Remove the chunks the deleted checkpoint alone referenced (the sweep protocol of ``gc``)."""
        if job.fence is None:
            return
        collector = gc.GarbageCollector(job.provider.bank, job.fence.keeper.lease, running=self.running,
                                        sweeping=self.sweeping, name=job.provider.bank_description)
        try:
            sweep = collector.sweep_project(job.checkpoint.project_id, grace=0)
        except exceptions.StrongroomError as err:
            LOG.warning("chunks of deleted checkpoint %s are left to garbage collection: %s", job.checkpoint.id, err)
            return
        if sweep.skipped:
            LOG.info("chunks of deleted checkpoint %s are left to garbage collection: %s",
                     job.checkpoint.id, sweep.skipped)


def resource_parameters(parameters: dict[str, Any], resource: Resource) -> dict[str, Any]:
    """Parameters for one resource: ``type#id`` wins over ``type``."""
    by_id = parameters.get(resource.key)
    if isinstance(by_id, dict):
        return by_id
    by_type = parameters.get(resource.type)
    return by_type if isinstance(by_type, dict) else {}
