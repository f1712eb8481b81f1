"""``/v1/{project_id}/protectables``: protectable types and their instances, from the protection service."""

from __future__ import annotations

from typing import Any

from strongroom.api import common
from strongroom.api.common import ApiRequest, Result


def instance_view(instance: dict[str, Any], with_dependents: bool = False) -> dict[str, Any]:
    out = {
        "id": instance["id"],
        "type": instance.get("type"),
        "name": instance.get("name", ""),
        "extra_info": instance.get("extra_info") or {},
    }
    if with_dependents:
        out["dependent_resources"] = [instance_view(d) for d in instance.get("dependent_resources") or []]
    return out


def index(req: ApiRequest) -> Result:
    req.authorize("protectable:get_all")
    return 200, {"protectable_type": list(req.protection.list_protectable_types(req.ctx))}


def show(req: ApiRequest, protectable_type: str) -> Result:
    req.authorize("protectable:get")
    info = req.protection.show_protectable_type(req.ctx, protectable_type)
    return 200, {"protectable_type": {"name": info.get("name", protectable_type),
                                      "dependent_types": list(info.get("dependent_types") or [])}}


def instances(req: ApiRequest, protectable_type: str) -> Result:
    req.authorize("protectable:get")
    limit = common.limit_param(req)
    parameters = common.json_object_param(req, "parameters")
    rows = [instance_view(i) for i in
            req.protection.list_protectable_instances(req.ctx, protectable_type, parameters)]
    page = common.paginate_in_memory(rows, lambda r: str(r["id"]), common.marker_param(req), limit,
                                     "instance")
    return common.list_result(req, "instances", page, limit)


def instance(req: ApiRequest, protectable_type: str, instance_id: str) -> Result:
    req.authorize("protectable:get")
    parameters = common.json_object_param(req, "parameters")
    found = req.protection.show_protectable_instance(req.ctx, protectable_type, instance_id, parameters)
    return 200, {"instance": instance_view(found, with_dependents=True)}
