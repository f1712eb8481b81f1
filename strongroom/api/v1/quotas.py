"""``/v1/{project_id}/quotas/{quota_project_id}`` and ``/v1/{project_id}/quota_classes/{quota_class_name}``.

Karbor's shapes: ``{"quota": {"id": <project>, "plans": 50, "checkpoints": -1}}``, in detail each resource
``{"limit": ..., "in_use": ..., "reserved": 0}``; ``{"quota_class": {"id": <class>, ...}}``.  ``-1`` is
unlimited.  A project's limit is its own, else the ``default`` quota class's, else the ``[quota]`` option
(:mod:`strongroom.db.quotas`, which also enforces them: over quota, a create answers 413).

Reading a project's quotas is for its members and administrators; setting them, and quota classes, for
administrators.  Unlike Karbor, an update answers with the ``id`` too.
"""

from __future__ import annotations

from typing import Any

from strongroom.api import schemas
from strongroom.api.common import ApiRequest, Result


def _view(name: str, limits: dict[str, Any]) -> dict[str, Any]:
    return {"id": name, "plans": limits["plans"], "checkpoints": limits["checkpoints"]}


def show(req: ApiRequest, quota_project_id: str) -> Result:
    req.authorize("quota:get", {"project_id": quota_project_id})
    return 200, {"quota": _view(quota_project_id, req.db.get_project_quotas(quota_project_id))}


def detail(req: ApiRequest, quota_project_id: str) -> Result:
    req.authorize("quota:get", {"project_id": quota_project_id})
    usages = req.db.get_project_usages(quota_project_id)
    return 200, {"quota": _view(quota_project_id, {k: u.to_dict() for k, u in usages.items()})}


def defaults(req: ApiRequest, quota_project_id: str) -> Result:
    req.authorize("quota:defaults", {"project_id": quota_project_id})
    return 200, {"quota": _view(quota_project_id, req.db.quota_defaults_of())}


def update(req: ApiRequest, quota_project_id: str) -> Result:
    req.authorize("quota:update", {"project_id": quota_project_id})
    body = req.validated_body(schemas.QUOTA_UPDATE)["quota"]
    return 200, {"quota": _view(quota_project_id, req.db.set_project_quotas(quota_project_id, body))}


def class_show(req: ApiRequest, quota_class_name: str) -> Result:
    req.authorize("quota_class:get")
    return 200, {"quota_class": _view(quota_class_name, req.db.get_quota_class(quota_class_name))}


def class_update(req: ApiRequest, quota_class_name: str) -> Result:
    req.authorize("quota_class:update")
    body = req.validated_body(schemas.QUOTA_CLASS_UPDATE)["quota_class"]
    return 200, {"quota_class": _view(quota_class_name, req.db.set_quota_class(quota_class_name, body))}
