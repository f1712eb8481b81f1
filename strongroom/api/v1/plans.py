"""``/v1/{project_id}/plans``.

New plans are ``suspended``; ``PUT`` may move them between ``suspended`` and ``started`` and change name,
description, resources and parameters (the provider is fixed).  ``DELETE`` answers 202, as Karbor did
(API.md says 204 for non-checkpoint deletes; Karbor's clients expect 202 for plans, and compatibility wins).
"""

from __future__ import annotations

import uuid
from typing import Any

from strongroom import exceptions
from strongroom.api import common, schemas
from strongroom.api.common import ApiRequest, Result
from strongroom.api.errors import BadRequest
from strongroom.objects.records import Plan, Resource, iso_time

SORT_KEYS = ("created_at", "updated_at", "name", "status", "id")
FILTERS = ("name", "status")


def resource_view(resource: Resource) -> dict[str, Any]:
    return {"id": resource.id, "type": resource.type, "name": resource.name,
            "extra_info": resource.extra_info or {}}


def view(plan: Plan) -> dict[str, Any]:
    return {
        "id": plan.id,
        "name": plan.name,
        "description": plan.description,
        "provider_id": plan.provider_id,
        "project_id": plan.project_id,
        "status": plan.status,
        "parameters": plan.parameters,
        "resources": [resource_view(r) for r in plan.resources],
        "created_at": iso_time(plan.created_at),  # not to_dict(): it copies every field
    }


def _check_provider(req: ApiRequest, provider_id: str) -> None:
    try:
        req.check_provider(provider_id)
    except exceptions.NotFound:
        raise BadRequest(reason=f"plan.provider_id: provider {provider_id} not found") from None


def _resources(req: ApiRequest, provider_id: str, raw: list[dict[str, Any]]) -> list[Resource]:
    """The plan's resources, each as the provider's protectable for its type shows it now: 404 naming the
    resource (and its index) when the provider cannot find it; a resource given without a name takes the
    name shown."""
    known = set(req.protection.list_protectable_types(req.ctx))
    seen: set[str] = set()
    out: list[Resource] = []
    for i, item in enumerate(raw):
        resource = Resource(id=item["id"], type=item["type"], name=item.get("name") or "",
                            extra_info=item.get("extra_info") or {})
        if resource.type not in known:
            raise BadRequest(reason=f"plan.resources[{i}].type: {resource.type!r} is not a protectable type "
                                    f"(known: {', '.join(sorted(known)) or 'none'})")
        if resource.key in seen:
            raise BadRequest(reason=f"plan.resources[{i}]: resource {resource.key} is listed twice")
        seen.add(resource.key)
        out.append(resource)
    # Every field checked first: the provider is asked about a valid list, in one call.
    shown = req.protection.show_plan_resources(req.ctx, provider_id, [{"type": r.type, "id": r.id} for r in out])
    for i, (resource, found) in enumerate(zip(out, shown, strict=True)):
        if "missing" in found:
            raise exceptions.NotFound(f"plan.resources[{i}]: {found['missing']}")
        resource.name = resource.name or str(found["instance"].get("name") or "")
    return out


def _validate_parameters(req: ApiRequest, provider_id: str, parameters: dict[str, Any]) -> None:
    if parameters:
        req.protection.validate_plan_parameters(req.ctx, provider_id, parameters)


def create(req: ApiRequest) -> Result:
    req.authorize("plan:create")
    body = req.validated_body(schemas.PLAN_CREATE)["plan"]
    _check_provider(req, body["provider_id"])
    resources = _resources(req, body["provider_id"], body["resources"])
    parameters = body.get("parameters") or {}
    _validate_parameters(req, body["provider_id"], parameters)
    plan = Plan(id=str(uuid.uuid4()), name=body["name"], provider_id=body["provider_id"],
                project_id=req.project_id, status="suspended", description=body.get("description") or "",
                parameters=parameters, resources=resources)
    return 200, {"plan": view(req.db.create_plan(plan, enforce_quota=True))}


def index(req: ApiRequest) -> Result:
    req.authorize("plan:get_all")
    return common.db_list(req, "plans", req.db.list_plans, view, project=req.list_scope(),
                          filters=common.filter_params(req, FILTERS), sort_keys=SORT_KEYS)


def _get(req: ApiRequest, plan_id: str) -> Plan:
    plan: Plan = req.db.get_plan(plan_id, req.owner_scope())
    return plan


def show(req: ApiRequest, plan_id: str) -> Result:
    plan = _get(req, plan_id)
    req.authorize("plan:get", {"project_id": plan.project_id})
    return 200, {"plan": view(plan)}


def update(req: ApiRequest, plan_id: str) -> Result:
    body = req.validated_body(schemas.PLAN_UPDATE)["plan"]
    plan = _get(req, plan_id)
    req.authorize("plan:update", {"project_id": plan.project_id})
    values: dict[str, Any] = {k: body[k] for k in ("name", "status") if k in body}
    if "description" in body:
        values["description"] = body["description"] or ""
    if "resources" in body:
        values["resources"] = _resources(req, plan.provider_id, body["resources"])
    if "parameters" in body:
        _validate_parameters(req, plan.provider_id, body["parameters"])
        values["parameters"] = body["parameters"]
    return 200, {"plan": view(req.db.update_plan(plan_id, values, plan.project_id))}


def delete(req: ApiRequest, plan_id: str) -> Result:
    from strongroom.db.scheduling import SchedulingStore

    plan = _get(req, plan_id)
    req.authorize("plan:delete", {"project_id": plan.project_id})
    if SchedulingStore(req.db).count_operations(plan_id=plan_id):
        raise exceptions.Conflict(reason=f"plan {plan_id} is used by scheduled operations; delete them first")
    req.db.delete_plan(plan_id, plan.project_id)
    return 202, None
