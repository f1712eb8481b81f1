"""What protection checks before it accepts a request: parameters, restore targets, repeated fires.

Each check raises the error the API turns into a 4xx naming the field; none
of them writes anything.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Callable
from typing import Any

from strongroom import exceptions, validation
from strongroom.bank_plugins import BankSection
from strongroom.context import RequestContext
from strongroom.db.api import Database
from strongroom.objects import locks
from strongroom.objects.kinds import FIRE_KEY
from strongroom.objects.records import CheckpointRecord, Plan, Resource
from strongroom.protection import graph as graph_mod
from strongroom.protection.providers import Provider

__all__ = ["FIRE_KEY", "RUN_REASON", "bank_unavailable", "check_restore_parameters", "check_restore_target",
           "check_retention_lock", "parameters_key", "same_fire", "validate_parameters"]

#: The key of ``resources_reason`` that says why a whole restore or verification failed.
RUN_REASON = "_"


def validate_parameters(provider: Provider, parameters: dict[str, Any], schema_name: str, field: str) -> None:
    """``parameters`` (``type`` or ``type#id`` -> object) against each plugin's ``schema_name`` schema."""
    if not isinstance(parameters, dict):
        raise exceptions.InvalidInput(reason=f"{field} must be an object")
    for key, value in parameters.items():
        if key == locks.LOCK_DAYS and schema_name == "options_schema":
            check_retention_lock(provider, value, f"{field}.{key}")
            continue
        rtype = key.split("#", 1)[0]
        plugin = provider.plugin_for_type.get(rtype)
        if plugin is None:
            raise exceptions.InvalidInput(
                reason=f"{field}.{key}: provider {provider.name} has no plugin for resource type {rtype!r}")
        err = validation.first_error(getattr(plugin, schema_name), value)
        if err is not None:  # names the field, never quotes a secret or a name's bad characters
            raise exceptions.InvalidInput(reason=validation.describe(err, [field, key]))


def check_retention_lock(provider: Provider, value: Any, field: str) -> int:
    """``retention_lock_days`` as days, if ``provider``'s bank can lock objects; else ``InvalidInput`` (400)
    naming the field, the provider and its bank: a lock the bank cannot keep is refused, never ignored."""
    days = locks.check_lock_days(value, field)
    if not provider.bank.supports_object_lock:
        raise exceptions.InvalidInput(
            reason=f"{field}: bank {provider.bank_name!r} of provider {provider.id} ({provider.name}) cannot lock "
                   f"objects (immutable retention needs an s3 bank with object_lock = true; filesystem and "
                   f"Swift banks have no object lock)")
    return days


def check_restore_target(provider: Provider, checkpoint: CheckpointRecord) -> None:
    """A restore to another target needs every resource type's plugin to support one."""
    unsupported = sorted({n.resource.type for n in graph_mod.iter_nodes(
        graph_mod.deserialize(checkpoint.resource_graph))
        if not provider.plugin_for(n.resource.type).supports_restore_target})
    if unsupported:
        raise exceptions.InvalidInput(
            reason=f"restore_target is not supported by provider {provider.name} for {', '.join(unsupported)}")


def parameters_key(parameters: dict[str, Any], resource: Resource) -> str | None:
    """Which key of ``parameters`` holds ``resource``'s: ``type#id`` wins over ``type``; None if neither."""
    for key in (resource.key, resource.type):
        if isinstance(parameters.get(key), dict):
            return key
    return None


def check_restore_parameters(context: RequestContext, provider: Provider, checkpoint: CheckpointRecord,
                             parameters: dict[str, Any], sections: Callable[[Resource], BankSection],
                             field: str = "parameters") -> None:
    """Each resource's restore parameters as its plugin can honour them now (``check_restore``): the error
    names the field, ``parameters.<type or type#id>.<name>``, and keeps its class (400 or 409)."""
    for node in graph_mod.iter_nodes(graph_mod.deserialize(checkpoint.resource_graph)):
        resource = node.resource
        key = parameters_key(parameters, resource)
        given = parameters.get(key) if key else None
        if not isinstance(given, dict) or not given:
            continue
        plugin = provider.plugin_for(resource.type)
        try:
            plugin.check_restore(context, resource, sections(resource), given, per_resource=key == resource.key)
        except (exceptions.InvalidInput, exceptions.Conflict) as err:
            reason = err.kwargs.get("reason", str(err))
            raise type(err)(**{**err.kwargs, "reason": f"{field}.{key}.{reason}"}) from err


def same_fire(db: Database, provider: Provider, plan: Plan, extra_info: dict[str, Any]) -> CheckpointRecord | None:
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
    for record in db.list_checkpoints(provider.id, plan.project_id, filters=filters):
        if (record.extra_info or {}).get(FIRE_KEY) == fire:
            return record
    return None


def bank_unavailable(provider: Provider, err: BaseException) -> BaseException:
    """A bank failure as an error naming the bank and the cause; anything else as it is.

    A transient one becomes ``ServiceUnavailable``; the others keep their class (a full or
    read-only bank, a damaged object), which says how the API answers.
    """
    where = provider.bank_description
    if isinstance(err, exceptions.BankTransientError):
        return exceptions.ServiceUnavailable(what=where, reason=str(err))
    if isinstance(err, exceptions.BankError) and not isinstance(err, exceptions.BankObjectNotFound):
        message = err.message
        if where in message:
            return err
        return type(err)(f"{where}: {message}", **err.kwargs)
    return err
