"""The protection service's RPC endpoint.

Each method validates, records, and hands long work to the :class:`Runner` on
a bounded pool; it never orchestrates a flow itself.
"""

from __future__ import annotations

import logging
import os
import uuid
from concurrent import futures
from typing import Any

import jsonschema
import oslo_messaging as messaging

from strongroom import exceptions
from strongroom.clock import Clock
from strongroom.context import RequestContext, get_admin_context
from strongroom.db.api import Database
from strongroom.objects.records import CheckpointRecord, Plan, Resource
from strongroom.objects.status import RESET_STATES, CheckpointStatus, RestoreStatus, check_transition
from strongroom.protection import graph as graph_mod
from strongroom.protection.checkpoint import CheckpointStore
from strongroom.protection.flows import FlowPersistence
from strongroom.protection.plugin import OperationKind
from strongroom.protection.providers import Provider, ProviderRegistry
from strongroom.protection.runner import Job, Runner

LOG = logging.getLogger(__name__)


def default_owner_id(host: str) -> str:
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class ProtectionManager:
    target = messaging.Target(version="1.0")

    def __init__(self, db: Database, registry: ProviderRegistry, *, host: str, owner_id: str | None = None,
                 max_concurrent: int = 4, flow_workers: int = 4, persistence: FlowPersistence | None = None,
                 clock: Clock | None = None) -> None:
        self.db = db
        self.registry = registry
        self.host = host
        self.owner_id = owner_id or default_owner_id(host)
        self.clock = clock or Clock()
        self._jobs = futures.ThreadPoolExecutor(max_concurrent, thread_name_prefix="sr-job")
        self._flow_executor = futures.ThreadPoolExecutor(flow_workers, thread_name_prefix="sr-flow")
        self.runner = Runner(db, host, self.owner_id, self._flow_executor, persistence, self.clock)
        self._pending: set[futures.Future[None]] = set()

    # -- life cycle --------------------------------------------------------

    def stop(self, wait: bool = True) -> None:
        self._jobs.shutdown(wait=wait, cancel_futures=not wait)
        self._flow_executor.shutdown(wait=wait, cancel_futures=not wait)

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait for every accepted run to end (tests and clean shutdown)."""
        futures.wait(list(self._pending), timeout=timeout)

    def _submit(self, job: Job) -> None:
        future = self._jobs.submit(self.runner.run, job)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    # -- providers and protectables ------------------------------------------

    def list_providers(self, ctxt: RequestContext) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.registry.providers()]

    def show_provider(self, ctxt: RequestContext, provider_id: str) -> dict[str, Any]:
        return self.registry.get(provider_id).to_dict()

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
        roots = graph_mod.build_graph(the_plan.resources, lambda r: self._dependents(ctxt, r))
        total = 0
        for node in graph_mod.iter_nodes(roots):
            plugin = provider.plugin_for(node.resource.type)
            total += plugin.estimate_size(ctxt, node.resource)
        store = CheckpointStore(provider.bank, self.clock)
        record = CheckpointRecord(
            id=str(uuid.uuid4()), provider_id=provider.id, project_id=the_plan.project_id,
            status=CheckpointStatus.PROTECTING, plan_id=the_plan.id, owner_id=self.owner_id,
            protection_plan={"id": the_plan.id, "name": the_plan.name, "provider_id": provider.id,
                             "resources": [r.to_dict() for r in the_plan.resources],
                             "parameters": the_plan.parameters},
            resource_graph=graph_mod.serialize(roots), extra_info=dict(extra_info or {}),
            bytes_total=total, created_at=self.clock.now())
        store.create(record)
        record = self.db.create_checkpoint(record)
        log = self.runner.start_log(OperationKind.PROTECT, ctxt, provider.id, record,
                                    scheduled_operation_id=scheduled_operation_id)
        self._submit(Job(OperationKind.PROTECT, ctxt, provider, record, log))
        return record.to_dict()

    # -- delete and reset ----------------------------------------------------

    def delete_checkpoint(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str) -> None:
        provider = self.registry.get(provider_id)
        record = self._checkpoint(ctxt, provider, checkpoint_id)
        check_transition("Checkpoint", checkpoint_id, record.status, CheckpointStatus.DELETING, CheckpointStatus)
        record = self.db.update_checkpoint(checkpoint_id, {"status": CheckpointStatus.DELETING},
                                           expected_status=[record.status])
        CheckpointStore(provider.bank, self.clock).set_status(checkpoint_id, CheckpointStatus.DELETING)
        log = self.runner.start_log(OperationKind.DELETE, ctxt, provider.id, record)
        self._submit(Job(OperationKind.DELETE, ctxt, provider, record, log))

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
        bank_view = CheckpointStore(provider.bank, self.clock).read(checkpoint.id)
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

        A checkpoint left ``protecting`` ends ``error`` (its bank index says why),
        one left ``deleting`` is deleted again (deletion is idempotent), and
        restores/verifications left ``in_progress`` end ``fail``.  Only for a
        process that is alone on its bank and database (the all-in-one).
        """
        counts = {"protecting": 0, "deleting": 0, "restores": 0}
        # Logs first: the deletes resubmitted below start logs of their own.
        for running, final in (("protecting", "error"), ("deleting", "error-deleting"), ("in_progress", "fail")):
            for log in self.db.list_operation_logs(None, filters={"status": running}):
                if log.ended_at is None and log.host == self.host:
                    self.db.update_operation_log(log.id, {
                        "status": final, "ended_at": self.clock.now(),
                        "error_info": "interrupted: the service stopped during the run"})
        admin = get_admin_context()
        for provider in self.registry.providers():
            store = CheckpointStore(provider.bank, self.clock)
            for status in (CheckpointStatus.PROTECTING, CheckpointStatus.DELETING):
                for record in self.db.list_checkpoints(provider.id, None, filters={"status": status}):
                    self._recover_checkpoint(admin, provider, store, record, counts)
        for kind in ("restore", "verification"):
            for restore in self.db.list_restores(None, kind=kind, filters={"status": RestoreStatus.IN_PROGRESS}):
                self.db.update_restore(restore.id, {
                    "status": RestoreStatus.FAIL,
                    "resources_reason": {**restore.resources_reason,
                                         "_": "interrupted: the service stopped during the run"}})
                counts["restores"] += 1
        if any(counts.values()):
            LOG.warning("recovered interrupted work: %s", counts)
        return counts

    def _recover_checkpoint(self, ctxt: RequestContext, provider: Provider, store: CheckpointStore,
                            record: CheckpointRecord, counts: dict[str, int]) -> None:
        try:
            in_bank = store.read(record.id)
        except exceptions.NotFound:
            self.db.update_checkpoint(record.id, {"status": CheckpointStatus.ERROR,
                                                  "status_reason": "index missing from the bank"}, check=False)
            return
        if record.status == CheckpointStatus.PROTECTING:
            counts["protecting"] += 1
            if in_bank.status == CheckpointStatus.AVAILABLE:  # committed, catalogue not yet updated
                self.db.update_checkpoint(record.id, {"status": CheckpointStatus.AVAILABLE}, check=False)
                return
            reason = "interrupted: the service stopped while protecting"
            store.fail(record.id, reason)
            self.db.update_checkpoint(record.id, {"status": CheckpointStatus.ERROR, "status_reason": reason})
        else:
            counts["deleting"] += 1
            if in_bank.status != CheckpointStatus.DELETING:
                store.set_status(record.id, CheckpointStatus.DELETING, check=False)
            log = self.runner.start_log(OperationKind.DELETE, ctxt, provider.id, record)
            self._submit(Job(OperationKind.DELETE, ctxt, provider, record, log))


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

