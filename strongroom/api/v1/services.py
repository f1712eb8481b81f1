"""``/v1/{project_id}/os-services``: the services table, up or down, enabled or disabled (admin only).

Karbor's shapes: ``{"services": [{id, binary, host, status, state, updated_at, disabled_reason}]}`` and an
unwrapped update body ``{"status": "enabled" | "disabled", "disabled_reason": ...}``.  A service is ``up``
while its last heartbeat is younger than ``missed_heartbeats`` x ``heartbeat_interval`` seconds.

Karbor let only its operation engine be disabled; here protection workers can be disabled too (a disabled
worker stops claiming new work).  The API itself claims no work, so disabling it is refused.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from strongroom import config, exceptions, heartbeat
from strongroom.api import common, schemas
from strongroom.api.common import ApiRequest, Result
from strongroom.api.errors import BadRequest
from strongroom.objects.records import Service

FILTERS = ("host", "binary")
CAN_BE_DISABLED = ("strongroom-protection", "strongroom-operationengine")


def view(service: Service, down_after: float, now: _dt.datetime) -> dict[str, Any]:
    return {
        "id": service.id,
        "binary": service.binary,
        "host": service.host,
        "status": "disabled" if service.disabled else "enabled",
        "state": "up" if heartbeat.is_up(service.last_heartbeat, down_after, now) else "down",
        "updated_at": service.to_dict()["updated_at"],
        "disabled_reason": service.disabled_reason,
    }


def index(req: ApiRequest) -> Result:
    req.authorize("service:get_all")
    filters = common.filter_params(req, FILTERS)
    services = req.db.list_services(**filters)
    down_after, now = config.service_down_after(req.conf), _dt.datetime.now(_dt.UTC)
    return 200, {"services": [view(s, down_after, now) for s in services]}


def _get(req: ApiRequest, service_id: str) -> Service:
    try:
        number = int(service_id)
    except ValueError:
        raise exceptions.NotFound(kind="Service", id=service_id) from None
    service: Service = req.db.get_service(number)
    return service


def update(req: ApiRequest, service_id: str) -> Result:
    req.authorize("service:update")
    body = req.validated_body(schemas.SERVICE_UPDATE)
    service = _get(req, service_id)
    if service.binary not in CAN_BE_DISABLED:
        raise BadRequest(reason=f"service {service.id} is a {service.binary} service, which cannot be disabled "
                                f"(only {' and '.join(CAN_BE_DISABLED)} services take work)")
    reason = body.get("disabled_reason")
    if body["status"] == "enabled":
        if reason:
            raise BadRequest(reason="disabled_reason: only allowed with status 'disabled'")
        values: dict[str, Any] = {"disabled": False, "disabled_reason": None}
    else:
        values = {"disabled": True, "disabled_reason": reason or None}
    updated: Service = req.db.update_service(service.id, values)
    return 200, {"service": view(updated, config.service_down_after(req.conf), _dt.datetime.now(_dt.UTC))}
