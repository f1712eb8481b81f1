"""The protection service's RPC endpoint.

Each method validates, records, and hands long work to the :class:`Runner` on
a bounded pool; it never orchestrates a flow itself.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import logging
import os
import threading
import uuid
from concurrent import futures
from typing import Any

import jsonschema
import oslo_messaging as messaging
from taskflow.persistence import models

from strongroom import exceptions
from strongroom.clock import Clock
from strongroom.context import RequestContext
from strongroom.db.api import Database
from strongroom.objects.records import CheckpointRecord, Plan, Resource
from strongroom.objects.status import RESET_STATES, CheckpointStatus, RestoreStatus, check_transition
from strongroom.protection import gc, reclaim
from strongroom.protection import graph as graph_mod
from strongroom.protection.checkpoint import CheckpointStore
from strongroom.protection.conductor import Claim, JobBoard, JobSpec
from strongroom.protection.flows import FlowPersistence
from strongroom.protection.gc import Sweeping
from strongroom.protection.leases import BankLeases
from strongroom.protection.plugin import OperationKind
from strongroom.protection.providers import Provider, ProviderRegistry
from strongroom.protection.runner import Job, Runner

LOG = logging.getLogger(__name__)

#: ``extra_info`` key of a checkpoint made by a scheduled run: the fire's id (``operationengine.runs``).
FIRE_KEY = "scheduled_fire_id"


def default_owner_id(host: str) -> str:
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class ProtectionManager:
    """``owner_id`` names this process in every bank (its leases, its checkpoints); ``takeover``
    lets it take over a live lease of the same owner id (only when a lock proves the holder is dead);
    ``gc_interval`` (0: never) and ``chunk_grace`` drive periodic garbage collection."""

    target = messaging.Target(version="1.0")

    def __init__(self, db: Database, registry: ProviderRegistry, *, host: str, owner_id: str | None = None,
                 max_concurrent: int = 4, flow_workers: int = 4, persistence: FlowPersistence | None = None,
                 clock: Clock | None = None, gc_interval: float = 0, chunk_grace: float = 600.0,
                 takeover: bool = False, board: JobBoard | None = None) -> None:
        self.db = db
        self.registry = registry
        self.host = host
        self.owner_id = owner_id or default_owner_id(host)
        self.clock = clock or Clock()
        self.chunk_grace = chunk_grace
        self.leases = BankLeases(registry, self.owner_id, clock=self.clock, takeover=takeover)
        self.sweeping = Sweeping()
        self._running: set[str] = set()
        #: Checkpoints whose job this process posted and no conductor has taken over yet (their
        #: active markers are still ours, and live).
        self._posted: set[str] = set()
        self._running_lock = threading.Lock()
        self.board = board
        self._jobs = futures.ThreadPoolExecutor(max_concurrent, thread_name_prefix="sr-job")
        self._flow_executor = futures.ThreadPoolExecutor(flow_workers, thread_name_prefix="sr-flow")
        self.runner = Runner(db, host, self.owner_id, self._flow_executor, persistence, self.clock,
                             sweeping=self.sweeping, running=self.running)
        self._pending: set[futures.Future[None]] = set()
        self.collector = gc.Collector(self._periodic_gc, gc_interval)
        self.gc_totals: collections.Counter[str] = collections.Counter()

    # -- life cycle --------------------------------------------------------

    def start(self) -> None:
        """Acquire and renew the leases in the background; start periodic garbage collection."""
        self.leases.start()
        self.collector.start()

    def stop(self, wait: bool = True) -> None:
        self.collector.stop()
        self._jobs.shutdown(wait=wait, cancel_futures=not wait)
        self._flow_executor.shutdown(wait=wait, cancel_futures=not wait)
        # Released only when no run of ours is left: others may then reclaim at once.
        self.leases.stop(release=wait or not self.running())

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait for every accepted run to end (tests and clean shutdown)."""
        futures.wait(list(self._pending), timeout=timeout)

    def running(self) -> frozenset[str]:
        """Checkpoints this process is protecting or deleting, or has posted a job for (their active
        markers are not orphans)."""
        with self._running_lock:
            return frozenset(self._running | self._posted)

    def _claim(self, checkpoint_id: str) -> None:
        with self._running_lock:
            if checkpoint_id in self._running:
                raise exceptions.Conflict(reason=f"checkpoint {checkpoint_id} is already being worked on")
            self._running.add(checkpoint_id)

    def _release(self, checkpoint_id: str) -> None:
        with self._running_lock:
            self._running.discard(checkpoint_id)

    def _submit(self, job: Job) -> None:
        if self.board is not None:
            self._post(job)
            return

        def run() -> None:
            try:
                self.runner.run(job)
            finally:
                if job.fence is not None:
                    self._release(job.checkpoint.id)

        future = self._jobs.submit(run)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    # -- the jobboard (deployed mode) -------------------------------------------

    def _post(self, job: Job) -> None:
        """Hand ``job`` to whichever worker's conductor claims it; on failure the run ends failed."""
        assert self.board is not None
        spec = JobSpec(kind=str(job.kind), provider_id=job.provider.id, checkpoint_id=job.checkpoint.id,
                       log_id=job.log.id, context=job.context.to_dict(),
                       restore_id=job.restore.id if job.restore else None)
        cid = job.checkpoint.id
        if job.fence is not None:
            with self._running_lock:
                self._posted.add(cid)
                self._running.discard(cid)
        try:
            self.board.post(spec)
        except exceptions.ServiceUnavailable as err:
            with self._running_lock:
                self._posted.discard(cid)
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
        checkpoint = self.db.get_checkpoint(spec.checkpoint_id)
        restore = self.db.get_restore(spec.restore_id) if spec.restore_id else None
        ctxt = RequestContext.from_dict(spec.context)
        fence = None
        job = Job(kind, ctxt, provider, checkpoint, log, restore=restore, claim=claim)
        if kind in (OperationKind.PROTECT, OperationKind.DELETE):
            fence = self.leases.fence(provider)  # ServiceUnavailable: left for another worker
            job.fence = fence
            self._claim(checkpoint.id)
            try:
                operation = "protect" if kind == OperationKind.PROTECT else "delete"
                store = CheckpointStore(provider.bank, self.clock)
                job.checkpoint = store.take_over(checkpoint.id, self.owner_id, operation)
            except exceptions.Conflict as err:
                self._release(checkpoint.id)
                self.runner.fail_unstarted(job, str(err))
                return
            except BaseException:
                self._release(checkpoint.id)
                raise
            with self._running_lock:
                self._posted.discard(checkpoint.id)
            self.db.update_checkpoint(checkpoint.id, {"owner_id": self.owner_id}, check=False)
        job.resumed = bool(flow_detail is not None and any(True for _ in flow_detail))
        self.db.update_operation_log(log.id, {"host": self.host, "extra_info": {
            **log.extra_info, "worker": self.owner_id, "resumed": job.resumed}})
        job.log = self.db.get_operation_log(log.id)
        try:
            self.runner.run(job, book=book, flow_detail=flow_detail)
        finally:
            if fence is not None:
                self._release(checkpoint.id)

    def _forget_taken_over(self) -> None:
        """Posted checkpoints whose marker is no longer ours were taken over by a conductor: forget them."""
        with self._running_lock:
            before = set(self._posted)  # only these may go: a job posted during the listing stays
        if not before:
            return
        ours: set[str] = set()
        for provider in self.registry.providers():
            try:
                ours.update(m.checkpoint_id for m in CheckpointStore(provider.bank, self.clock).active_markers()
                            if m.owner_id == self.owner_id)
            except exceptions.StrongroomError:
                return  # cannot tell for this bank now: keep them all
        with self._running_lock:
            self._posted -= before - ours

    # -- garbage collection ----------------------------------------------------

    def collect_garbage(self, ctxt: RequestContext | None = None, provider_id: str | None = None,
                        dry_run: bool = False, sweep: bool = True) -> list[dict[str, Any]]:
        """One pass over each provider's bank (or one); returns a summary per bank."""
        out: list[dict[str, Any]] = []
        providers = [self.registry.get(provider_id)] if provider_id else self.registry.providers()
        for provider in providers:
            try:
                fence = self.leases.fence(provider)
            except exceptions.StrongroomError as err:
                out.append({"provider_id": provider.id, "bank": provider.bank_description, "error": str(err)})
                continue
            report = reclaim.collect(provider, fence.keeper.lease, self.db, host=self.host, clock=self.clock,
                                     running=self.running, sweeping=self.sweeping, chunk_grace=self.chunk_grace,
                                     dry_run=dry_run, sweep=sweep)
            if not dry_run:
                self.gc_totals.update(passes=1, zombies_reclaimed=len(report.reclaimed),
                                      chunks_removed=report.chunks_removed, errors=len(report.errors))
            out.append({"provider_id": provider.id, "bank": provider.bank_description, "summary": report.summary(),
                        "reclaimed": [r.to_dict() for r in report.reclaimed], "errors": report.errors,
                        "chunks_removed": report.chunks_removed})
        return out

    def _periodic_gc(self) -> None:
        for result in self.collect_garbage():
            if "error" in result:
                LOG.warning("garbage collection skipped %s: %s", result["bank"], result["error"])
        self._forget_taken_over()
        LOG.debug("garbage collection totals: %s", dict(self.gc_totals))

    # -- providers and protectables ------------------------------------------

    def list_providers(self, ctxt: RequestContext) -> list[dict[str, Any]]:
        return [self._provider_view(p) for p in self.registry.providers()]

    def show_provider(self, ctxt: RequestContext, provider_id: str) -> dict[str, Any]:
        return self._provider_view(self.registry.get(provider_id))

    def _provider_view(self, provider: Provider) -> dict[str, Any]:
        available, reason = self.leases.status(provider)
        return {**provider.to_dict(), "status": "available" if available else "unavailable",
                "status_reason": None if available else f"{provider.bank_description}: {reason}"}

    def list_protectable_types(self, ctxt: RequestContext) -> list[str]:
        return sorted(self.registry.protectables)

    def show_protectable_type(self, ctxt: RequestContext, protectable_type: str) -> dict[str, Any]:
        self.registry.protectable(protectable_type)
        return {"name": protectable_type, "dependent_types": self.registry.dependent_types(protectable_type)}

    def list_protectable_instances(self, ctxt: RequestContext, protectable_type: str,
                                   parameters: dict[str, Any]) -> list[dict[str, Any]]:
        plugin = self.registry.protectable(protectable_type)
        return [r.to_dict() for r in plugin.list_resources(ctxt, parameters or {})]

    def show_protectable_instance(self, ctxt: RequestContext, protectable_type: str, instance_id: str,
                                  parameters: dict[str, Any]) -> dict[str, Any]:
        plugin = self.registry.protectable(protectable_type)
        resource = plugin.show_resource(ctxt, instance_id, parameters or {})
        out = resource.to_dict()
        out["dependent_resources"] = [r.to_dict() for r in self._dependents(ctxt, resource)]
        return out

    def _dependents(self, ctxt: RequestContext, resource: Resource) -> list[Resource]:
        out: list[Resource] = []
        for rtype in self.registry.dependent_types(resource.type):
            out.extend(self.registry.protectables[rtype].get_dependent_resources(ctxt, resource))
        return out

    def validate_plan_parameters(self, ctxt: RequestContext, provider_id: str,
                                 parameters: dict[str, Any]) -> None:
        provider = self.registry.get(provider_id)
        _validate_parameters(provider, parameters, "options_schema", "parameters")

    # -- protect -----------------------------------------------------------

    def protect(self, ctxt: RequestContext, plan: dict[str, Any], provider_id: str,
                extra_info: dict[str, Any], scheduled_operation_id: str | None = None) -> dict[str, Any]:
        the_plan = Plan.from_dict(plan)
        provider = self.registry.get(provider_id)
        if not the_plan.resources:
            raise exceptions.InvalidInput(reason=f"plan {the_plan.id} has no resources")
        earlier = self._same_fire(provider, the_plan, extra_info or {})
        if earlier is not None:
            LOG.info("scheduled fire %s already made checkpoint %s: not protecting twice",
                     (extra_info or {}).get(FIRE_KEY), earlier.id)
            return earlier.to_dict()
        roots = graph_mod.build_graph(the_plan.resources, lambda r: self._dependents(ctxt, r))
        total = 0
        for node in graph_mod.iter_nodes(roots):
            plugin = provider.plugin_for(node.resource.type)
            total += plugin.estimate_size(ctxt, node.resource)
        fence = self.leases.fence(provider)
        store = CheckpointStore(provider.bank, self.clock)
        record = CheckpointRecord(
            id=str(uuid.uuid4()), provider_id=provider.id, project_id=the_plan.project_id,
            status=CheckpointStatus.PROTECTING, plan_id=the_plan.id, owner_id=self.owner_id,
            protection_plan={"id": the_plan.id, "name": the_plan.name, "provider_id": provider.id,
                             "resources": [r.to_dict() for r in the_plan.resources],
                             "parameters": the_plan.parameters},
            resource_graph=graph_mod.serialize(roots), extra_info=dict(extra_info or {}),
            bytes_total=total, created_at=self.clock.now())
        self._claim(record.id)  # before the active marker exists: it is never taken for an orphan
        try:
            store.create(record)
            record = self.db.create_checkpoint(record)
            log = self.runner.start_log(OperationKind.PROTECT, ctxt, provider.id, record,
                                        scheduled_operation_id=scheduled_operation_id)
        except BaseException as err:
            self._release(record.id)
            raise _bank_unavailable(provider, err) from err
        self._submit(Job(OperationKind.PROTECT, ctxt, provider, record, log, fence=fence))
        return record.to_dict()

    def _same_fire(self, provider: Provider, plan: Plan, extra_info: dict[str, Any]) -> CheckpointRecord | None:
        """The checkpoint an earlier call for the same scheduled fire made, if any.

        A scheduled run's protect carries its fire's id; an engine that paused past its claim may
        call again after another engine took the fire over: the fire id makes the call idempotent.
        """
        fire = extra_info.get(FIRE_KEY)
        if not fire:
            return None
        filters: dict[str, Any] = {"plan_id": plan.id}
        fire_time = extra_info.get("fire_time")
        if isinstance(fire_time, str):
            with contextlib.suppress(ValueError):
                filters["start_date"] = _dt.datetime.fromisoformat(fire_time).date()
        for record in self.db.list_checkpoints(provider.id, plan.project_id, filters=filters):
            if (record.extra_info or {}).get(FIRE_KEY) == fire:
                return record
        return None

    # -- delete and reset ----------------------------------------------------

    def delete_checkpoint(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str) -> None:
        provider = self.registry.get(provider_id)
        record = self._checkpoint(ctxt, provider, checkpoint_id)
        check_transition("Checkpoint", checkpoint_id, record.status, CheckpointStatus.DELETING, CheckpointStatus)
        fence = self.leases.fence(provider)
        self._claim(checkpoint_id)
        try:
            record = self.db.update_checkpoint(checkpoint_id, {"status": CheckpointStatus.DELETING,
                                                               "owner_id": self.owner_id},
                                               expected_status=[record.status])
            try:
                CheckpointStore(provider.bank, self.clock).start_delete(checkpoint_id, self.owner_id)
            except BaseException:
                self.db.update_checkpoint(checkpoint_id, {"status": record.status}, check=False)
                raise
            log = self.runner.start_log(OperationKind.DELETE, ctxt, provider.id, record)
        except BaseException as err:
            self._release(checkpoint_id)
            raise _bank_unavailable(provider, err) from err
        self._submit(Job(OperationKind.DELETE, ctxt, provider, record, log, fence=fence))

    def reset_checkpoint_state(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str,
                               state: str) -> None:
        if not ctxt.is_admin:
            raise exceptions.Forbidden(reason="resetting a checkpoint's state is for administrators")
        if state not in RESET_STATES:
            raise exceptions.InvalidInput(reason=f"state must be one of {sorted(RESET_STATES)}, not {state!r}")
        provider = self.registry.get(provider_id)
        self._checkpoint(ctxt, provider, checkpoint_id)
        CheckpointStore(provider.bank, self.clock).set_status(checkpoint_id, state, "reset by an administrator",
                                                              check=False)
        self.db.update_checkpoint(checkpoint_id, {"status": state, "status_reason": "reset by an administrator"},
                                  check=False)

    def _checkpoint(self, ctxt: RequestContext, provider: Provider, checkpoint_id: str) -> CheckpointRecord:
        project = None if ctxt.is_admin else ctxt.project_id
        return self.db.get_checkpoint(checkpoint_id, project_id=project, provider_id=provider.id)

    # -- restore and verify ------------------------------------------------

    def restore(self, ctxt: RequestContext, restore_id: str) -> None:
        self._start_restore(ctxt, restore_id, OperationKind.RESTORE)

    def verify(self, ctxt: RequestContext, verification_id: str) -> None:
        self._start_restore(ctxt, verification_id, OperationKind.VERIFY)

    def _start_restore(self, ctxt: RequestContext, restore_id: str, kind: OperationKind) -> None:
        record_kind = "restore" if kind == OperationKind.RESTORE else "verification"
        restore = self.db.get_restore(restore_id, kind=record_kind)
        provider = self.registry.get(restore.provider_id)
        checkpoint = self._checkpoint(ctxt, provider, restore.checkpoint_id)
        try:
            bank_view = CheckpointStore(provider.bank, self.clock).read(checkpoint.id)
        except exceptions.BankError as err:
            raise _bank_unavailable(provider, err) from err
        if bank_view.status != CheckpointStatus.AVAILABLE:
            raise exceptions.Conflict(reason=f"checkpoint {checkpoint.id} is {bank_view.status}, not available")
        if restore.restore_target:
            unsupported = sorted({n.resource.type for n in graph_mod.iter_nodes(
                graph_mod.deserialize(checkpoint.resource_graph))
                if not provider.plugin_for(n.resource.type).supports_restore_target})
            if unsupported:
                raise exceptions.InvalidInput(
                    reason=f"restore_target is not supported by provider {provider.name} for {', '.join(unsupported)}")
        schema = "restore_schema" if kind == OperationKind.RESTORE else "verify_schema"
        _validate_parameters(provider, restore.parameters, schema, "parameters")
        log = self.runner.start_log(kind, ctxt, provider.id, checkpoint, restore_id=restore.id)
        self._submit(Job(kind, ctxt, provider, checkpoint, log, restore=restore))

    # -- recovery ------------------------------------------------------------

    def recover_interrupted(self) -> dict[str, int]:
        """After a restart of the single embedded process: nothing may stay running.

        Operation logs this host left open are closed, restores and verifications
        left ``in_progress`` end ``fail``, and the checkpoints the predecessor
        (same owner id, proven dead by the state directory's lock) left
        unfinished are reclaimed by garbage collection at once: ``protecting``
        ends ``error`` and an interrupted delete ends ``deleted``, with their
        objects removed.  Only for a process alone on its state directory.
        """
        counts = {"logs": 0, "restores": 0, "reclaimed": 0}
        for running, final in (("protecting", "error"), ("deleting", "error-deleting"), ("in_progress", "fail")):
            for log in self.db.list_operation_logs(None, filters={"status": running}):
                if log.ended_at is None and log.host == self.host:
                    self.db.update_operation_log(log.id, {
                        "status": final, "ended_at": self.clock.now(),
                        "error_info": "interrupted: the service stopped during the run"})
                    counts["logs"] += 1
        for kind in ("restore", "verification"):
            for restore in self.db.list_restores(None, kind=kind, filters={"status": RestoreStatus.IN_PROGRESS}):
                self.db.update_restore(restore.id, {
                    "status": RestoreStatus.FAIL,
                    "resources_reason": {**restore.resources_reason,
                                         "_": "interrupted: the service stopped during the run"}})
                counts["restores"] += 1
        for result in self.collect_garbage(sweep=False):
            counts["reclaimed"] += len(result.get("reclaimed", []))
            if "error" in result:
                LOG.warning("%s: interrupted checkpoints are left to garbage collection: %s",
                            result["bank"], result["error"])
        if any(counts.values()):
            LOG.warning("recovered interrupted work: %s", counts)
        return counts


def _bank_unavailable(provider: Provider, err: BaseException) -> BaseException:
    """A transient bank failure as a ``ServiceUnavailable`` naming the bank; anything else as it is."""
    if isinstance(err, exceptions.BankTransientError):
        return exceptions.ServiceUnavailable(what=provider.bank_description, reason=str(err))
    return err


def _validate_parameters(provider: Provider, parameters: dict[str, Any], schema_name: str, field: str) -> None:
    if not isinstance(parameters, dict):
        raise exceptions.InvalidInput(reason=f"{field} must be an object")
    for key, value in parameters.items():
        rtype = key.split("#", 1)[0]
        plugin = provider.plugin_for_type.get(rtype)
        if plugin is None:
            raise exceptions.InvalidInput(
                reason=f"{field}.{key}: provider {provider.name} has no plugin for resource type {rtype!r}")
        validator = jsonschema.Draft202012Validator(getattr(plugin, schema_name))
        for err in validator.iter_errors(value):
            path = ".".join(str(p) for p in err.path)
            raise exceptions.InvalidInput(reason=f"{field}.{key}{'.' + path if path else ''}: {err.message}")

