"""JSON schemas of every request body, and :func:`validate`, whose errors name the field.

A failed validation raises :class:`strongroom.api.errors.BadRequest` with a message such as
``plan.resources[0].type: 'type' is a required property``.  Unknown keys are rejected, not ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jsonschema
from jsonschema import exceptions as js_exceptions

from strongroom.api.errors import BadRequest

_uuidish = {"type": "string", "minLength": 1, "maxLength": 255}
_name = {"type": "string", "minLength": 1, "maxLength": 255}
_description = {"type": ["string", "null"], "maxLength": 1023}
_free_object = {"type": "object"}

# Plan parameters: keyed by "type" or "type#id", each an object of plugin options.
_parameters = {"type": "object", "additionalProperties": {"type": "object"}}


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
    "id": {"type": "string", "minLength": 1, "maxLength": 255},
    "type": {"type": "string", "minLength": 1, "maxLength": 255},
    "name": {"type": "string", "maxLength": 255},
    "extra_info": {"type": ["object", "null"]},
}, required=["id", "type"])

PLAN_CREATE: dict[str, Any] = _wrapped("plan", _closed({
    "name": _name,
    "description": _description,
    "provider_id": _uuidish,
    "parameters": _parameters,
    "resources": {"type": "array", "items": RESOURCE, "minItems": 1},
}, required=["name", "provider_id", "resources"]))

PLAN_UPDATE: dict[str, Any] = _wrapped("plan", _closed({
    "name": _name,
    "description": _description,
    "status": {"type": "string", "enum": ["suspended", "started"]},
    "parameters": _parameters,
    "resources": {"type": "array", "items": RESOURCE, "minItems": 1},
}, minProperties=1))

CHECKPOINT_CREATE: dict[str, Any] = _wrapped("checkpoint", _closed({
    "plan_id": _uuidish,
    "extra_info": {"type": ["object", "null"]},
    "extra-info": {"type": ["object", "null"]},  # the spelling Karbor's client sends
}, required=["plan_id"]))

CHECKPOINT_RESET_STATE: dict[str, Any] = _wrapped("os-resetState", _closed(
    {"state": {"type": "string", "enum": ["available", "error"]}}, required=["state"]))

CHECKPOINT_ACTION: dict[str, Any] = _closed({
    "copy": _closed({"plan_id": _uuidish, "parameters": _free_object}, required=["plan_id"]),
}, minProperties=1, maxProperties=1)

RESTORE_AUTH: dict[str, Any] = {**_closed({
    "type": {"type": "string", "enum": ["password"]},
    "username": {"type": "string", "maxLength": 255},
    "password": {"type": "string", "maxLength": 255},
}), "type": ["object", "null"]}

RESTORE_CREATE: dict[str, Any] = _wrapped("restore", _closed({
    "provider_id": _uuidish,
    "checkpoint_id": _uuidish,
    "restore_target": {"type": ["string", "null"], "maxLength": 255},
    "restore_auth": RESTORE_AUTH,
    "parameters": _parameters,
}, required=["provider_id", "checkpoint_id"]))

VERIFICATION_CREATE: dict[str, Any] = _wrapped("verification", _closed({
    "provider_id": _uuidish,
    "checkpoint_id": _uuidish,
    "parameters": _parameters,
}, required=["provider_id", "checkpoint_id"]))

# -- scheduling -----------------------------------------------------------------

_seconds = {"type": ["integer", "string", "null"]}  # Karbor's samples send the window as a string
_time = {"type": ["string", "null"], "maxLength": 64}

TRIGGER_PROPERTIES: dict[str, Any] = _closed({
    "format": {"type": "string", "enum": ["crontab", "calendar"]},
    "pattern": {"type": "string", "minLength": 1, "maxLength": 4096},
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
    "provider_id": _uuidish,
    "plan_id": _uuidish,
    "max_backups": _count,
    "retention_duration": _count,
    **{key: {"type": ["integer", "null"]} for key in (
        "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")},
}, required=["provider_id", "plan_id"])

SCHEDULED_OPERATION_CREATE: dict[str, Any] = _wrapped("scheduled_operation", _closed({
    "name": _name,
    "description": _description,
    "operation_type": {"type": "string", "enum": ["protect", "retention_protect"]},
    "trigger_id": _uuidish,
    "operation_definition": OPERATION_DEFINITION,
}, required=["name", "operation_type", "trigger_id", "operation_definition"]))

SCHEDULED_OPERATION_ACTION: dict[str, Any] = _closed({
    "suspend": {"type": ["object", "null"], "maxProperties": 0},
    "resume": {"type": ["object", "null"], "maxProperties": 0},
}, minProperties=1, maxProperties=1)

# Karbor's body is not wrapped: {"status": "disabled", "disabled_reason": "..."}.
SERVICE_UPDATE: dict[str, Any] = _closed({
    "status": {"type": "string", "enum": ["enabled", "disabled"]},
    "disabled_reason": {"type": ["string", "null"], "maxLength": 255},
}, required=["status"])

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
}


def json_path(parts: Iterable[str | int]) -> str:
    """``["plan", "resources", 0, "type"]`` -> ``plan.resources[0].type``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _describe(error: js_exceptions.ValidationError) -> str:
    parts: list[str | int] = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.validator_value, list):
        instance = error.instance if isinstance(error.instance, dict) else {}
        missing = [name for name in error.validator_value if name not in instance]
        if missing:
            parts.append(missing[0])
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in known)
        if extra:
            parts.append(extra[0])
            return f"{json_path(parts)}: unknown field {extra[0]!r}"
    path = json_path(parts) or "body"
    if len(error.message) > 300:  # never echo a huge instance back
        return f"{path}: failed {error.validator!r} validation"
    return f"{path}: {error.message}"


def validate(schema: dict[str, Any], body: Any) -> None:
    """Raise :class:`BadRequest` naming the first offending field (deterministically chosen)."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(body), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    if errors:
        best = js_exceptions.best_match(errors)
        raise BadRequest(reason=_describe(best))
