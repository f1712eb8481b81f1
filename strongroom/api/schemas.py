"""JSON schemas of every request body, and :func:`validate`, whose errors name the field.

A failed validation raises :class:`strongroom.api.errors.BadRequest` with a message such as
``plan.resources[0].type: 'type' is a required property``.  Unknown keys are rejected, not ignored.
Every name and id field uses the rules of :mod:`strongroom.validation` (no control or bidi characters,
ids of a safe charset, ``restore_name`` a file name); so do the path parameters and query filters
(:func:`check_parameter`).  A message never quotes what was sent under a field that may hold a secret
(``restore_auth``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strongroom import exceptions
from strongroom.api.errors import BadRequest
from strongroom.validation import Rule, check, check_json, describe, first_error, string

_id = string(Rule.ID)
_name = string(Rule.NAME)
_optional_name = string(Rule.NAME, min_length=0)
_description = string(Rule.TEXT, min_length=0, max_length=1023, nullable=True)
_free_object = {"type": "object", "propertyNames": _name}

# Plan parameters: keyed by "type" or "type#id", each an object of plugin options.
_parameters = {"type": "object", "propertyNames": _name, "additionalProperties": _free_object}
# A plan's parameters also take ``retention_lock_days`` (doc/immutability.md): lock each checkpoint that long.
_lock_days = {"type": "integer", "minimum": 1, "maximum": 36_500}
_plan_parameters = {**_parameters, "properties": {"retention_lock_days": _lock_days}}
# Restore parameters: the same, and ``restore_name`` (Karbor's name of the restored resource) is a file name,
# ``restore_target`` (an existing volume to overwrite) a volume id, ``volume_type``/``availability_zone`` names.
_restore_parameters = {**_parameters, "additionalProperties": {
    **_free_object, "properties": {"restore_name": string(Rule.FILE_NAME), "restore_target": string(Rule.SEGMENT),
                                   "volume_type": _name, "availability_zone": _name}}}

#: The rule of each path parameter and query filter; any other parameter is a name.
PARAMETERS: dict[str, Rule] = {
    **{key: Rule.ID for key in (
        "project_id", "provider_id", "checkpoint_id", "plan_id", "restore_id", "verification_id",
        "operation_log_id", "trigger_id", "scheduled_operation_id", "service_id", "protectable_type")},
    "instance_id": Rule.SEGMENT,
    "resource_key": Rule.SEGMENT,  # OS::Cinder::Volume#<id>, a bare id, or "-"
    "to": Rule.ID,
    "quota_project_id": Rule.ID,
    "quota_class_name": Rule.ID,
    "marker": Rule.SEGMENT,  # the id of an item of the list: an instance's may be a file name
}


def _closed(properties: dict[str, Any], *, required: list[str] | None = None, **counts: int) -> dict[str, Any]:
    """An object of these properties and no others; ``counts`` are ``minProperties``/``maxProperties``."""
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required is not None:
        out["required"] = required
    return {**out, **counts, "additionalProperties": False}


def _wrapped(key: str, inner: dict[str, Any]) -> dict[str, Any]:
    """A body holding one object under ``key`` (``{"plan": {...}}``), as the Karbor v1 API wraps them."""
    return _closed({key: inner}, required=[key])


RESOURCE: dict[str, Any] = _closed({
    "id": string(Rule.SEGMENT),
    "type": _id,
    "name": _optional_name,
    "extra_info": {"type": ["object", "null"]},
}, required=["id", "type"])

PLAN_CREATE: dict[str, Any] = _wrapped("plan", _closed({
    "name": _name,
    "description": _description,
    "provider_id": _id,
    "parameters": _plan_parameters,
    "resources": {"type": "array", "items": RESOURCE, "minItems": 1},
}, required=["name", "provider_id", "resources"]))

PLAN_UPDATE: dict[str, Any] = _wrapped("plan", _closed({
    "name": _name,
    "description": _description,
    "status": {"type": "string", "enum": ["suspended", "started"]},
    "parameters": _plan_parameters,
    "resources": {"type": "array", "items": RESOURCE, "minItems": 1},
}, minProperties=1))

CHECKPOINT_CREATE: dict[str, Any] = _wrapped("checkpoint", _closed({
    "plan_id": _id,
    "extra_info": {"type": ["object", "null"]},
    "extra-info": {"type": ["object", "null"]},  # the spelling Karbor's client sends
}, required=["plan_id"]))

CHECKPOINT_RESET_STATE: dict[str, Any] = _wrapped("os-resetState", _closed(
    {"state": {"type": "string", "enum": ["available", "error"]}}, required=["state"]))

#: Karbor's copy action: ``plan_id`` and ``parameters``; which provider's bank the copies go to is a parameter.
COPY_PARAMETERS: dict[str, Any] = {**_closed({
    "target_provider_id": {**_id, "description": "The provider whose bank receives the copies (not the one in "
                                                 "the URL)"},
    "checkpoint_id": {**_id, "description": "Copy this available checkpoint of the plan only (default: every "
                                            "available checkpoint of the plan the target does not hold yet)"},
    "retention_lock_days": {**_lock_days, "description": "Lock each copy in the target's bank until its "
                                                         "checkpoint's creation plus this many days (the target's "
                                                         "bank must have object lock; doc/immutability.md)"},
}, required=["target_provider_id"]), "description": "What to copy where (doc/copy.md)"}

CHECKPOINT_ACTION: dict[str, Any] = _closed({
    "copy": _closed({"plan_id": _id, "parameters": COPY_PARAMETERS}, required=["plan_id", "parameters"]),
}, minProperties=1, maxProperties=1)

RESTORE_AUTH: dict[str, Any] = {**_closed({
    "type": {"type": "string", "enum": ["password"]},
    "username": _optional_name,
    "password": {"type": "string", "maxLength": 255},
}), "type": ["object", "null"]}

RESTORE_CREATE: dict[str, Any] = _wrapped("restore", _closed({
    "provider_id": _id,
    "checkpoint_id": _id,
    "restore_target": string(Rule.NAME, min_length=0, nullable=True),
    "restore_auth": RESTORE_AUTH,
    "parameters": _restore_parameters,
}, required=["provider_id", "checkpoint_id"]))

VERIFICATION_CREATE: dict[str, Any] = _wrapped("verification", _closed({
    "provider_id": _id,
    "checkpoint_id": _id,
    "parameters": _parameters,
}, required=["provider_id", "checkpoint_id"]))

# -- scheduling -----------------------------------------------------------------

_seconds = {"type": ["integer", "string", "null"]}  # Karbor's samples send the window as a string
_time = string(Rule.NAME, min_length=0, max_length=64, nullable=True)

TRIGGER_PROPERTIES: dict[str, Any] = _closed({
    "format": {"type": "string", "enum": ["crontab", "calendar"]},
    "pattern": string(Rule.TEXT, max_length=4096),  # a calendar (iCal) pattern has several lines
    "start_time": _time,
    "end_time": _time,
    "window": _seconds,
})

TRIGGER_CREATE: dict[str, Any] = _wrapped("trigger_info", _closed({
    "name": _name,
    "type": {"type": "string", "enum": ["time"]},
    "properties": {**TRIGGER_PROPERTIES, "required": ["pattern"]},
}, required=["name", "type", "properties"]))

TRIGGER_UPDATE: dict[str, Any] = _wrapped("trigger_info", _closed(
    {"name": _name, "properties": TRIGGER_PROPERTIES}, minProperties=1))

_count = {"type": ["integer", "string", "null"]}  # Karbor accepted "3" as well as 3

OPERATION_DEFINITION: dict[str, Any] = _closed({
    "provider_id": _id,
    "plan_id": _id,
    "max_backups": _count,
    "retention_duration": _count,
    **{key: {"type": ["integer", "null"]} for key in (
        "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")},
    "retention_lock_days": {**_lock_days, "type": ["integer", "null"]},
    "target_provider_id": {**_id, "description": "operation_type copy only: the provider whose bank receives "
                                                 "the copies (retention options then apply to the copies there)"},
}, required=["provider_id", "plan_id"])

SCHEDULED_OPERATION_CREATE: dict[str, Any] = _wrapped("scheduled_operation", _closed({
    "name": _name,
    "description": _description,
    "operation_type": {"type": "string", "enum": ["protect", "retention_protect", "copy"]},
    "trigger_id": _id,
    "operation_definition": OPERATION_DEFINITION,
}, required=["name", "operation_type", "trigger_id", "operation_definition"]))

SCHEDULED_OPERATION_ACTION: dict[str, Any] = _closed({
    "suspend": {"type": ["object", "null"], "maxProperties": 0},
    "resume": {"type": ["object", "null"], "maxProperties": 0},
}, minProperties=1, maxProperties=1)

# Karbor's body is not wrapped: {"status": "disabled", "disabled_reason": "..."}.
SERVICE_UPDATE: dict[str, Any] = _closed({
    "status": {"type": "string", "enum": ["enabled", "disabled"]},
    "disabled_reason": string(Rule.NAME, min_length=0, nullable=True),
}, required=["status"])

# Karbor's quota bodies: {"quota": {"plans": 10}}, {"quota_class": {"checkpoints": -1}}; -1 is unlimited.
_LIMITS: dict[str, Any] = _closed({key: {"type": "integer", "minimum": -1, "maximum": 2**31 - 1}
                                   for key in ("plans", "checkpoints")}, minProperties=1)
QUOTA_UPDATE: dict[str, Any] = _wrapped("quota", _LIMITS)
QUOTA_CLASS_UPDATE: dict[str, Any] = _wrapped("quota_class", _LIMITS)

ALL: dict[str, dict[str, Any]] = {
    "PlanCreate": PLAN_CREATE,
    "PlanUpdate": PLAN_UPDATE,
    "CheckpointCreate": CHECKPOINT_CREATE,
    "CheckpointResetState": CHECKPOINT_RESET_STATE,
    "CheckpointAction": CHECKPOINT_ACTION,
    "RestoreCreate": RESTORE_CREATE,
    "VerificationCreate": VERIFICATION_CREATE,
    "TriggerCreate": TRIGGER_CREATE,
    "TriggerUpdate": TRIGGER_UPDATE,
    "ScheduledOperationCreate": SCHEDULED_OPERATION_CREATE,
    "ScheduledOperationAction": SCHEDULED_OPERATION_ACTION,
    "ServiceUpdate": SERVICE_UPDATE,
    "QuotaUpdate": QUOTA_UPDATE,
    "QuotaClassUpdate": QUOTA_CLASS_UPDATE,
}


def validate(schema: dict[str, Any], body: Any) -> None:
    """Raise :class:`BadRequest` naming the first offending field (deterministically chosen)."""
    error = first_error(schema, body)
    if error is not None:
        raise BadRequest(reason=describe(error))


def check_text(value: Any, root: tuple[str | int, ...] = ()) -> None:
    """400 naming the field of ``value`` (a body, or JSON sent in query parameter ``root``) that holds NUL or
    a lone surrogate or nests absurdly deep (:func:`strongroom.validation.check_json`); run after
    :func:`validate`, whose messages name a field's own rule."""
    try:
        check_json(value, root)
    except exceptions.InvalidInput as err:
        raise BadRequest(reason=err.kwargs["reason"]) from None


def check_parameter(name: str, value: str) -> str:
    """``value`` of path parameter or query filter ``name`` if it obeys its rule, else 400 naming it."""
    try:
        return check(value, name, PARAMETERS.get(name, Rule.NAME))
    except exceptions.InvalidInput as err:
        raise BadRequest(reason=err.kwargs["reason"]) from None


def check_parameters(values: Mapping[str, str]) -> None:
    """:func:`check_parameter` for each of ``values`` (the path parameters of a request)."""
    for name, value in values.items():
        check_parameter(name, value)
