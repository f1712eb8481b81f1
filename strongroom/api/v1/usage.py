"""``/v1/{project_id}/usage`` and ``/v1/{project_id}/pools``: what the banks hold, what the pools have left.

``GET /usage`` answers one row per provider (``?provider_id=``: that one only; ``all_tenants=1``, admins: one
per provider and project with checkpoints in its bank) of the figures :mod:`strongroom.protection.usage`
computes from a walk of the bank: checkpoints by status, logical bytes protected, bytes stored after dedup
and compression, the ratios.  The protection service keeps an answer ``[protection] usage_cache_seconds``.

``GET /pools`` (administrators) follows Cinder's ``GET /scheduler-stats/get_pools``: one entry per pool of
every block backend of every provider, named ``<backend>#<pool>``, with its capacity in bytes from the
backend's ``stats()``; a backend that cannot answer has one entry with ``pool`` null and its ``error``.
"""

from __future__ import annotations

from typing import Any

from strongroom.api import common
from strongroom.api.common import ApiRequest, Result


def index(req: ApiRequest) -> Result:
    req.authorize("usage:get")
    project = req.list_scope()
    provider_id = common.query_param(req, "provider_id")
    rows = req.protection.usage(req.ctx, project, provider_id)
    return 200, {"usage": sorted(rows, key=lambda r: (r["provider_id"], r["project_id"]))}


def _pools(provider: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for backend in provider["block_backends"]:
        common_fields = {"provider_id": provider["provider_id"], "provider_name": provider["provider_name"],
                         "block_backend": backend["name"], "driver": backend["driver"]}
        if "error" in backend:
            out.append({"name": backend["name"], "pool": None, **common_fields, "total_bytes": None,
                        "free_bytes": None, "allocated_bytes": None, "error": backend["error"]})
        for pool in backend["pools"]:
            out.append({"name": f"{backend['name']}#{pool['name']}", "pool": pool["name"], **common_fields,
                        "total_bytes": pool["total_bytes"], "free_bytes": pool["free_bytes"],
                        "allocated_bytes": pool["allocated_bytes"], "error": None})
    return out


def pools(req: ApiRequest) -> Result:
    req.authorize("pool:get_all")
    return 200, {"pools": [pool for provider in req.protection.list_pools(req.ctx) for pool in _pools(provider)]}
