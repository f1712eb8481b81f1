"""``/v1/{project_id}/scheduled_operations``: protect a plan when a trigger fires, with retention.

Karbor's shapes (``scheduled_operation`` in, ``operations`` for lists), plus what Karbor lacked:

- ``POST /scheduled_operations/{id}/action`` with ``{"suspend": {}}`` or ``{"resume": {}}``: a suspended
  operation's planned fires are forgotten; resuming plans again from now (missed fires are not caught up);
- ``GET /scheduled_operations/{id}/logs``: one entry per fire that was claimed or dropped, with its state
  (``in_progress``, ``success``, ``failed``, ``dropped_out_of_window``) and the checkpoint it made.

With ``auth_strategy = keystone`` creating an operation creates a Keystone trust from the caller to
Strongroom's service user, through which every run acts as the caller; deleting it deletes the trust.
Resuming a suspended operation replaces its trust by a new one from the caller (the engine suspends an
operation whose trust Keystone kept refusing, ``doc/scheduling.md``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import uuid
from typing import Any

from strongroom import exceptions
from strongroom.api import common, schemas
from strongroom.api.common import ApiRequest, Result
from strongroom.api.errors import BadRequest
from strongroom.db.scheduling import SchedulingStore
from strongroom.objects.locks import LOCK_DAYS
from strongroom.objects.records import _iso
from strongroom.objects.scheduling import OperationType, ScheduledFire, ScheduledOperation
from strongroom.operationengine import identity
from strongroom.operationengine.retention import POLICY_KEYS, Policy

SORT_KEYS = ("created_at", "updated_at", "name", "operation_type", "id")
FILTERS = ("name", "operation_type", "trigger_id", "plan_id")
LOG = logging.getLogger(__name__)
LOG_SORT_KEYS = ("expect_start_time", "state", "created_at", "id")
LOG_FILTERS = ("state",)
FIELD = "scheduled_operation"


def view(op: ScheduledOperation, next_fire: _dt.datetime | None = None) -> dict[str, Any]:
    """The operation; ``next_fire_time`` its earliest planned fire (None while suspended, or when its trigger
    has no more)."""
    return {"id": op.id, "name": op.name, "description": op.description, "operation_type": op.operation_type,
            "project_id": op.project_id, "trigger_id": op.trigger_id,
            "operation_definition": op.operation_definition, "enabled": op.enabled,
            "created_at": _iso(op.created_at), "next_fire_time": _iso(next_fire)}


def _with_next_fire(req: ApiRequest, op: ScheduledOperation) -> dict[str, Any]:
    return view(op, store(req).next_fire_times([op.id]).get(op.id))


def log_view(fire: ScheduledFire) -> dict[str, Any]:
    return {"id": fire.id, "operation_id": fire.operation_id, "state": fire.state,
            "expect_start_time": _iso(fire.fire_time), "window_end_time": _iso(fire.window_end),
            "triggered_time": _iso(fire.triggered_at), "actual_start_time": _iso(fire.started_at),
            "end_time": _iso(fire.ended_at), "checkpoint_id": fire.checkpoint_id, "error_info": fire.error_info,
            "extra_info": fire.extra_info, "engine": fire.owner, "attempts": fire.attempts}


def store(req: ApiRequest) -> SchedulingStore:
    return SchedulingStore(req.db)


def _identity(req: ApiRequest) -> identity.RunIdentity:
    try:
        return identity.from_conf(req.conf)
    except exceptions.ConfigError as err:
        raise exceptions.ServiceUnavailable(what="scheduling", reason=err.message) from err


def _token(req: ApiRequest) -> str | None:
    return req.http.environ.get("HTTP_X_AUTH_TOKEN") or None


def _check_definition(req: ApiRequest, operation_type: str, definition: dict[str, Any]) -> None:
    where = f"{FIELD}.operation_definition"
    if operation_type == OperationType.PROTECT:
        extra = sorted(k for k in definition if k in POLICY_KEYS)
        if extra:
            raise BadRequest(reason=f"{where}.{extra[0]}: retention applies to operation_type "
                                    f"'retention_protect' or 'copy' only")
    _check_copy_target(req, operation_type, definition, where)
    Policy.from_definition(definition, where)
    try:
        plan = req.db.get_plan(definition["plan_id"], req.project_id)
    except exceptions.NotFound:
        raise BadRequest(reason=f"{where}.plan_id: plan {definition['plan_id']} not found") from None
    if plan.provider_id != definition["provider_id"]:
        raise BadRequest(reason=f"{where}.provider_id: plan {plan.id} uses provider {plan.provider_id}, "
                                f"not {definition['provider_id']}")
    if definition.get(LOCK_DAYS) is not None:  # a lock the bank cannot keep (a copy's: the target's): 400 naming it
        locked = definition["target_provider_id"] if operation_type == OperationType.COPY else plan.provider_id
        req.protection.check_retention_lock(req.ctx, locked, definition[LOCK_DAYS], f"{where}.{LOCK_DAYS}")


def _check_copy_target(req: ApiRequest, operation_type: str, definition: dict[str, Any], where: str) -> None:
    """``target_provider_id``: required by a copy (another provider, one that exists), refused otherwise."""
    target = definition.get("target_provider_id")
    if operation_type != OperationType.COPY:
        if target is not None:
            raise BadRequest(reason=f"{where}.target_provider_id: for operation_type 'copy' only")
        return
    if target is None:
        raise BadRequest(reason=f"{where}.target_provider_id: operation_type 'copy' needs the provider to copy to")
    if target == definition["provider_id"]:
        raise BadRequest(reason=f"{where}.target_provider_id: {target} is the plan's own provider; a copy goes "
                                f"to another provider's bank")
    try:
        req.protection.show_provider(req.ctx, target)
    except exceptions.NotFound:
        raise BadRequest(reason=f"{where}.target_provider_id: provider {target} not found") from None


def create(req: ApiRequest) -> Result:
    req.authorize("scheduled_operation:create")
    body = req.validated_body(schemas.SCHEDULED_OPERATION_CREATE)[FIELD]
    definition = dict(body["operation_definition"])
    try:
        store(req).get_trigger(body["trigger_id"], req.project_id)
    except exceptions.NotFound:
        raise BadRequest(reason=f"{FIELD}.trigger_id: trigger {body['trigger_id']} not found") from None
    _check_definition(req, body["operation_type"], definition)
    runs_as = _identity(req)
    trust_id = runs_as.create_delegation(req.ctx, _token(req))
    op = ScheduledOperation(
        id=str(uuid.uuid4()), project_id=req.project_id, user_id=req.ctx.user_id, name=body["name"],
        description=body.get("description") or "", operation_type=body["operation_type"],
        trigger_id=body["trigger_id"], plan_id=definition["plan_id"], provider_id=definition["provider_id"],
        operation_definition=definition, enabled=True, trust_id=trust_id)
    try:
        created = store(req).create_operation(op)
    except Exception:
        runs_as.delete_delegation(trust_id, _token(req))
        raise
    return 200, {FIELD: _with_next_fire(req, created)}


def index(req: ApiRequest) -> Result:
    req.authorize("scheduled_operation:list")
    st = store(req)

    def listed(project: str | None, **kwargs: Any) -> list[dict[str, Any]]:
        ops = st.list_operations(project, **kwargs)
        nexts = st.next_fire_times([op.id for op in ops])  # one query for the page
        return [view(op, nexts.get(op.id)) for op in ops]

    return common.db_list(req, "operations", listed, lambda shown: shown, project=req.list_scope(),
                          filters=common.filter_params(req, FILTERS), sort_keys=SORT_KEYS)


def _get(req: ApiRequest, scheduled_operation_id: str) -> ScheduledOperation:
    return store(req).get_operation(scheduled_operation_id, req.owner_scope())


def show(req: ApiRequest, scheduled_operation_id: str) -> Result:
    op = _get(req, scheduled_operation_id)
    req.authorize("scheduled_operation:get", {"project_id": op.project_id})
    return 200, {FIELD: _with_next_fire(req, op)}


def action(req: ApiRequest, scheduled_operation_id: str) -> Result:
    body = req.validated_body(schemas.SCHEDULED_OPERATION_ACTION)
    op = _get(req, scheduled_operation_id)
    req.authorize("scheduled_operation:update", {"project_id": op.project_id})
    resume = "resume" in body
    if resume and not op.enabled and op.trust_id:
        _renew_delegation(req, op)
    changed = store(req).set_enabled(op.id, resume, op.project_id)
    return 200, {FIELD: _with_next_fire(req, changed)}


def _renew_delegation(req: ApiRequest, op: ScheduledOperation) -> None:
    """Resuming a suspended operation under keystone makes a new trust from the caller, through which the
    runs act from then on (the old one may be what got it suspended: revoked, or its user lost a role); the
    old trust is deleted (best effort)."""
    runs_as = _identity(req)
    trust_id = runs_as.create_delegation(req.ctx, _token(req))
    try:
        before = store(req).set_delegation(op.id, req.ctx.user_id, trust_id, op.project_id)
    except Exception:
        runs_as.delete_delegation(trust_id, _token(req))
        raise
    if before.trust_id and before.trust_id != trust_id:
        runs_as.delete_delegation(before.trust_id, _token(req))


def delete(req: ApiRequest, scheduled_operation_id: str) -> Result:
    op = _get(req, scheduled_operation_id)
    req.authorize("scheduled_operation:delete", {"project_id": op.project_id})
    deleted = store(req).delete_operation(op.id, op.project_id)
    if deleted.trust_id:
        try:
            _identity(req).delete_delegation(deleted.trust_id, _token(req))
        except exceptions.ServiceUnavailable as err:
            LOG.warning("scheduled operation %s deleted, its trust %s not: %s", op.id, deleted.trust_id, err)
    return 204, None


def logs(req: ApiRequest, scheduled_operation_id: str) -> Result:
    op = _get(req, scheduled_operation_id)
    req.authorize("scheduled_operation:get", {"project_id": op.project_id})

    limit = common.limit_param(req)
    sort = common.sort_param(req, LOG_SORT_KEYS, default=(("expect_start_time", "desc"),))
    if limit == 0:
        return common.list_result(req, "scheduled_operation_logs", [], 0)
    rows = store(req).list_fires(op.id, op.project_id, filters=common.filter_params(req, LOG_FILTERS),
                                 marker=common.marker_param(req), limit=limit, sort=sort)
    return common.list_result(req, "scheduled_operation_logs", [log_view(r) for r in rows], limit)
