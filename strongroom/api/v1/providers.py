"""``/v1/{project_id}/providers``: straight from the protection service (unknown id -> 404).

Beside Karbor's fields, ``status`` (``available`` or ``unavailable``) and
``status_reason`` say whether the provider's bank can be written (its lease is
held): a bank unreachable at start-up shows here, and writes to it answer 503.

An administrator's show (policy rule ``provider:block_backends``) also carries
``extra_info.block_backends``: each block backend the provider's plugins use, its
driver and its pools with their capacity in bytes (an ``error`` instead when the
backend cannot answer).  Nobody else sees it, and it never holds a credential.
"""

from __future__ import annotations

from typing import Any

from strongroom.api import common
from strongroom.api.common import ApiRequest, Result


def view(provider: dict[str, Any]) -> dict[str, Any]:
    info = provider.get("extended_info_schema") or {}
    return {
        "id": provider["id"],
        "name": provider.get("name", ""),
        "description": provider.get("description", ""),
        "extended_info_schema": {
            key: info.get(key, {})
            for key in ("options_schema", "restore_schema", "saved_info_schema", "verify_schema")
        },
        "status": provider.get("status", "available"),
        "status_reason": provider.get("status_reason"),
    }


def index(req: ApiRequest) -> Result:
    req.authorize("provider:get_all")
    limit = common.limit_param(req)
    providers = [view(p) for p in req.protection.list_providers(req.ctx)]
    name = common.query_param(req, "name")
    if name:
        providers = [p for p in providers if p["name"] == name]
    page = common.paginate_in_memory(providers, lambda p: str(p["id"]), common.marker_param(req), limit,
                                     "provider")
    return common.list_result(req, "providers", page, limit)


def show(req: ApiRequest, provider_id: str) -> Result:
    req.authorize("provider:get")
    shown = view(req.protection.show_provider(req.ctx, provider_id))
    if req.allowed("provider:block_backends"):
        shown["extra_info"] = {"block_backends": req.protection.show_provider_backends(req.ctx, provider_id)}
    return 200, {"provider": shown}
