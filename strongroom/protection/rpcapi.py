"""Client side of the protection service's RPC API (topic ``strongroom-protection``).

The API and the operation engine reach protection only through this class.
Long work is never a blocking call: ``protect``, ``delete_checkpoint``,
``restore`` and ``verify`` return as soon as the job is accepted (validation
errors come back at once as our own exceptions); progress is read from the
metadata store.
"""

from __future__ import annotations

from typing import Any

import oslo_messaging as messaging

from strongroom import rpc
from strongroom.context import RequestContext

RPC_VERSION = "1.0"


class ProtectionAPI:
    def __init__(self, transport: messaging.Transport, topic: str = "strongroom-protection",
                 timeout: int = 60) -> None:
        self._client = rpc.get_client(transport, topic, RPC_VERSION, timeout=timeout)

    def _call(self, ctxt: RequestContext, method: str, **kwargs: Any) -> Any:
        return self._client.prepare().call(ctxt, method, **kwargs)

    # -- providers and protectables (quick calls) --------------------------

    def list_providers(self, ctxt: RequestContext) -> list[dict[str, Any]]:
        """``[{id, name, description, extended_info_schema}]``, sorted by name."""
        return list(self._call(ctxt, "list_providers"))

    def show_provider(self, ctxt: RequestContext, provider_id: str) -> dict[str, Any]:
        """Raises ``NotFound`` for an unknown id."""
        return dict(self._call(ctxt, "show_provider", provider_id=provider_id))

    def show_provider_backends(self, ctxt: RequestContext, provider_id: str) -> list[dict[str, Any]]:
        """``[{name, driver, pools: [{name, total_bytes, free_bytes, allocated_bytes}], error?}]`` of the
        provider's block backends.  Raises ``NotFound``, and ``Forbidden`` unless ``ctxt`` is an admin's."""
        return list(self._call(ctxt, "show_provider_backends", provider_id=provider_id))

    def list_alerts(self, ctxt: RequestContext, all_tenants: bool = False) -> list[dict[str, Any]]:
        """The alerts ``ctxt``'s project sees (every alert with ``all_tenants``: ``Forbidden`` unless admin)."""
        return list(self._call(ctxt, "list_alerts", all_tenants=all_tenants))

    def list_pools(self, ctxt: RequestContext) -> list[dict[str, Any]]:
        """``[{provider_id, provider_name, block_backends: [...]}]``, as ``show_provider_backends`` for each
        provider.  Raises ``Forbidden`` unless ``ctxt`` is an admin's."""
        return list(self._call(ctxt, "list_pools"))

    def usage(self, ctxt: RequestContext, project_id: str | None,
              provider_id: str | None = None) -> list[dict[str, Any]]:
        """One row of :func:`strongroom.protection.usage.bank_usage` per provider and project (project None:
        every project, for admins).  Raises ``NotFound`` for an unknown provider, ``Forbidden``."""
        return list(self._call(ctxt, "usage", project_id=project_id, provider_id=provider_id))

    def list_protectable_types(self, ctxt: RequestContext) -> list[str]:
        return list(self._call(ctxt, "list_protectable_types"))

    def show_protectable_type(self, ctxt: RequestContext, protectable_type: str) -> dict[str, Any]:
        """``{name, dependent_types}``.  Raises ``NotFound``."""
        return dict(self._call(ctxt, "show_protectable_type", protectable_type=protectable_type))

    def list_protectable_instances(self, ctxt: RequestContext, protectable_type: str,
                                   parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """``[{id, type, name, extra_info}]`` sorted by id.  Raises ``NotFound`` for the type."""
        return list(self._call(ctxt, "list_protectable_instances", protectable_type=protectable_type,
                               parameters=parameters or {}))

    def show_protectable_instance(self, ctxt: RequestContext, protectable_type: str, instance_id: str,
                                  parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{id, type, name, extra_info, dependent_resources: [...]}``.  Raises ``NotFound``."""
        return dict(self._call(ctxt, "show_protectable_instance", protectable_type=protectable_type,
                               instance_id=instance_id, parameters=parameters or {}))

    def show_plan_resources(self, ctxt: RequestContext, provider_id: str,
                            resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """For each ``{type, id}``, in order, ``{"instance": {id, type, name, extra_info}}`` as the provider's
        protection plugin for the type would find it (in its block backend), or ``{"missing": message}``
        naming the resource, its type and the provider.  Raises ``NotFound`` (the provider, a type),
        ``BlockUnavailable``/``ServiceUnavailable`` naming a backend that cannot be asked."""
        return list(self._call(ctxt, "show_plan_resources", provider_id=provider_id,
                               resources=[{"type": r["type"], "id": r["id"]} for r in resources]))

    def validate_plan_parameters(self, ctxt: RequestContext, provider_id: str,
                                 parameters: dict[str, Any]) -> None:
        """Raises ``InvalidInput`` naming the key when parameters break the options schema."""
        self._call(ctxt, "validate_plan_parameters", provider_id=provider_id, parameters=parameters)

    def check_retention_lock(self, ctxt: RequestContext, provider_id: str, days: Any, field: str) -> None:
        """Raises ``InvalidInput`` naming ``field`` (and the bank) unless the provider's bank can lock
        objects for ``days`` (``retention_lock_days``)."""
        self._call(ctxt, "check_retention_lock", provider_id=provider_id, days=days, field=field)

    # -- long operations (accepted at once, run in the background) ---------

    def protect(self, ctxt: RequestContext, plan: dict[str, Any], provider_id: str,
                extra_info: dict[str, Any] | None = None,
                scheduled_operation_id: str | None = None,
                retention_lock_days: int | None = None) -> dict[str, Any]:
        """Create a checkpoint of ``plan`` (a ``Plan.to_dict()``) and start protecting it; with
        ``retention_lock_days`` (a scheduled operation's option), lock it in the bank for that long.

        Returns the catalogue record (``CheckpointRecord.to_dict()``) in status
        ``protecting``.
        """
        return dict(self._call(ctxt, "protect", plan=plan, provider_id=provider_id,
                               extra_info=extra_info or {},
                               scheduled_operation_id=scheduled_operation_id,
                               **({"retention_lock_days": retention_lock_days}
                                  if retention_lock_days is not None else {})))

    def delete_checkpoint(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str) -> None:
        """Move the checkpoint to ``deleting`` and delete it in the background.

        Raises ``NotFound``, or ``InvalidStatusTransition`` (409) from ``protecting``.
        """
        self._call(ctxt, "delete_checkpoint", provider_id=provider_id, checkpoint_id=checkpoint_id)

    def reset_checkpoint_state(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str,
                               state: str) -> None:
        """Admin: force ``available`` or ``error`` in the bank and the catalogue."""
        self._call(ctxt, "reset_checkpoint_state", provider_id=provider_id,
                   checkpoint_id=checkpoint_id, state=state)

    def read_resource_data(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str, resource_key: str,
                           offset: int, length: int) -> dict[str, Any]:
        """``{size, offset, data}`` (data base64, at most ``volume_data.MAX_RANGE`` bytes) of a volume of an
        available checkpoint.  Raises ``NotFound`` (provider, checkpoint, resource), ``Conflict`` (not available)."""
        return dict(self._call(ctxt, "read_resource_data", provider_id=provider_id, checkpoint_id=checkpoint_id,
                               resource_key=resource_key, offset=offset, length=length))

    def restore(self, ctxt: RequestContext, restore_id: str) -> None:
        """Run the restore whose record (``in_progress``) the caller created."""
        self._call(ctxt, "restore", restore_id=restore_id)

    def verify(self, ctxt: RequestContext, verification_id: str) -> None:
        """Run the verification whose record (``in_progress``) the caller created."""
        self._call(ctxt, "verify", verification_id=verification_id)

    def copy_checkpoint(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str,
                        target_provider_id: str, scheduled_operation_id: str | None = None,
                        retention_lock_days: int | None = None) -> dict[str, Any]:
        """Start copying an available checkpoint into ``target_provider_id``'s bank under the same id; returns
        the target's record (``copying``); with ``retention_lock_days``, the copy is locked there that long
        after the checkpoint's creation.  Raises ``InvalidInput`` naming the field, ``NotFound``, or
        ``Conflict`` (the checkpoint is not available, or the target already holds it)."""
        return dict(self._call(ctxt, "copy_checkpoint", provider_id=provider_id, checkpoint_id=checkpoint_id,
                               target_provider_id=target_provider_id,
                               scheduled_operation_id=scheduled_operation_id,
                               **({"retention_lock_days": retention_lock_days}
                                  if retention_lock_days is not None else {})))


    # -- files of a checkpoint's volumes (quick calls; strongroom.protection.files) -------

    def describe_volume(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str,
                        resource: str | None) -> dict[str, Any]:
        """``{resource, size, table, partitions: [{number, offset, size, type, name, filesystem}]}``."""
        return dict(self._call(ctxt, "describe_volume", provider_id=provider_id, checkpoint_id=checkpoint_id,
                               resource=resource))

    def list_files(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str, resource: str | None,
                   path: str, partition: int | None = None) -> dict[str, Any]:
        """``{resource, filesystem, path, files: [{path, name, type, size, mode, uid, gid, mtime, target?}]}``.
        Raises ``NotFound`` (checkpoint, resource or path), ``InvalidInput`` (not a directory, unreadable
        filesystem), ``Conflict`` (checkpoint not available)."""
        return dict(self._call(ctxt, "list_files", provider_id=provider_id, checkpoint_id=checkpoint_id,
                               resource=resource, path=path, partition=partition))

    def stat_file(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str, resource: str | None,
                  path: str, partition: int | None = None) -> dict[str, Any]:
        """``{resource, filesystem, file}``."""
        return dict(self._call(ctxt, "stat_file", provider_id=provider_id, checkpoint_id=checkpoint_id,
                               resource=resource, path=path, partition=partition))

    def read_file(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str, resource: str | None,
                  path: str, partition: int | None = None, offset: int = 0, length: int = 0) -> dict[str, Any]:
        """``{file, offset, data}``: at most 4 MiB of a regular file from ``offset``, base64 in ``data``."""
        return dict(self._call(ctxt, "read_file", provider_id=provider_id, checkpoint_id=checkpoint_id,
                               resource=resource, path=path, partition=partition, offset=offset, length=length))

    def walk_files(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str, resource: str | None,
                   path: str, partition: int | None = None) -> dict[str, Any]:
        """``{resource, filesystem, files}``: ``path`` and everything under it, depth first."""
        return dict(self._call(ctxt, "walk_files", provider_id=provider_id, checkpoint_id=checkpoint_id,
                               resource=resource, path=path, partition=partition))

    def diff_checkpoints(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str,
                         other_checkpoint_id: str, resource: str | None, path: str | None = None,
                         partition: int | None = None) -> dict[str, Any]:
        """``{resource, from, to, size, changed_ranges: [[offset, length]], changed_bytes, files?}``."""
        return dict(self._call(ctxt, "diff_checkpoints", provider_id=provider_id, checkpoint_id=checkpoint_id,
                               other_checkpoint_id=other_checkpoint_id, resource=resource, path=path,
                               partition=partition))
