"""JSON schemas of every response body, beside the request schemas (:mod:`strongroom.api.schemas`).

Each is the shape the controller's ``view`` returns, closed (``additionalProperties: false``) wherever the
server decides the keys, so a field added to a view without its schema fails the schemathesis run of
``make test`` instead of reaching clients undocumented.  Free-form objects (``extra_info``, ``parameters``,
a provider's plugin schemas) stay open.  :data:`ALL` names them for the OpenAPI document; a route names
its body by one of those names (:attr:`strongroom.api.routes.Route.response_schema`).
"""

from __future__ import annotations

from typing import Any

from strongroom.objects.scheduling import FireState, OperationType
from strongroom.objects.status import CheckpointStatus, PlanStatus, RestoreStatus

_string: dict[str, Any] = {"type": "string"}
_maybe_string: dict[str, Any] = {"type": ["string", "null"]}
_time: dict[str, Any] = {"type": "string", "format": "date-time"}
_maybe_time: dict[str, Any] = {"type": ["string", "null"], "format": "date-time"}
_object: dict[str, Any] = {"type": "object"}
_count: dict[str, Any] = {"type": "integer", "minimum": 0}


def _closed(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """An object of exactly these properties, all required but ``optional``."""
    return {"type": "object", "properties": properties,
            "required": [key for key in properties if key not in optional], "additionalProperties": False}


def _enum(values: Any) -> dict[str, Any]:
    return {"type": "string", "enum": [str(v) for v in values]}


RESOURCE = _closed({"id": _string, "type": _string, "name": _string, "extra_info": _object})

PLAN = _closed({
    "id": _string, "name": _string, "description": _string, "provider_id": _string, "project_id": _string,
    "status": _enum(PlanStatus), "parameters": _object, "resources": {"type": "array", "items": RESOURCE},
    "created_at": _time,
})

CHECKPOINT = _closed({
    "id": _string, "project_id": _string, "status": _enum(CheckpointStatus), "status_reason": _maybe_string,
    "protection_plan": _closed({"id": _maybe_string, "name": _maybe_string, "provider_id": _string,
                                "resources": {"type": "array", "items": _object}}),
    "resource_graph": {"type": "string", "description": "the resource graph as JSON text"},
    "resources": {"type": "array", "description": (
        "the resource graph as a list in the order of an indented tree (depth 0: a root), with what each "
        "resource's protect did; null where the checkpoint has no such figure (an older checkpoint, a run "
        "still going, a failed run's sizes)"),
        "items": _closed({
            "id": _string, "type": _string, "name": _maybe_string,
            "depth": {**_count, "description": "0 for a root, 1 for its dependents..."},
            "status": {**_maybe_string, "description": "the resource's status at the end of the protect"},
            "size_bytes": {"type": ["integer", "null"], "minimum": 0,
                           "description": "logical size: bytes of the volume protected"},
            "stored_bytes": {"type": ["integer", "null"], "minimum": 0,
                             "description": "bytes written to the bank for new chunks (compressed)"},
            "seconds": {"type": ["number", "null"], "minimum": 0,
                        "description": "seconds the resource's protect hooks ran"}})},
    "created_at": _time, "extra_info": _object,
    "progress": _closed({"bytes_total": _count, "bytes_done": _count}),
    "copies": {"type": "array", "description": "the checkpoint in other providers' banks (show only)",
               "items": _closed({"provider_id": _string, "status": _enum(CheckpointStatus),
                                 "status_reason": _maybe_string})},
}, optional=("copies",))

CHECKPOINT_COPY = _closed({
    "project_id": _string, "provider_id": _string, "plan_id": _string, "parameters": _object,
    "checkpoints": {"type": "array", "items": _string,
                    "description": "the checkpoints whose copy started (copying in the target provider)"},
})

_RUN = {
    "id": _string, "project_id": _string, "provider_id": _string, "checkpoint_id": _string,
    "parameters": _object, "status": _enum(RestoreStatus),
    "resources_status": {"type": "object", "additionalProperties": _string},
    "resources_reason": {"type": "object", "additionalProperties": _string},
    "extra_info": _object, "created_at": _time,
}
RESTORE = _closed({**_RUN, "restore_target": _maybe_string})
VERIFICATION = _closed(_RUN)

OPERATION_LOG = _closed({
    "id": _string, "project_id": _string, "operation_type": _string, "status": _string,
    **{key: _maybe_string for key in ("provider_id", "checkpoint_id", "plan_id", "restore_id",
                                      "scheduled_operation_id", "host", "error_info")},
    "extra_info": _object, "started_at": _maybe_time, "ended_at": _maybe_time, "created_at": _time,
})

_POOL = _closed({"name": _string, "total_bytes": _count, "free_bytes": _count, "allocated_bytes": _count})
#: One block backend of a provider as an administrator sees it (:mod:`strongroom.protection.capacity`).
BLOCK_BACKEND = _closed({"name": _string, "driver": _string, "pools": {"type": "array", "items": _POOL},
                         "error": _string}, optional=("error",))

PROVIDER = _closed({
    "id": _string, "name": _string, "description": _string,
    "extended_info_schema": _closed({key: _object for key in (
        "options_schema", "restore_schema", "saved_info_schema", "verify_schema")}),
    "status": _enum(("available", "unavailable")), "status_reason": _maybe_string,
    "extra_info": {**_closed({"block_backends": {"type": "array", "items": BLOCK_BACKEND}}),
                   "description": "administrators only (policy rule provider:block_backends), on a show"},
}, optional=("extra_info",))

PROTECTABLE_TYPE = _closed({"name": _string, "dependent_types": {"type": "array", "items": _string}})
_INSTANCE = {"id": _string, "type": _maybe_string, "name": _string, "extra_info": _object}
INSTANCE = _closed(_INSTANCE)
INSTANCE_WITH_DEPENDENTS = _closed({**_INSTANCE, "dependent_resources": {"type": "array", "items": INSTANCE}})

TRIGGER = _closed({
    "id": _string, "name": _string, "type": _enum(("time",)), "project_id": _string,
    "properties": _closed({"format": _enum(("crontab", "calendar")), "pattern": _string,
                           "start_time": _string, "end_time": _maybe_string, "window": _count}),
})

SCHEDULED_OPERATION = _closed({
    "id": _string, "name": _string, "description": _string, "operation_type": _enum(OperationType),
    "project_id": _string, "trigger_id": _string, "operation_definition": _object,
    "enabled": {"type": "boolean"}, "created_at": _time, "next_fire_time": _maybe_time,
})

SCHEDULED_OPERATION_LOG = _closed({
    "id": _string, "operation_id": _string, "state": _enum(FireState),
    **{key: _maybe_time for key in ("expect_start_time", "window_end_time", "triggered_time",
                                    "actual_start_time", "end_time")},
    "checkpoint_id": _maybe_string, "error_info": _maybe_string, "extra_info": _object,
    "engine": _maybe_string, "attempts": _count,
})

SERVICE = _closed({
    "id": {"type": "integer"}, "binary": _string, "host": _string, "status": _enum(("enabled", "disabled")),
    "state": _enum(("up", "down")), "updated_at": _maybe_time, "disabled_reason": _maybe_string,
})

#: An alert (``doc/alerts.md``): ``project_id`` null for infrastructure (a bank, a pool), ``cause_id`` the alert
#: an ``at_risk`` alert was carried from.
ALERT = _closed({
    "id": _string, "condition": _string, "severity": _enum(("info", "warning", "error")), "resource_type": _string,
    "resource_id": _string, "resource_name": _string, "project_id": _maybe_string, "message": _string,
    "active": {"type": "boolean"}, "raised_at": _time, "cleared_at": _maybe_time, "cause_id": _maybe_string,
})

_limit: dict[str, Any] = {"type": "integer", "minimum": -1}
#: Karbor's quota views: the limits (-1 unlimited) and the project's id or the class's name.
QUOTA = _closed({"id": _string, "plans": _limit, "checkpoints": _limit})
QUOTA_CLASS = QUOTA
_USAGE = _closed({"limit": _limit, "in_use": _count, "reserved": _count})
_bytes: dict[str, Any] = {"type": ["integer", "null"], "minimum": 0}
_ratio: dict[str, Any] = {"type": "number", "minimum": 0}
#: One provider's (and project's) usage; the figures are defined in strongroom.protection.usage.
USAGE = _closed({
    "provider_id": _string, "project_id": _string,
    "checkpoints": {"type": "object", "propertyNames": _enum(CheckpointStatus), "additionalProperties": _count},
    "logical_bytes": _count, "referenced_bytes": _count, "unique_bytes": _count, "chunk_bytes": _count,
    "checkpoint_bytes": _count, "stored_bytes": _count, "unreferenced_chunk_bytes": _count,
    "unreadable_checkpoints": _count,
    "dedup_ratio": _ratio, "compression_ratio": _ratio,
})
#: A block backend pool, after Cinder's ``get_pools`` (``<backend>#<pool>``); capacity null with an error.
POOL = _closed({
    "name": _string, "pool": _maybe_string, "provider_id": _string, "provider_name": _string,
    "block_backend": _string, "driver": _string, "total_bytes": _bytes, "free_bytes": _bytes,
    "allocated_bytes": _bytes, "error": _maybe_string,
})
QUOTA_DETAIL = _closed({"id": _string, "plans": _USAGE, "checkpoints": _USAGE})

#: An error answer: ``{"badRequest": {"code": 400, "title": "Bad Request", "message": "..."}}``.
ERROR: dict[str, Any] = {
    "type": "object", "minProperties": 1, "maxProperties": 1,
    "description": "{\"<title in lowerCamelCase>\": {\"code\": ..., \"title\": ..., \"message\": ...}}",
    "additionalProperties": _closed({"code": {"type": "integer"}, "title": _string, "message": _string}),
}

#: The item schemas by component name; a route's ``response_schema`` names one of these.
_int: dict[str, Any] = {"type": "integer"}
FILESYSTEM = _closed({"table": _enum(("gpt", "mbr", "none")), "partition": {"type": ["integer", "null"]},
                      "offset": _count, "filesystem": _string})
FILE = _closed({"path": _string, "name": _string, "type": _string, "size": _count,
                "mode": {"type": "string", "pattern": "^[0-7]{4}$"}, "uid": _count, "gid": _count,
                "mtime": _time, "target": _string}, optional=("target",))
VOLUME_LAYOUT = _closed({
    "resource": _string, "size": _count, "table": _enum(("gpt", "mbr", "none")),
    "filesystem": _maybe_string,
    "partitions": {"type": "array", "items": _closed({
        "number": _count, "offset": _count, "size": _count, "type": _string, "name": _string,
        "filesystem": _maybe_string})},
}, optional=("filesystem",))
DIRECTORY = _closed({"resource": _string, "filesystem": FILESYSTEM, "path": _string,
                     "files": {"type": "array", "items": FILE}})
FILE_STAT = _closed({"resource": _string, "filesystem": FILESYSTEM, "file": FILE})
_MODIFIED = {**FILE, "properties": {**FILE["properties"], "changed": {"type": "array", "items": _string},
                                    "before": _object},
             "required": [*FILE["required"], "changed", "before"]}
CHECKPOINT_DIFF = _closed({
    "resource": _string, "from": _string, "to": _string, "size": _closed({"from": _count, "to": _count}),
    "changed_ranges": {"type": "array", "items": {"type": "array", "items": _count, "minItems": 2,
                                                  "maxItems": 2}},
    "changed_bytes": _count, "filesystem": FILESYSTEM,
    "files": _closed({"added": {"type": "array", "items": FILE}, "removed": {"type": "array", "items": FILE},
                      "modified": {"type": "array", "items": _MODIFIED}}),
}, optional=("filesystem", "files"))

ALL: dict[str, dict[str, Any]] = {
    "Plan": PLAN,
    "Checkpoint": CHECKPOINT,
    "CheckpointCopy": CHECKPOINT_COPY,
    "Restore": RESTORE,
    "Verification": VERIFICATION,
    "OperationLog": OPERATION_LOG,
    "Provider": PROVIDER,
    "ProtectableTypeName": _string,
    "ProtectableType": PROTECTABLE_TYPE,
    "ProtectableInstance": INSTANCE,
    "ProtectableInstanceWithDependents": INSTANCE_WITH_DEPENDENTS,
    "Trigger": TRIGGER,
    "ScheduledOperation": SCHEDULED_OPERATION,
    "ScheduledOperationLog": SCHEDULED_OPERATION_LOG,
    "Service": SERVICE,
    "Alert": ALERT,
    "Quota": QUOTA,
    "QuotaDetail": QUOTA_DETAIL,
    "QuotaClass": QUOTA_CLASS,
    "Usage": USAGE,
    "Pool": POOL,
    "VolumeLayout": VOLUME_LAYOUT,
    "Directory": DIRECTORY,
    "FileStat": FILE_STAT,
    "CheckpointDiff": CHECKPOINT_DIFF,
}
