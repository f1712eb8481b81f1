"""``/v1/{project_id}/alerts``: what the protection service's alert conditions found (``doc/alerts.md``).

A project's reader sees the alerts of its own plans, scheduled operations, checkpoints and volumes, and the
infrastructure alerts (a bank unreachable, a pool filling up) that put one of them at risk, never another
project's resources.  ``all_tenants=1`` (administrators) lists every alert.  ``active=true``/``false`` keeps
only the alerts that are up, or only those recently cleared; ``severity`` one severity.
"""

from __future__ import annotations

from strongroom.api.common import ApiRequest, Result
from strongroom.api.errors import BadRequest

SEVERITIES = ("info", "warning", "error")
_BOOL = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def index(req: ApiRequest) -> Result:
    req.authorize("alert:get_all")
    scope = req.list_scope()
    alerts = req.protection.list_alerts(req.ctx, all_tenants=scope is None)
    active = req.params.get("active")
    if active not in (None, ""):
        if str(active).lower() not in _BOOL:
            raise BadRequest(reason=f"active: {active!r} is not a boolean (true or false)")
        wanted = _BOOL[str(active).lower()]
        alerts = [a for a in alerts if bool(a.get("active")) == wanted]
    severity = req.params.get("severity")
    if severity not in (None, ""):
        if severity not in SEVERITIES:
            raise BadRequest(reason=f"severity: {severity!r} is not one of {', '.join(SEVERITIES)}")
        alerts = [a for a in alerts if a.get("severity") == severity]
    return 200, {"alerts": alerts}
