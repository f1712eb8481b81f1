"""The one driver of every run: protect, restore, verify and delete.

For each job the driver takes the :class:`~strongroom.protection.runs.Run` of
its kind, lets it prepare the bank, builds the resource graph's flow, runs it,
then has the run record the outcome (the bank first, through the checkpoint
catalogue, then the database) before the operation log is closed.  Each run is
timed into the duration histogram, the bytes a protect, restore or verify moves
are counted as it goes (:mod:`strongroom.metrics`), and its start and end are notified
(:mod:`strongroom.notifications`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection
from concurrent import futures
from typing import Any

from taskflow.persistence import models

from strongroom import context as sr_context
from strongroom import exceptions, metrics
from strongroom.clock import Clock
from strongroom.context import RequestContext
from strongroom.db.api import Database
from strongroom.notifications import DISABLED, END, ERROR, START, Notifications
from strongroom.objects.kinds import OperationKind
from strongroom.objects.records import CheckpointRecord, OperationLog, Resource
from strongroom.protection import admission
from strongroom.protection import graph as graph_mod
from strongroom.protection.catalogue import Catalogues
from strongroom.protection.flows import SPECS, FlowPersistence, ResourceTracker, build_flow, run_flow
from strongroom.protection.gc import Sweeping
from strongroom.protection.job import Job
from strongroom.protection.plugin import Operation, OperationContext
from strongroom.protection.progress import Progress
from strongroom.protection.runs import RUNS, LostClaim, Run, RunEnv

LOG = logging.getLogger(__name__)


class Runner:
    def __init__(self, db: Database, host: str, owner_id: str, flow_executor: futures.Executor,
                 persistence: FlowPersistence | None, clock: Clock, *, catalogues: Catalogues,
                 sweeping: Sweeping, running: Callable[[], Collection[str]] = frozenset,
                 notifications: Notifications = DISABLED) -> None:
        self.db = db
        self.host = host
        self.owner_id = owner_id
        self.flow_executor = flow_executor
        self.persistence = persistence
        self.clock = clock
        self.catalogues = catalogues
        self.sweeping = sweeping
        self.running = running
        self.notifications = notifications

    def _run_of(self, job: Job) -> Run:
        env = RunEnv(self.db, self.catalogues.of(job.provider), self.clock, self.owner_id,
                     sweeping=self.sweeping, running=self.running)
        return RUNS[job.kind](job, env)

    # -- operation logs ------------------------------------------------------

    def start_log(self, kind: OperationKind, context: RequestContext, provider_id: str,
                  checkpoint: CheckpointRecord, restore_id: str | None = None,
                  scheduled_operation_id: str | None = None) -> OperationLog:
        now = self.clock.now()
        return self.db.create_operation_log(OperationLog(
            id=str(uuid.uuid4()), project_id=checkpoint.project_id, operation_type=str(kind),
            status=RUNS[kind].running, provider_id=provider_id, checkpoint_id=checkpoint.id,
            plan_id=checkpoint.plan_id, restore_id=restore_id, scheduled_operation_id=scheduled_operation_id,
            host=self.host, started_at=now,
            # Who asked: the caller, or the owner a scheduled run acts as (through its trust).
            extra_info={"request_id": context.request_id, "user_id": context.user_id}))

    # -- the one run ---------------------------------------------------------

    def run(self, job: Job, book: models.LogBook | None = None, flow_detail: models.FlowDetail | None = None) -> None:
        """Run ``job`` to its end (``book``/``flow_detail``: the saved flow of a claimed job, to resume), its
        lines under the context of the request that started it."""
        with sr_context.current(job.context):
            self._run(job, book, flow_detail)

    def _run(self, job: Job, book: models.LogBook | None, flow_detail: models.FlowDetail | None) -> None:
        LOG.info("%s of checkpoint %s started%s", job.kind, job.checkpoint.id, " (resumed)" if job.resumed else "")
        run = self._run_of(job)
        tracker = ResourceTracker(run.on_resource_change, self.clock)
        results: dict[str, dict[str, Any]] = {}
        prepared: list[tuple[Operation, OperationContext]] = []
        progress = Progress(0, lambda n: None, self.clock)
        transfer = metrics.Transfer(job.provider.id, str(job.kind))
        started = self.clock.monotonic()
        self.notifications.send(job.context, run.event, START, _payload(run))
        error: str | None = None
        try:
            progress = run.progress()
            run.before_flow()
            roots = graph_mod.deserialize(job.checkpoint.resource_graph)
            flow = build_flow(SPECS[job.kind], roots, self._preparer(run, progress, results, prepared, transfer),
                              tracker)
            stored = run_flow(flow, self.flow_executor, self._persistence_for(job), f"{job.kind}-{job.log.id}",
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
        recorded, error = self._finish(run, tracker, results, progress, error)
        if job.release is not None:
            job.release()
        if recorded and error is None and job.kind is OperationKind.PROTECT:
            _published(job.checkpoint.id, prepared)
        if recorded:  # else the worker that took the job over says how it ended
            seconds = self.clock.monotonic() - started
            metrics.observe_run(str(job.kind), job.provider.id, seconds, ok=error is None)
            self.notifications.send(job.context, run.event, END if error is None else ERROR, _payload(
                run, error=error, seconds=seconds, progress=progress, transfer=transfer))

    def _persistence_for(self, job: Job) -> FlowPersistence | None:
        """Where ``job``'s flow is saved as it runs: only a job a jobboard handed out, which another worker
        resumes from its saved flow if this one dies.  A run of this process's own pool is never resumed
        (after a restart, crash recovery and garbage collection end it), so saving its flow would only
        cost a dozen committed metadata writes per run."""
        return self.persistence if job.claim is not None else None

    def fail_unstarted(self, job: Job, reason: str) -> None:
        """End a run that could not start (its job could not be posted, or was reclaimed meanwhile)."""
        with sr_context.current(job.context):
            self._fail_unstarted(job, reason)

    def _fail_unstarted(self, job: Job, reason: str) -> None:
        LOG.warning("%s of checkpoint %s failed before it started: %s", job.kind, job.checkpoint.id, reason)
        run = self._run_of(job)
        recorded, error = self._finish(run, ResourceTracker(clock=self.clock), {},
                                       Progress(0, lambda n: None, self.clock), reason)
        if recorded:
            self.notifications.send(job.context, run.event, ERROR, _payload(run, error=error or reason, seconds=0.0))

    def _preparer(self, run: Run, progress: Progress, results: dict[str, dict[str, Any]],
                  prepared: list[tuple[Operation, OperationContext]], transfer: metrics.Transfer
                  ) -> Callable[[Resource], tuple[Operation, OperationContext]]:
        job = run.job
        params = run.parameters()

        def prepare(resource: Resource) -> tuple[Operation, OperationContext]:
            plugin = job.provider.plugin_for(resource.type)
            load, save = run.resume_state(resource)
            ctx = OperationContext(
                context=job.context, kind=job.kind, checkpoint_id=job.checkpoint.id,
                project_id=job.checkpoint.project_id, resource=resource,
                parameters=resource_parameters(params, resource), bank=job.provider.bank,
                section=run.section(resource), progress=progress.add, transferred=transfer.add,
                should_stop=lambda: not job.may_write(),
                resume_state=load(), save_resume_state=save)
            results[resource.key] = ctx.result
            operation = plugin.get_operation(job.kind, resource)
            prepared.append((operation, ctx))
            return operation, ctx

        return prepare

    def _finish(self, run: Run, tracker: ResourceTracker, results: dict[str, dict[str, Any]],
                progress: Progress, error: str | None) -> tuple[bool, str | None]:
        """Record the run's end; returns whether this run recorded it (not when another worker took its job
        over) and its final error (None: it succeeded; a protect: its checkpoint is published)."""
        job = run.job
        if job.lost_claim():
            LOG.warning("%s of checkpoint %s stopped: its job was taken over by another worker", job.kind,
                        job.checkpoint.id)
            return False, error
        try:
            error = run.record(tracker, results, progress, error)
        except LostClaim as err:
            LOG.warning("%s of checkpoint %s will not publish: %s", job.kind, job.checkpoint.id, err)
            return False, str(err)
        except Exception as err:  # noqa: BLE001 - the bank may be gone: record it, never leave it running
            LOG.warning("could not record the end of %s %s: %s", job.kind, job.checkpoint.id, err)
            error = (f"{error}; then could not record the failure in the bank: {err}" if error
                     else f"could not publish the result: {err}")
            run.record_unrecorded(error)
        self.db.update_operation_log(job.log.id, {
            "status": run.success if error is None else run.failure, "ended_at": self.clock.now(),
            "error_info": error, "extra_info": {**job.log.extra_info, "resources": dict(tracker.status),
                                                "reasons": dict(tracker.reason)}})
        LOG.info("%s of checkpoint %s ended: %s", job.kind, job.checkpoint.id,
                 run.success if error is None else run.failure)
        return True, error


def _payload(run: Run, *, error: str | None = None, seconds: float | None = None, progress: Progress | None = None,
             transfer: metrics.Transfer | None = None) -> dict[str, Any]:
    """A run's notification payload: ids, then at its end status, duration, sizes and the reason of a
    failure (never a credential: no plan parameters, no provider options)."""
    job = run.job
    cp = job.checkpoint
    payload: dict[str, Any] = {
        "checkpoint_id": cp.id, "provider_id": job.provider.id, "project_id": cp.project_id,
        "plan_id": cp.plan_id, "owner_id": run.env.owner_id, "operation": str(job.kind),
        "scheduled_operation_id": job.log.scheduled_operation_id,
        "request_id": job.log.extra_info.get("request_id"),
    }
    if job.restore is not None:
        payload[f"{'verification' if job.kind is OperationKind.VERIFY else 'restore'}_id"] = job.restore.id
    if job.kind is OperationKind.PROTECT:
        payload["logical_size"] = cp.bytes_total
    if seconds is None:
        payload["status"] = run.running
        return payload
    payload.update(status=run.success if error is None else run.failure, duration_seconds=round(seconds, 3),
                   reason=error)
    if progress is not None:
        payload.update(bytes_total=progress.total, bytes_done=progress.total if error is None else progress.done)
    if transfer is not None and job.kind is OperationKind.PROTECT:
        payload.update(bytes_read=transfer.bytes_read, bytes_stored=transfer.bytes_stored)
    return payload


def _published(checkpoint_id: str, prepared: list[tuple[Operation, OperationContext]]) -> None:
    """Each protect operation's ``on_published``, once its checkpoint is available; what fails is logged and
    left to garbage collection (the checkpoint stays available)."""
    for operation, ctx in prepared:
        try:
            operation.on_published(ctx)
        except Exception as err:  # noqa: BLE001 - best effort: the checkpoint is already published
            LOG.warning("after publishing checkpoint %s, %s: %s (left to garbage collection)", checkpoint_id,
                        ctx.resource.key, err)


def resource_parameters(parameters: dict[str, Any], resource: Resource) -> dict[str, Any]:
    """Parameters for one resource: ``type#id`` wins over ``type`` (:func:`admission.parameters_key`)."""
    key = admission.parameters_key(parameters, resource)
    return parameters[key] if key is not None else {}
