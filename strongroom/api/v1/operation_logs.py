"""``/v1/{project_id}/operation_logs``: one row per protect/restore/verify/delete/copy run."""

from __future__ import annotations

from typing import Any

from strongroom.api import common
from strongroom.api.common import ApiRequest, Result
from strongroom.objects.records import OperationLog

SORT_KEYS = ("created_at", "updated_at", "started_at", "ended_at", "status", "operation_type", "id")
FILTERS = ("checkpoint_id", "plan_id", "restore_id", "status", "operation_type", "provider_id")


def view(log: OperationLog) -> dict[str, Any]:
    out = log.to_dict()
    out.pop("updated_at", None)
    return out


def index(req: ApiRequest) -> Result:
    req.authorize("operation_log:get_all")
    project = req.list_scope()
    limit = common.limit_param(req)
    sort = common.sort_param(req, SORT_KEYS)
    if limit == 0:
        return common.list_result(req, "operation_logs", [], 0)
    rows = req.db.list_operation_logs(project, filters=common.filter_params(req, FILTERS),
                                      marker=common.marker_param(req), limit=limit, sort=sort)
    return common.list_result(req, "operation_logs", [view(r) for r in rows], limit)


def show(req: ApiRequest, operation_log_id: str) -> Result:
    log: OperationLog = req.db.get_operation_log(operation_log_id, req.owner_scope())
    req.authorize("operation_log:get", {"project_id": log.project_id})
    return 200, {"operation_log": view(log)}
