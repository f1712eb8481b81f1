"""The protection service's RPC endpoint.

Each method checks the request (:mod:`~strongroom.protection.admission`), has
the checkpoint catalogue record its first step, and hands the run to the job
tracker; it never orchestrates a flow, tracks a job or collects garbage itself.
Its parts are built and injected by :func:`strongroom.protection.wiring.protection_manager`.
"""

from __future__ import annotations

import functools
import logging
import uuid
from typing import Any

import oslo_messaging as messaging

from strongroom import exceptions
from strongroom.alerts.service import AlertService
from strongroom.clock import Clock
from strongroom.context import RequestContext
from strongroom.db.api import Database
from strongroom.objects import locks
from strongroom.objects.kinds import FIRE_KEY, OperationKind, RestoreKind
from strongroom.objects.records import CheckpointRecord, Plan, Resource
from strongroom.objects.status import RESET_STATES, CheckpointStatus
from strongroom.protection import admission, capacity, copying
from strongroom.protection import graph as graph_mod
from strongroom.protection.catalogue import ENCRYPTION, Catalogues
from strongroom.protection.collection import GarbageCollection
from strongroom.protection.files import FileService
from strongroom.protection.job import Job
from strongroom.protection.jobs import JobTracker
from strongroom.protection.leases import BankLeases
from strongroom.protection.providers import Provider, ProviderRegistry
from strongroom.protection.recovery import Recovery
from strongroom.protection.usage import UsageCache, bank_usage
from strongroom.protection.volume_data import VolumeData

LOG = logging.getLogger(__name__)


class ProtectionManager:
    """``owner_id`` names this process in every bank (its leases, its checkpoints)."""

    target = messaging.Target(version="1.0")

    def __init__(self, db: Database, registry: ProviderRegistry, *, host: str, owner_id: str, clock: Clock,
                 leases: BankLeases, catalogues: Catalogues, jobs: JobTracker, collection: GarbageCollection,
                 recovery: Recovery, alerts: AlertService | None = None,
                 usage: UsageCache | None = None, files: FileService | None = None) -> None:
        self.db = db
        self.registry = registry
        self.host = host
        self.owner_id = owner_id
        self.clock = clock
        self.leases = leases
        self.catalogues = catalogues
        self.jobs = jobs
        self.collection = collection
        self.recovery = recovery
        self.alerts = alerts
        self.usage_cache = usage or UsageCache()
        self.volume_data = VolumeData()
        self.files = files or FileService()

    # -- life cycle (not RPC) --------------------------------------------------

    def start(self) -> None:
        """Acquire and renew the leases in the background; start periodic garbage collection."""
        self.leases.start()
        self.collection.start()
        if self.alerts is not None:
            self.alerts.start()

    def stop(self, wait: bool = True) -> None:
        if self.alerts is not None:
            self.alerts.stop()
        self.collection.stop()
        self.jobs.shutdown(wait)
        self.jobs.runner.flow_executor.shutdown(wait=wait, cancel_futures=not wait)
        # Released only when no run of ours is left: others may then reclaim at once.
        self.leases.stop(release=wait or not self.jobs.active())

    def wait_idle(self, timeout: float | None = None) -> None:
        self.jobs.wait_idle(timeout)

    # -- providers and protectables ------------------------------------------

    def list_providers(self, ctxt: RequestContext) -> list[dict[str, Any]]:
        return [self._provider_view(p) for p in self.registry.providers()]

    def show_provider(self, ctxt: RequestContext, provider_id: str) -> dict[str, Any]:
        return self._provider_view(self.registry.get(provider_id))

    def show_provider_backends(self, ctxt: RequestContext, provider_id: str) -> list[dict[str, Any]]:
        """The provider's block backends, their pools and capacity: administrators only (the API decides
        by policy; this refuses a context that is not an administrator's all the same)."""
        if not ctxt.is_admin:
            raise exceptions.Forbidden(reason="a provider's block backends are shown to administrators only")
        return capacity.provider_backends(self.registry.get(provider_id))

    def list_pools(self, ctxt: RequestContext) -> list[dict[str, Any]]:
        """Every enabled provider's block backends and their pools (administrators only, as above)."""
        if not ctxt.is_admin:
            raise exceptions.Forbidden(reason="block backend pools are shown to administrators only")
        return [{"provider_id": provider.id, "provider_name": provider.name,
                 "block_backends": capacity.provider_backends(provider)} for provider in self.registry.providers()]

    def usage(self, ctxt: RequestContext, project_id: str | None, provider_id: str | None = None
              ) -> list[dict[str, Any]]:
        """Usage figures (:mod:`strongroom.protection.usage`) of ``project_id`` in each provider's bank, or in
        ``provider_id``'s; ``project_id`` None (administrators only): every project's."""
        if project_id is None and not ctxt.is_admin:
            raise exceptions.Forbidden(reason="every project's usage is shown to administrators only")
        if project_id is not None and project_id != ctxt.project_id and not ctxt.is_admin:
            raise exceptions.Forbidden(reason="another project's usage is shown to administrators only")
        providers = [self.registry.get(provider_id)] if provider_id else self.registry.providers()
        out: list[dict[str, Any]] = []
        for provider in providers:
            scope = None if project_id is None else {project_id}
            fingerprint = frozenset((c.id, str(c.status), c.updated_at)
                                    for c in self.db.list_checkpoints(provider.id, project_id))
            try:
                figures = self.usage_cache.get(provider.id, project_id, fingerprint,
                                               functools.partial(bank_usage, provider.bank, scope))
            except exceptions.BankError as err:
                raise admission.bank_unavailable(provider, err) from err
            out.extend({**row, "provider_id": provider.id} for row in figures.values())
        return out

    def _provider_view(self, provider: Provider) -> dict[str, Any]:
        available, reason = self.leases.status(provider)
        return {**provider.to_dict(), "status": "available" if available else "unavailable",
                "status_reason": None if available else f"{provider.bank_description}: {reason}"}

    # -- alerts --------------------------------------------------------------------

    def list_alerts(self, ctxt: RequestContext, all_tenants: bool = False) -> list[dict[str, Any]]:
        """The alerts of the caller's project and the infrastructure alerts that put its resources at risk;
        every alert with ``all_tenants`` (administrators only)."""
        if all_tenants and not ctxt.is_admin:
            raise exceptions.Forbidden(reason="all_tenants is not allowed for this user")
        if self.alerts is None:
            return []
        return self.alerts.listing(None if all_tenants else ctxt.project_id)

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

    def show_plan_resources(self, ctxt: RequestContext, provider_id: str,
                            resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each ``{type, id}`` of a plan as ``provider_id`` sees it, in order: ``{"instance": {id, type, name,
        extra_info}}``, or ``{"missing": <message naming the resource, its type, the provider and where it was
        looked for>}``.  Looked for by the type's protectable in the block backend(s) of the provider's
        protection plugin for that type (all its block backends if none protects the type).  One call for the
        whole plan: the API checks a plan with it when it is created or its resources change.  A backend that
        cannot be asked raises ``ServiceUnavailable``/``BlockUnavailable`` naming it."""
        provider = self.registry.get(provider_id)
        out: list[dict[str, Any]] = []
        for item in resources:
            rtype, rid = str(item["type"]), str(item["id"])
            plugin = self.registry.protectable(rtype)
            backends = self._resource_backends(provider, rtype)
            try:
                out.append({"instance": plugin.show_resource_in(ctxt, rid, backends).to_dict()})
            except exceptions.NotFound:
                out.append({"missing": self._not_found(provider, rtype, rid).message})
            except OSError as err:  # a backend's connection failure its driver did not name
                raise exceptions.ServiceUnavailable(
                    what=f"block backend {', '.join(sorted(backends))} of provider {provider.name!r}",
                    reason=str(err)) from err
        return out

    @staticmethod
    def _resource_backends(provider: Provider, resource_type: str) -> dict[str, Any]:
        """The block backends a resource of that type is in for ``provider``: its protection plugin's (every
        backend of the provider when no plugin protects the type)."""
        name = getattr(provider.plugin_for_type.get(resource_type), "options", {}).get("block_backend")
        return {str(name): provider.block_backend(str(name))} if name else provider.block_backends()

    def _not_found(self, provider: Provider, resource_type: str, resource_id: str) -> exceptions.NotFound:
        backends = sorted(self._resource_backends(provider, resource_type))
        where = f" in block backend {', '.join(repr(n) for n in backends)}" if backends else ""
        return exceptions.NotFound(f"{resource_type} {resource_id!r} could not be found by provider "
                                   f"{provider.name!r} ({provider.id}){where}")

    def _dependents(self, ctxt: RequestContext, resource: Resource) -> list[Resource]:
        out: list[Resource] = []
        for rtype in self.registry.dependent_types(resource.type):
            out.extend(self.registry.protectables[rtype].get_dependent_resources(ctxt, resource))
        return out

    def validate_plan_parameters(self, ctxt: RequestContext, provider_id: str,
                                 parameters: dict[str, Any]) -> None:
        admission.validate_parameters(self.registry.get(provider_id), parameters, "options_schema", "parameters")

    def check_retention_lock(self, ctxt: RequestContext, provider_id: str, days: Any, field: str) -> None:
        """400 naming ``field`` unless ``days`` is a valid ``retention_lock_days`` the provider's bank can keep."""
        admission.check_retention_lock(self.registry.get(provider_id), days, field)

    # -- protect -----------------------------------------------------------

    def protect(self, ctxt: RequestContext, plan: dict[str, Any], provider_id: str,
                extra_info: dict[str, Any], scheduled_operation_id: str | None = None,
                retention_lock_days: int | None = None) -> dict[str, Any]:
        the_plan = Plan.from_dict(plan)
        provider = self.registry.get(provider_id)
        if not the_plan.resources:
            raise exceptions.InvalidInput(reason=f"plan {the_plan.id} has no resources")
        extra_info = self._lock_request(provider, the_plan, dict(extra_info or {}), retention_lock_days)
        earlier = admission.same_fire(self.db, provider, the_plan, extra_info or {})
        if earlier is not None:
            LOG.info("scheduled fire %s already made checkpoint %s: not protecting twice",
                     (extra_info or {}).get(FIRE_KEY), earlier.id)
            return earlier.to_dict()
        roots = graph_mod.build_graph(the_plan.resources, lambda r: self._dependents(ctxt, r))
        total = 0
        for node in graph_mod.iter_nodes(roots):
            try:
                total += provider.plugin_for(node.resource.type).estimate_size(ctxt, node.resource)
            except exceptions.NotFound:  # there when the plan was made (it was checked), gone since
                err = self._not_found(provider, node.resource.type, node.resource.id)
                raise exceptions.NotFound(f"plan {the_plan.id}: {err.message}: it may have been deleted since "
                                          f"the plan was made; update the plan's resources") from None
        fence = self.leases.fence(provider)
        record = CheckpointRecord(
            id=str(uuid.uuid4()), provider_id=provider.id, project_id=the_plan.project_id,
            status=CheckpointStatus.PROTECTING, plan_id=the_plan.id, owner_id=self.owner_id,
            protection_plan={"id": the_plan.id, "name": the_plan.name, "provider_id": provider.id,
                             "resources": [r.to_dict() for r in the_plan.resources],
                             "parameters": the_plan.parameters},
            resource_graph=graph_mod.serialize(roots), extra_info=dict(extra_info or {}),
            bytes_total=total, created_at=self.clock.now())
        catalogue = self.catalogues.of(provider)
        self.jobs.active.claim(record.id)  # before the active marker exists: it is never taken for an orphan
        try:
            record = catalogue.begin_protect(record)
        except BaseException as err:
            self.jobs.active.release(record.id)
            raise admission.bank_unavailable(provider, err) from err
        try:
            log = self.jobs.runner.start_log(OperationKind.PROTECT, ctxt, provider.id, record,
                                             scheduled_operation_id=scheduled_operation_id)
        except BaseException as err:
            try:  # accepted in both copies, but nobody will run it: it ends here, a failure in both
                catalogue.fail_protect(record.id, f"could not be started: {err}", self.owner_id, 0)
            finally:
                self.jobs.active.release(record.id)
            raise
        self.jobs.submit(Job(OperationKind.PROTECT, ctxt, provider, record, log, fence=fence))
        LOG.info("protect of plan %s accepted: checkpoint %s of provider %s", the_plan.id, record.id, provider.id)
        return record.to_dict()

    @staticmethod
    def _lock_request(provider: Provider, plan: Plan, extra_info: dict[str, Any],
                      retention_lock_days: int | None) -> dict[str, Any]:
        """``extra_info`` with the days the checkpoint is to be locked for: the longer of the plan's parameter
        and the scheduled operation's option.  Checked again here (the bank's options may have changed since
        the plan was made); the lock keys are the service's, never a caller's."""
        if ENCRYPTION in extra_info:
            raise exceptions.InvalidInput(reason=f"extra_info.{ENCRYPTION}: set by the service (a provider's "
                                                 f"[provider] encryption option says whether checkpoints are)")
        for key in (locks.LOCK_DAYS, locks.LOCKED_UNTIL):
            if key in extra_info:
                raise exceptions.InvalidInput(
                    reason=f"extra_info.{key}: set by the service; ask for a lock with the plan parameter "
                           f"{locks.LOCK_DAYS}")
        asked = [admission.check_retention_lock(provider, value, field) for value, field in (
            (plan.parameters.get(locks.LOCK_DAYS), f"plan.parameters.{locks.LOCK_DAYS}"),
            (retention_lock_days, f"operation_definition.{locks.LOCK_DAYS}")) if value is not None]
        if asked:
            extra_info[locks.LOCK_DAYS] = max(asked)
        return extra_info

    # -- delete and reset ----------------------------------------------------

    def delete_checkpoint(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str) -> None:
        provider = self.registry.get(provider_id)
        record = self._checkpoint(ctxt, provider, checkpoint_id)
        if record.status == CheckpointStatus.DELETED:  # deleted already: the answer is the same, nothing changes
            LOG.info("checkpoint %s is deleted already", checkpoint_id)
            return
        catalogue = self.catalogues.of(provider)
        catalogue.check_may_delete(record)  # refused before the lease is even asked for
        fence = self.leases.fence(provider)
        self.jobs.active.claim(checkpoint_id)
        before = record
        try:
            record = catalogue.begin_delete(record, self.owner_id)
        except BaseException as err:
            self.jobs.active.release(checkpoint_id)
            raise admission.bank_unavailable(provider, err) from err
        try:
            log = self.jobs.runner.start_log(OperationKind.DELETE, ctxt, provider.id, record)
        except BaseException:
            try:  # nobody would run it: the checkpoint goes back to what it was, in both copies
                catalogue.cancel_delete(before, self.owner_id, bank_before=before)
            finally:
                self.jobs.active.release(checkpoint_id)
            raise
        self.jobs.submit(Job(OperationKind.DELETE, ctxt, provider, record, log, fence=fence))

    def reset_checkpoint_state(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str,
                               state: str) -> None:
        if not ctxt.is_admin:
            raise exceptions.Forbidden(reason="resetting a checkpoint's state is for administrators")
        if state not in RESET_STATES:
            raise exceptions.InvalidInput(reason=f"state must be one of {sorted(RESET_STATES)}, not {state!r}")
        provider = self.registry.get(provider_id)
        self._checkpoint(ctxt, provider, checkpoint_id)
        try:
            self.catalogues.of(provider).reset(checkpoint_id, CheckpointStatus(state))
        except exceptions.BankError as err:
            raise admission.bank_unavailable(provider, err) from err

    def read_resource_data(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str, resource_key: str,
                           offset: int, length: int) -> dict[str, Any]:
        """Bytes of a volume of an available checkpoint of the caller's project (:mod:`.volume_data`)."""
        provider = self.registry.get(provider_id)
        record = self._checkpoint(ctxt, provider, checkpoint_id)
        if record.status != CheckpointStatus.AVAILABLE:
            raise exceptions.Conflict(reason=f"checkpoint {checkpoint_id} is {record.status}: only an available "
                                             "checkpoint's data can be read")
        resources = (record.protection_plan or {}).get("resources") or []
        if resource_key not in {f"{r.get('type')}#{r.get('id')}" for r in resources}:
            raise exceptions.NotFound(kind="Resource", id=f"{resource_key} of checkpoint {checkpoint_id}")
        try:
            return self.volume_data.read(provider.id, provider.bank, record.project_id, checkpoint_id,
                                         resource_key, offset, length)
        except exceptions.BankError as err:
            if isinstance(err, exceptions.NotFound):
                raise
            raise admission.bank_unavailable(provider, err) from err

    def _checkpoint(self, ctxt: RequestContext, provider: Provider, checkpoint_id: str) -> CheckpointRecord:
        project = None if ctxt.is_admin else ctxt.project_id
        return self.db.get_checkpoint(checkpoint_id, project_id=project, provider_id=provider.id)

    # -- restore and verify ------------------------------------------------

    def restore(self, ctxt: RequestContext, restore_id: str) -> None:
        self._start_restore(ctxt, restore_id, OperationKind.RESTORE)

    def verify(self, ctxt: RequestContext, verification_id: str) -> None:
        self._start_restore(ctxt, verification_id, OperationKind.VERIFY)

    def _start_restore(self, ctxt: RequestContext, restore_id: str, kind: OperationKind) -> None:
        record_kind = RestoreKind.RESTORE if kind == OperationKind.RESTORE else RestoreKind.VERIFICATION
        restore = self.db.get_restore(restore_id, kind=record_kind)
        provider = self.registry.get(restore.provider_id)
        checkpoint = self._checkpoint(ctxt, provider, restore.checkpoint_id)
        try:
            bank_view = self.catalogues.of(provider).read(checkpoint.id)
        except exceptions.BankError as err:
            refused = admission.bank_unavailable(provider, err)
            # The API keeps the record of a run the service refused for the bank's sake: it says why.
            self.db.update_restore(restore.id, {"status": "fail", "resources_reason": {
                **restore.resources_reason, admission.RUN_REASON: str(refused)}})
            raise refused from err
        if bank_view.status != CheckpointStatus.AVAILABLE:
            raise exceptions.Conflict(reason=f"checkpoint {checkpoint.id} is {bank_view.status}, not available")
        if restore.restore_target:
            admission.check_restore_target(provider, checkpoint)
        schema = "restore_schema" if kind == OperationKind.RESTORE else "verify_schema"
        admission.validate_parameters(provider, restore.parameters, schema, "parameters")
        if kind == OperationKind.RESTORE:
            store = self.catalogues.of(provider).store
            admission.check_restore_parameters(
                ctxt, provider, checkpoint, restore.parameters,
                lambda resource: store.resource_section(checkpoint.id, resource.key, read_only=True))
        log = self.jobs.runner.start_log(kind, ctxt, provider.id, checkpoint, restore_id=restore.id)
        self.jobs.submit(Job(kind, ctxt, provider, checkpoint, log, restore=restore))

    # -- copy to a second bank ---------------------------------------------------

    def copy_checkpoint(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str,
                        target_provider_id: str, scheduled_operation_id: str | None = None,
                        retention_lock_days: int | None = None) -> dict[str, Any]:
        """Start copying an available checkpoint of ``provider_id`` into ``target_provider_id``'s bank, under
        the same id; returns the target's catalogue record (``copying``).  ``InvalidInput`` naming the field
        (same provider, an encrypted checkpoint to a clear bank, a resource type the target cannot restore),
        ``NotFound`` (checkpoint, either provider), ``Conflict`` (not available, already in the target)."""
        source = self.registry.get(provider_id)
        try:
            target = self.registry.get(target_provider_id)
        except exceptions.NotFound:
            raise exceptions.InvalidInput(reason=f"copy.parameters.target_provider_id: provider "
                                                 f"{target_provider_id} not found") from None
        lock_days = None
        if retention_lock_days is not None:
            lock_days = admission.check_retention_lock(target, retention_lock_days,
                                                       f"copy.parameters.{locks.LOCK_DAYS}")
        record = self._checkpoint(ctxt, source, checkpoint_id)
        if not ctxt.is_admin and record.project_id != ctxt.project_id:
            raise exceptions.InvalidInput(reason=f"copy.checkpoint_id: checkpoint {checkpoint_id} belongs to "
                                                 f"project {record.project_id}, not {ctxt.project_id}")
        source_catalogue, target_catalogue = self.catalogues.of(source), self.catalogues.of(target)
        try:
            bank_view = source_catalogue.read(checkpoint_id)
        except exceptions.BankError as err:
            raise admission.bank_unavailable(source, err) from err
        if bank_view.status != CheckpointStatus.AVAILABLE:
            raise exceptions.Conflict(reason=f"copy.checkpoint_id: checkpoint {checkpoint_id} is "
                                             f"{bank_view.status}, not available")
        copying.check_copyable(source, target, bank_view)
        fence = self.leases.fence(target)
        copied = copying.target_record(bank_view, source, self.owner_id, lock_days=lock_days)
        self.jobs.active.claim(checkpoint_id)
        try:
            copying.adopt_chunk_ids(source, target, checkpoint_id, bank_view.project_id)
            copied = target_catalogue.begin_copy(copied)
        except exceptions.Conflict:
            self.jobs.active.release(checkpoint_id)
            raise
        except BaseException as err:
            self.jobs.active.release(checkpoint_id)
            raise admission.bank_unavailable(target, err) from err
        try:
            log = copying.CopyRun.start_log(self.db, self.clock, self.host, ctxt.request_id, source, target, copied,
                                            scheduled_operation_id=scheduled_operation_id)
        except BaseException as err:
            try:
                target_catalogue.fail_copy(checkpoint_id, f"could not be started: {err}", self.owner_id, 0)
            finally:
                self.jobs.active.release(checkpoint_id)
            raise
        run = copying.CopyRun(self.db, source=source, target=target, source_catalogue=source_catalogue,
                              target_catalogue=target_catalogue, record=copied, log=log, fence=fence,
                              clock=self.clock, owner_id=self.owner_id, sweeping=self.jobs.runner.sweeping,
                              running=self.jobs.runner.running)
        self.jobs.submit_copy(checkpoint_id, run.run)
        return copied.to_dict()


    # -- files of a checkpoint's volumes (strongroom.protection.files) ----------------

    def _files_call(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str, call: str,
                    *args: Any) -> dict[str, Any]:
        provider = self.registry.get(provider_id)
        record = self._checkpoint(ctxt, provider, checkpoint_id)  # cross-project: NotFound
        try:
            result: dict[str, Any] = getattr(self.files, call)(provider, record, *args)
        except exceptions.BankError as err:
            raise admission.bank_unavailable(provider, err) from err
        return result

    def describe_volume(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str,
                        resource: str | None) -> dict[str, Any]:
        """The partition table of a checkpoint's volume and what each partition holds."""
        return self._files_call(ctxt, provider_id, checkpoint_id, "describe", resource)

    def list_files(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str, resource: str | None,
                   path: str, partition: int | None = None) -> dict[str, Any]:
        return self._files_call(ctxt, provider_id, checkpoint_id, "list", resource, path, partition)

    def stat_file(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str, resource: str | None,
                  path: str, partition: int | None = None) -> dict[str, Any]:
        return self._files_call(ctxt, provider_id, checkpoint_id, "stat", resource, path, partition)

    def read_file(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str, resource: str | None,
                  path: str, partition: int | None = None, offset: int = 0, length: int = 0) -> dict[str, Any]:
        return self._files_call(ctxt, provider_id, checkpoint_id, "read", resource, path, partition, offset,
                                length)

    def walk_files(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str, resource: str | None,
                   path: str, partition: int | None = None) -> dict[str, Any]:
        return self._files_call(ctxt, provider_id, checkpoint_id, "walk", resource, path, partition)

    def diff_checkpoints(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str,
                         other_checkpoint_id: str, resource: str | None, path: str | None = None,
                         partition: int | None = None) -> dict[str, Any]:
        provider = self.registry.get(provider_id)
        other = self._checkpoint(ctxt, provider, other_checkpoint_id)
        return self._files_call(ctxt, provider_id, checkpoint_id, "diff", other, resource, path, partition)
