"""One small class per kind of run: what protect, delete, restore and verify do around the flow.

The driver (:class:`strongroom.protection.runner.Runner`) runs every kind the
same way: ``before_flow``, the resource graph's flow with each hook given its
context (``section``, ``parameters``, ``resume_state``), then ``record`` of the
outcome.  A run that writes a checkpoint (protect, delete) records it through
the checkpoint catalogue; a restore or verification records its own record.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable, Collection
from typing import Any, ClassVar

from strongroom import exceptions
from strongroom.bank_plugins import BankSection
from strongroom.bank_plugins.layout import RESUME_STATE
from strongroom.clock import Clock
from strongroom.db.api import Database
from strongroom.objects.kinds import OperationKind
from strongroom.objects.records import Resource
from strongroom.objects.status import CheckpointStatus, RestoreStatus
from strongroom.protection import gc
from strongroom.protection import graph as graph_mod
from strongroom.protection.admission import RUN_REASON
from strongroom.protection.catalogue import CheckpointCatalogue
from strongroom.protection.flows import ResourceTracker
from strongroom.protection.job import Job
from strongroom.protection.progress import Progress

LOG = logging.getLogger(__name__)

ResumeState = tuple[Callable[[], dict[str, Any]], Callable[[dict[str, Any]], None]]


class LostClaim(Exception):
    """The job is another worker's now; this run records nothing."""


class RunEnv:
    """What every run may use: the database, its provider's catalogue and this process's identity."""

    def __init__(self, db: Database, catalogue: CheckpointCatalogue, clock: Clock, owner_id: str, *,
                 sweeping: gc.Sweeping, running: Callable[[], Collection[str]]) -> None:
        self.db = db
        self.catalogue = catalogue
        self.clock = clock
        self.owner_id = owner_id
        self.sweeping = sweeping
        self.running = running


class Run(abc.ABC):
    """One kind of run.  ``running``/``success``/``failure``: the statuses its record and log move through."""

    kind: ClassVar[OperationKind]
    #: Its notifications' event type (``<event>.start``, ``.end``, ``.error``; :mod:`strongroom.notifications`).
    event: ClassVar[str]
    running: ClassVar[str]
    success: ClassVar[str]
    failure: ClassVar[str]
    #: Hooks of this kind may only read the checkpoint.
    read_only: ClassVar[bool] = False

    def __init__(self, job: Job, env: RunEnv) -> None:
        self.job = job
        self.env = env

    @property
    def checkpoint_id(self) -> str:
        return self.job.checkpoint.id

    def section(self, resource: Resource) -> BankSection:
        return self.env.catalogue.store.resource_section(self.checkpoint_id, resource.key, read_only=self.read_only)

    def parameters(self) -> dict[str, Any]:
        return self.job.checkpoint.protection_plan.get("parameters") or {}

    def before_flow(self) -> None:  # noqa: B027 - most kinds have nothing to do before the hooks
        """Bank work that precedes the hooks."""

    def on_resource_change(self, key: str, status: str, reason: str | None) -> None:  # noqa: B027
        """A resource's status changed during the flow (only restore records keep it as it goes)."""

    @abc.abstractmethod
    def progress(self) -> Progress:
        """The progress counter the hooks feed."""

    @abc.abstractmethod
    def resume_state(self, resource: Resource) -> ResumeState:
        """(load, save) of a hook's resume state for ``resource``."""

    @abc.abstractmethod
    def record(self, tracker: ResourceTracker, results: dict[str, dict[str, Any]], progress: Progress,
               error: str | None) -> str | None:
        """Record the outcome (bank first, where there is one); returns the run's final error, if any.
        May raise :class:`LostClaim`."""

    def record_unrecorded(self, error: str) -> None:  # noqa: B027 - a restore record has nothing more to say
        """``record`` failed (the bank may be gone): leave what can be said of the failure."""


class _CheckpointRun(Run):
    """Protect and delete: the run writes the checkpoint, its resume state lives beside the resource."""

    def resume_state(self, resource: Resource) -> ResumeState:
        section = self.env.catalogue.store.resource_section(self.checkpoint_id, resource.key)
        job = self.job

        def load() -> dict[str, Any]:
            if not job.resumed:
                return {}  # a first attempt: nothing to look for
            try:
                value = section.get_json(RESUME_STATE)
            except exceptions.BankObjectNotFound:
                return {}
            return value if isinstance(value, dict) else {}

        def save(state: dict[str, Any]) -> None:
            if state:
                section.put_json(RESUME_STATE, state)
            else:
                section.delete(RESUME_STATE)

        return load, save

    def record_unrecorded(self, error: str) -> None:
        # The bank may still say protecting/deleting: garbage collection reclaims it once this run is over.
        self.env.catalogue.fail_unrecorded(self.checkpoint_id, CheckpointStatus(self.failure), error)

    def _sweep(self) -> None:
        """Remove the chunks no manifest references any more, at once (the sweep protocol of ``gc``, which
        stands down while another writer of the project is live): those of a deleted checkpoint, or
        those a failed protect wrote that nothing else uses, so that their space comes back now."""
        job = self.job
        if job.fence is None:
            return
        collector = gc.GarbageCollector(self.env.catalogue, job.fence.keeper.lease, running=self.env.running,
                                        sweeping=self.env.sweeping, name=job.provider.bank_description)
        try:
            sweep = collector.sweep_project(job.checkpoint.project_id, grace=0, finished=self.checkpoint_id)
        except exceptions.StrongroomError as err:
            LOG.warning("chunks of %s checkpoint %s are left to garbage collection: %s", self.failure,
                        self.checkpoint_id, err)
            return
        if sweep.skipped:
            LOG.info("chunks of %s checkpoint %s are left to garbage collection: %s", self.failure,
                     self.checkpoint_id, sweep.skipped)


class ProtectRun(_CheckpointRun):
    kind = OperationKind.PROTECT
    event = "checkpoint.create"
    running = CheckpointStatus.PROTECTING
    success = CheckpointStatus.AVAILABLE
    failure = CheckpointStatus.ERROR

    def before_flow(self) -> None:
        job = self.job
        if job.fence is not None:
            gc.wait_for_sweeps(job.provider.bank, job.fence.keeper.lease, job.checkpoint.project_id,
                               self.env.sweeping, clock=self.env.clock, should_stop=lambda: not job.may_write())

    def progress(self) -> Progress:
        catalogue, cid = self.env.catalogue, self.checkpoint_id
        return Progress(self.job.checkpoint.bytes_total, lambda done: catalogue.record_progress(cid, done),
                        self.env.clock)

    def record(self, tracker: ResourceTracker, results: dict[str, dict[str, Any]], progress: Progress,
               error: str | None) -> str | None:
        catalogue = self.env.catalogue
        if error is None:
            error = self._publish(progress, protected_results(tracker, results))
        if error is not None:
            # Which resource failed, and how long each ran; not what the failed run stored (it is swept).
            failed = protected_results(tracker, {key: {} for key in tracker.status})
            catalogue.fail_protect(self.checkpoint_id, error, self.env.owner_id, progress.done,
                                   release=self._sweep, protected=failed)
        return error

    def _publish(self, progress: Progress, protected: dict[str, dict[str, Any]]) -> str | None:
        """Publish if the lease and the job's claim allow it; returns why not, or None once published."""
        job = self.job
        if job.fence is not None:
            try:
                job.fence.check("publish checkpoint " + self.checkpoint_id)
            except exceptions.LeaseLost as err:
                return str(err)
        if job.claim is not None:
            try:
                job.claim.check()
            except (exceptions.Conflict, exceptions.ServiceUnavailable) as err:
                job.claim.lose()  # the job is someone else's now (or cannot be told): its run publishes
                raise LostClaim(str(err)) from err
        owner = self.env.owner_id if job.fence is not None else None
        return self.env.catalogue.publish(self.checkpoint_id, owner_id=owner, bytes_done=progress.total,
                                          protected=protected)


def protected_results(tracker: ResourceTracker, results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What a checkpoint keeps of each resource's protect (``extra_info.protected``): what its hooks reported
    (the volume plugin: mode, ``size_bytes``, bytes read and stored...), its status, and ``seconds``, the
    time its hooks ran in the attempt that published it."""
    out: dict[str, dict[str, Any]] = {}
    for key, result in results.items():
        entry = dict(result)
        if key in tracker.status:
            entry["status"] = tracker.status[key]
        if key in tracker.seconds:
            entry["seconds"] = round(tracker.seconds[key], 3)
        if entry:
            out[key] = entry
    return out


class DeleteRun(_CheckpointRun):
    kind = OperationKind.DELETE
    event = "checkpoint.delete"
    running = CheckpointStatus.DELETING
    success = CheckpointStatus.DELETED
    failure = CheckpointStatus.ERROR_DELETING

    def before_flow(self) -> None:
        self.env.catalogue.unlist(self.checkpoint_id)

    def progress(self) -> Progress:
        return Progress(0, lambda done: None, self.env.clock)

    def record(self, tracker: ResourceTracker, results: dict[str, dict[str, Any]], progress: Progress,
               error: str | None) -> str | None:
        catalogue, cid = self.env.catalogue, self.checkpoint_id
        if error is None:
            catalogue.finish_delete(cid, self.env.owner_id, sweep=self._sweep)
        else:
            catalogue.fail_delete(cid, self.env.owner_id, error)
        return error


class _RestoreRecordRun(Run):
    """Restore and verify: the checkpoint is only read; the restore record carries state and progress."""

    running = RestoreStatus.IN_PROGRESS
    success = RestoreStatus.SUCCESS
    failure = RestoreStatus.FAIL
    read_only = True
    #: ``extra_info`` key of what the hooks produced, per resource.
    results_key: ClassVar[str]

    def __init__(self, job: Job, env: RunEnv) -> None:
        super().__init__(job, env)
        assert job.restore is not None
        self.restore = job.restore
        self._lock = threading.Lock()

    def parameters(self) -> dict[str, Any]:
        return self.restore.parameters or {}

    def resume_state(self, resource: Resource) -> ResumeState:
        restore, db, lock = self.restore, self.env.db, self._lock

        def load() -> dict[str, Any]:
            value = restore.resume_state.get(resource.key)
            return dict(value) if isinstance(value, dict) else {}

        def save(state: dict[str, Any]) -> None:
            with lock:
                resume = dict(restore.resume_state)
                if state:
                    resume[resource.key] = state
                else:
                    resume.pop(resource.key, None)
                restore.resume_state = resume
                db.update_restore(restore.id, {"resume_state": resume})

        return load, save

    def progress(self) -> Progress:
        job = self.job
        total = 0
        for node in graph_mod.iter_nodes(graph_mod.deserialize(job.checkpoint.resource_graph)):
            plugin = job.provider.plugin_for_type.get(node.resource.type)
            if plugin is not None:
                total += plugin.saved_size(self.section(node.resource))
        restore, db = self.restore, self.env.db

        def flush(done: int) -> None:
            restore.progress = {"bytes_total": total, "bytes_done": done}
            db.update_restore(restore.id, {"progress": restore.progress})

        return Progress(total, flush, self.env.clock)

    def on_resource_change(self, key: str, status: str, reason: str | None) -> None:
        restore = self.restore
        with self._lock:
            restore.resources_status[key] = status
            if reason:
                restore.resources_reason[key] = reason
            self.env.db.update_restore(restore.id, {"resources_status": dict(restore.resources_status),
                                                    "resources_reason": dict(restore.resources_reason)})

    @abc.abstractmethod
    def kept_results(self, results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The hooks' results worth showing the user."""

    def record(self, tracker: ResourceTracker, results: dict[str, dict[str, Any]], progress: Progress,
               error: str | None) -> str | None:
        restore = self.restore
        extra = {**restore.extra_info, self.results_key: self.kept_results(results)}
        reasons = dict(tracker.reason)
        if error is not None:
            reasons[RUN_REASON] = error  # a failed run always says why, whichever step failed
        self.env.db.update_restore(restore.id, {
            "status": self.success if error is None else self.failure, "extra_info": extra,
            "progress": {"bytes_total": progress.total,
                         "bytes_done": progress.total if error is None else progress.done},
            "resources_status": dict(tracker.status), "resources_reason": reasons})
        return error

    def record_unrecorded(self, error: str) -> None:
        # Never left in_progress, nor without a reason, even if the full record could not be written.
        self.env.db.update_restore(self.restore.id, {
            "status": self.failure, "resources_reason": {**self.restore.resources_reason, RUN_REASON: error}})


class RestoreRun(_RestoreRecordRun):
    kind = OperationKind.RESTORE
    event = "restore"
    results_key = "restored_resources"

    def kept_results(self, results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in results.items() if v.get("id")}


class VerifyRun(_RestoreRecordRun):
    kind = OperationKind.VERIFY
    event = "verification"
    results_key = "verified_resources"

    def kept_results(self, results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in results.items() if v}

    def record(self, tracker: ResourceTracker, results: dict[str, dict[str, Any]], progress: Progress,
               error: str | None) -> str | None:
        error = super().record(tracker, results, progress, error)
        self._show_on_checkpoint(error)
        return error

    def record_unrecorded(self, error: str) -> None:
        super().record_unrecorded(error)
        self._show_on_checkpoint(error)

    def _show_on_checkpoint(self, error: str | None) -> None:
        """The outcome on the checkpoint too (its ``last_verification``), where a user looks first."""
        outcome = {"id": self.restore.id, "status": self.success if error is None else self.failure,
                   "at": self.env.clock.now().isoformat(), "reason": error}
        try:
            if not self.env.catalogue.record_verification(self.checkpoint_id, outcome):
                LOG.info("verification %s is not shown on checkpoint %s: it is no longer available",
                         self.restore.id, self.checkpoint_id)
        except exceptions.StrongroomError as err:
            LOG.warning("verification %s could not be shown on checkpoint %s: %s", self.restore.id,
                        self.checkpoint_id, err)


RUNS: dict[OperationKind, type[Run]] = {run.kind: run for run in (ProtectRun, DeleteRun, RestoreRun, VerifyRun)}
