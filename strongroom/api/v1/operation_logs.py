"""``/v1/{project_id}/operation_logs``: one row per protect/restore/verify/delete/copy run."""

from __future__ import annotations

from typing import Any

from strongroom.api import common
from strongroom.api.common import ApiRequest, Result
from strongroom.objects.records import OperationLog

SORT_KEYS = ("created_at", "updated_at", "status", "operation_type", "id")  # what the metadata store sorts by
FILTERS = ("checkpoint_id", "plan_id", "restore_id", "status", "operation_type", "provider_id")


def view(log: OperationLog) -> dict[str, Any]:
    out = log.to_dict()
    out.pop("updated_at", None)
    return out


def index(req: ApiRequest) -> Result:
    req.authorize("operation_log:get_all")
    return common.db_list(req, "operation_logs", req.db.list_operation_logs, view, project=req.list_scope(),
                          filters=common.filter_params(req, FILTERS), sort_keys=SORT_KEYS)


def show(req: ApiRequest, operation_log_id: str) -> Result:
    log: OperationLog = req.db.get_operation_log(operation_log_id, req.owner_scope())
    req.authorize("operation_log:get", {"project_id": log.project_id})
    return 200, {"operation_log": view(log)}
