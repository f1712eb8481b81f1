"""``/v1/{project_id}/triggers``: time triggers (Karbor's ``trigger_info`` shapes).

Properties are validated and normalized by :mod:`strongroom.operationengine.schedule` (errors name the
field); an update merges the given properties over the stored ones, validates the result and re-plans the
future fires of every scheduled operation that uses the trigger.  Deleting a trigger that a scheduled
operation uses is a 409 (Karbor answered 424).
"""

from __future__ import annotations

import uuid
from typing import Any

from strongroom.api import common, schemas
from strongroom.api.common import ApiRequest, Result
from strongroom.clock import Clock
from strongroom.db.scheduling import SchedulingStore
from strongroom.objects.scheduling import Trigger
from strongroom.operationengine.schedule import Limits, parse_properties

SORT_KEYS = ("created_at", "updated_at", "name", "id")
FILTERS = ("name", "type")


def view(trigger: Trigger) -> dict[str, Any]:
    return {"id": trigger.id, "name": trigger.name, "type": trigger.type, "project_id": trigger.project_id,
            "properties": trigger.properties}


def store(req: ApiRequest) -> SchedulingStore:
    return SchedulingStore(req.db)


def _validated(req: ApiRequest, properties: dict[str, Any]) -> dict[str, Any]:
    return parse_properties(properties, Limits.from_conf(req.conf), Clock().now()).to_properties()


def create(req: ApiRequest) -> Result:
    req.authorize("trigger:create")
    body = req.validated_body(schemas.TRIGGER_CREATE)["trigger_info"]
    trigger = Trigger(id=str(uuid.uuid4()), project_id=req.project_id, name=body["name"], type=body["type"],
                      properties=_validated(req, body["properties"]))
    return 200, {"trigger_info": view(store(req).create_trigger(trigger))}


def index(req: ApiRequest) -> Result:
    req.authorize("trigger:list")
    return common.db_list(req, "triggers", store(req).list_triggers, view, project=req.list_scope(),
                          filters=common.filter_params(req, FILTERS), sort_keys=SORT_KEYS)


def _get(req: ApiRequest, trigger_id: str) -> Trigger:
    return store(req).get_trigger(trigger_id, req.owner_scope())


def show(req: ApiRequest, trigger_id: str) -> Result:
    trigger = _get(req, trigger_id)
    req.authorize("trigger:get", {"project_id": trigger.project_id})
    return 200, {"trigger_info": view(trigger)}


def update(req: ApiRequest, trigger_id: str) -> Result:
    body = req.validated_body(schemas.TRIGGER_UPDATE)["trigger_info"]
    trigger = _get(req, trigger_id)
    req.authorize("trigger:update", {"project_id": trigger.project_id})
    values: dict[str, Any] = {}
    if "name" in body:
        values["name"] = body["name"]
    if "properties" in body:
        merged = {**trigger.properties, **body["properties"]}
        values["properties"] = _validated(req, merged)
    return 200, {"trigger_info": view(store(req).update_trigger(trigger_id, values, trigger.project_id))}


def delete(req: ApiRequest, trigger_id: str) -> Result:
    trigger = _get(req, trigger_id)
    req.authorize("trigger:delete", {"project_id": trigger.project_id})
    store(req).delete_trigger(trigger_id, trigger.project_id)
    return 204, None
