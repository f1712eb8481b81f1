"""``/v1/{project_id}/providers/{provider_id}/checkpoints``.

Create asks the protection service to protect a plan and returns the ``protecting`` record it made; list
and show read the catalogue (newest first by default); delete and reset-state go to the protection
service and answer 202.  ``extra_info`` given at creation is kept (also accepted as ``extra-info``, the
spelling Karbor's client sends).  ``resource_graph`` is JSON text.  Under an unknown provider every
route answers 404 naming the provider (a list included: it is not an empty list).
"""

from __future__ import annotations

import functools
from typing import Any

from strongroom import exceptions
from strongroom.api import common, schemas
from strongroom.api.common import ApiRequest, Result
from strongroom.api.errors import BadRequest
from strongroom.objects.locks import LOCK_DAYS
from strongroom.objects.records import CheckpointRecord, Plan, iso_time
from strongroom.objects.status import CheckpointStatus
from strongroom.protection import graph as graph_mod
from strongroom.protection.catalogue import PROTECTED

SORT_KEYS = ("created_at", "updated_at", "status", "id")
FILTERS = ("plan_id", "status")


def view(cp: CheckpointRecord) -> dict[str, Any]:
    plan = cp.protection_plan or {}
    return {
        "id": cp.id,
        "project_id": cp.project_id,
        "status": cp.status,
        "status_reason": cp.status_reason,
        "protection_plan": {
            "id": plan.get("id", cp.plan_id),
            "name": plan.get("name"),
            "provider_id": plan.get("provider_id", cp.provider_id),
            "resources": plan.get("resources", []),
        },
        "resource_graph": cp.resource_graph,
        "resources": resources(cp),
        "created_at": iso_time(cp.created_at),  # not to_dict(): it copies every field
        "extra_info": cp.extra_info or {},
        "progress": {"bytes_total": cp.bytes_total, "bytes_done": cp.bytes_done},
    }


def resources(cp: CheckpointRecord) -> list[dict[str, Any]]:
    """The resource graph as a readable list, in the order of an indented tree (``depth`` 0: a root), each
    resource with what its protect did (``extra_info.protected``): status, logical size, bytes stored (new
    chunks) and seconds.  A figure the checkpoint does not have (an older checkpoint, a run still going, a
    failed run's sizes) is null; a resource without a status of its own takes the checkpoint's if it is
    ``available``."""
    try:
        roots = graph_mod.deserialize(cp.resource_graph) if cp.resource_graph else []
    except (exceptions.StrongroomError, AttributeError, LookupError, TypeError, ValueError):
        return []  # an unreadable graph: ``resource_graph`` still shows it as it is
    protected = (cp.extra_info or {}).get(PROTECTED)
    protected = protected if isinstance(protected, dict) else {}
    out = []
    for depth, node in graph_mod.outline(roots):
        r = node.resource
        done = protected.get(r.key)
        done = done if isinstance(done, dict) else {}
        status = done.get("status")
        if not isinstance(status, str):
            status = str(cp.status) if cp.status == CheckpointStatus.AVAILABLE else None
        out.append({"id": r.id, "type": r.type, "name": r.name, "depth": depth, "status": status,
                    "size_bytes": _count(done.get("size_bytes")), "stored_bytes": _count(done.get("bytes_stored")),
                    "seconds": _seconds(done.get("seconds"))})
    return out


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


def _check_provider(req: ApiRequest, provider_id: str) -> None:
    """404 naming the provider when it is unknown: a list under it would otherwise look merely empty."""
    req.check_provider(provider_id)


def create(req: ApiRequest, provider_id: str) -> Result:
    req.authorize("checkpoint:create")
    body = req.validated_body(schemas.CHECKPOINT_CREATE)["checkpoint"]
    _check_provider(req, provider_id)
    plan: Plan = req.db.get_plan(body["plan_id"], req.owner_scope())
    if plan.provider_id != provider_id:
        raise BadRequest(reason=f"checkpoint.plan_id: plan {plan.id} belongs to provider {plan.provider_id}, "
                                f"not {provider_id}")
    extra_info = body.get("extra_info")
    if extra_info is None:
        extra_info = body.get("extra-info")
    record = req.protection.protect(req.ctx, plan.to_dict(), provider_id, extra_info or {})
    return 200, {"checkpoint": view(CheckpointRecord.from_dict(record))}


#: The statuses a checkpoint list shows unless its ``status`` filter asks for others: all but ``deleted``.
LISTED_BY_DEFAULT = [str(s) for s in CheckpointStatus if s is not CheckpointStatus.DELETED]


def index(req: ApiRequest, provider_id: str) -> Result:
    req.authorize("checkpoint:get_all")
    _check_provider(req, provider_id)
    project: str | None = req.list_scope()
    wanted_project = common.query_param(req, "project_id")
    if wanted_project and wanted_project != req.project_id:
        req.authorize("all_tenants")
        project = wanted_project
    filters: dict[str, Any] = common.filter_params(req, FILTERS)
    if "status" not in filters:  # a deleted checkpoint is history: listed only when asked for (status=deleted)
        filters["status"] = LISTED_BY_DEFAULT
    for name in ("start_date", "end_date"):
        value = common.date_param(req, name)
        if value is not None:
            filters[name] = value
    return common.db_list(req, "checkpoints", functools.partial(req.db.list_checkpoints, provider_id), view,
                          project=project, filters=filters, sort_keys=SORT_KEYS)


def _get(req: ApiRequest, provider_id: str, checkpoint_id: str) -> CheckpointRecord:
    """The checkpoint; 404 naming the provider when that is what is unknown, else naming the checkpoint."""
    try:
        cp: CheckpointRecord = req.db.get_checkpoint(checkpoint_id, req.owner_scope(), provider_id)
    except exceptions.NotFound:
        _check_provider(req, provider_id)
        raise
    return cp


def show(req: ApiRequest, provider_id: str, checkpoint_id: str) -> Result:
    try:
        cp, rows = req.db.get_checkpoint_with_copies(checkpoint_id, req.owner_scope(), provider_id)
    except exceptions.NotFound:
        _check_provider(req, provider_id)  # 404 naming the provider when that is what is unknown
        raise
    req.authorize("checkpoint:get", {"project_id": cp.project_id})
    copies = [{"provider_id": row.provider_id, "status": row.status, "status_reason": row.status_reason}
              for row in rows if row.provider_id != provider_id]
    return 200, {"checkpoint": {**view(cp), "copies": copies}}


def delete(req: ApiRequest, provider_id: str, checkpoint_id: str) -> Result:
    cp = _get(req, provider_id, checkpoint_id)
    req.authorize("checkpoint:delete", {"project_id": cp.project_id})
    req.protection.delete_checkpoint(req.ctx, provider_id, checkpoint_id)
    return 202, None


def reset_state(req: ApiRequest, provider_id: str, checkpoint_id: str) -> Result:
    req.authorize("checkpoint:reset_state")
    state = req.validated_body(schemas.CHECKPOINT_RESET_STATE)["os-resetState"]["state"]
    _get(req, provider_id, checkpoint_id)
    req.protection.reset_checkpoint_state(req.ctx, provider_id, checkpoint_id, state)
    return 202, None


def action(req: ApiRequest, provider_id: str) -> Result:
    body = req.validated_body(schemas.CHECKPOINT_ACTION)
    _check_provider(req, provider_id)
    if "copy" in body:
        req.authorize("checkpoint:copy")
        return _copy(req, provider_id, body["copy"])
    raise BadRequest(reason="body: no known action")  # unreachable: the schema admits only known actions


def _copy(req: ApiRequest, provider_id: str, copy: dict[str, Any]) -> Result:
    """Karbor's copy: the plan's available checkpoints (or the one named) go to the target provider's bank,
    each under its own id; answers which copies started (each is ``copying`` in the target)."""
    parameters = copy["parameters"]
    target = parameters["target_provider_id"]
    if target == provider_id:
        raise BadRequest(reason=f"copy.parameters.target_provider_id: {target} is the provider in the URL; a copy "
                                f"goes to another provider's bank")
    try:
        req.protection.show_provider(req.ctx, target)
    except exceptions.NotFound:
        raise BadRequest(reason=f"copy.parameters.target_provider_id: provider {target} not found") from None
    plan: Plan = req.db.get_plan(copy["plan_id"], req.owner_scope())
    if plan.project_id != req.project_id:
        raise BadRequest(reason=f"copy.plan_id: plan {plan.id} belongs to project {plan.project_id}, "
                                f"not {req.project_id}")
    if plan.provider_id != provider_id:
        raise BadRequest(reason=f"copy.plan_id: plan {plan.id} belongs to provider {plan.provider_id}, "
                                f"not {provider_id}")
    wanted = parameters.get("checkpoint_id")
    if wanted is not None:
        cp = _get(req, provider_id, wanted)
        if cp.plan_id != plan.id:
            raise BadRequest(reason=f"copy.parameters.checkpoint_id: checkpoint {wanted} is not of plan {plan.id}")
        ids = [cp.id]
    else:
        held = {row.id for row in req.db.list_checkpoints(target, plan.project_id, filters={"plan_id": plan.id})
                if row.status != "deleted"}
        ids = [row.id for row in req.db.list_checkpoints(provider_id, plan.project_id,
                                                         filters={"plan_id": plan.id, "status": "available"},
                                                         sort=[("created_at", "asc")])
               if row.id not in held]
    lock = parameters.get(LOCK_DAYS)
    if lock is not None:  # a lock the target's bank cannot keep: 400 naming it, before any copy starts
        req.protection.check_retention_lock(req.ctx, target, lock, f"copy.parameters.{LOCK_DAYS}")
    started = [str(req.protection.copy_checkpoint(req.ctx, provider_id, cid, target,
                                                  **({"retention_lock_days": lock} if lock is not None else {}))["id"])
               for cid in ids]
    return 200, {"copy": {"project_id": plan.project_id, "provider_id": provider_id, "plan_id": plan.id,
                          "parameters": parameters, "checkpoints": started}}
