"""oslo.policy defaults of the API, and the one function that decides.

Rules are ``admin_or_owner`` by default; resetting a checkpoint's state, listing across projects
(``all_tenants``) and ``os-services`` are admin only.  The same decisions are taken with ``noauth`` (whose
contexts carry the ``member`` role, plus ``admin`` with the admin token) and with keystone, so one code path
is tested.
Nothing is registered at import: :func:`get_enforcer` builds an ``Enforcer`` on the given ``ConfigOpts``.
"""

from __future__ import annotations

from typing import Any

from oslo_config import cfg
from oslo_policy import policy

from strongroom import exceptions
from strongroom.context import RequestContext

ADMIN_OR_OWNER = "rule:admin_or_owner"
ADMIN_API = "rule:admin_api"

_BASE = [
    policy.RuleDefault("context_is_admin", "role:admin", description="Decides who is an administrator."),
    policy.RuleDefault("admin_or_owner", "rule:context_is_admin or project_id:%(project_id)s",
                       description="Administrators, or members of the object's project."),
    policy.RuleDefault("admin_api", "rule:context_is_admin",
                       description="Administrators only."),
]


def _op(name: str, rule: str, method: str, path: str, description: str) -> policy.DocumentedRuleDefault:
    return policy.DocumentedRuleDefault(name, rule, description, [{"method": method, "path": path}])


_P = "/v1/{project_id}"
_RULES = [
    _op("provider:get", ADMIN_OR_OWNER, "GET", _P + "/providers/{provider_id}", "Show a provider."),
    _op("provider:get_all", ADMIN_OR_OWNER, "GET", _P + "/providers", "List providers."),
    _op("protectable:get", ADMIN_OR_OWNER, "GET", _P + "/protectables/{type}", "Show protectables."),
    _op("protectable:get_all", ADMIN_OR_OWNER, "GET", _P + "/protectables", "List protectable types."),
    _op("plan:create", ADMIN_OR_OWNER, "POST", _P + "/plans", "Create a plan."),
    _op("plan:get", ADMIN_OR_OWNER, "GET", _P + "/plans/{plan_id}", "Show a plan."),
    _op("plan:get_all", ADMIN_OR_OWNER, "GET", _P + "/plans", "List plans."),
    _op("plan:update", ADMIN_OR_OWNER, "PUT", _P + "/plans/{plan_id}", "Update a plan."),
    _op("plan:delete", ADMIN_OR_OWNER, "DELETE", _P + "/plans/{plan_id}", "Delete a plan."),
    _op("checkpoint:create", ADMIN_OR_OWNER, "POST", _P + "/providers/{provider_id}/checkpoints",
        "Protect a plan (create a checkpoint)."),
    _op("checkpoint:get", ADMIN_OR_OWNER, "GET", _P + "/providers/{provider_id}/checkpoints/{checkpoint_id}",
        "Show a checkpoint."),
    _op("checkpoint:get_all", ADMIN_OR_OWNER, "GET", _P + "/providers/{provider_id}/checkpoints",
        "List checkpoints."),
    _op("checkpoint:delete", ADMIN_OR_OWNER, "DELETE",
        _P + "/providers/{provider_id}/checkpoints/{checkpoint_id}", "Delete a checkpoint."),
    _op("checkpoint:reset_state", ADMIN_API, "PUT",
        _P + "/providers/{provider_id}/checkpoints/{checkpoint_id}", "Force a checkpoint's status."),
    _op("checkpoint:copy", ADMIN_OR_OWNER, "POST", _P + "/providers/{provider_id}/checkpoints/action",
        "Copy checkpoints to another provider."),
    _op("restore:create", ADMIN_OR_OWNER, "POST", _P + "/restores", "Restore a checkpoint."),
    _op("restore:get", ADMIN_OR_OWNER, "GET", _P + "/restores/{restore_id}", "Show a restore."),
    _op("restore:get_all", ADMIN_OR_OWNER, "GET", _P + "/restores", "List restores."),
    _op("verification:create", ADMIN_OR_OWNER, "POST", _P + "/verifications", "Verify a checkpoint."),
    _op("verification:get", ADMIN_OR_OWNER, "GET", _P + "/verifications/{verification_id}",
        "Show a verification."),
    _op("verification:get_all", ADMIN_OR_OWNER, "GET", _P + "/verifications", "List verifications."),
    _op("operation_log:get", ADMIN_OR_OWNER, "GET", _P + "/operation_logs/{operation_log_id}",
        "Show an operation log."),
    _op("operation_log:get_all", ADMIN_OR_OWNER, "GET", _P + "/operation_logs", "List operation logs."),
    _op("trigger:create", ADMIN_OR_OWNER, "POST", _P + "/triggers", "Create a trigger."),
    _op("trigger:get", ADMIN_OR_OWNER, "GET", _P + "/triggers/{trigger_id}", "Show a trigger."),
    _op("trigger:list", ADMIN_OR_OWNER, "GET", _P + "/triggers", "List triggers."),
    _op("trigger:update", ADMIN_OR_OWNER, "PUT", _P + "/triggers/{trigger_id}", "Update a trigger."),
    _op("trigger:delete", ADMIN_OR_OWNER, "DELETE", _P + "/triggers/{trigger_id}", "Delete a trigger."),
    _op("scheduled_operation:create", ADMIN_OR_OWNER, "POST", _P + "/scheduled_operations",
        "Create a scheduled operation."),
    _op("scheduled_operation:get", ADMIN_OR_OWNER, "GET", _P + "/scheduled_operations/{scheduled_operation_id}",
        "Show a scheduled operation and its logs."),
    _op("scheduled_operation:list", ADMIN_OR_OWNER, "GET", _P + "/scheduled_operations",
        "List scheduled operations."),
    _op("scheduled_operation:update", ADMIN_OR_OWNER, "POST",
        _P + "/scheduled_operations/{scheduled_operation_id}/action", "Suspend or resume a scheduled operation."),
    _op("scheduled_operation:delete", ADMIN_OR_OWNER, "DELETE",
        _P + "/scheduled_operations/{scheduled_operation_id}", "Delete a scheduled operation."),
    _op("service:get_all", ADMIN_API, "GET", _P + "/os-services", "List services, up or down."),
    _op("service:update", ADMIN_API, "PUT", _P + "/os-services/{service_id}",
        "Enable or disable a service."),
    _op("all_tenants", ADMIN_API, "GET", _P + "/plans?all_tenants=1", "List objects of every project."),
]


def list_rules() -> list[policy.RuleDefault]:
    """For ``oslopolicy-sample-generator --namespace strongroom``."""
    return [*_BASE, *_RULES]


def get_enforcer(conf: cfg.ConfigOpts) -> policy.Enforcer:
    """An enforcer with our defaults registered; a ``policy.yaml`` found by oslo.policy overrides them."""
    enforcer = policy.Enforcer(conf)
    enforcer.register_defaults(list_rules())
    return enforcer


def is_admin(enforcer: policy.Enforcer, ctx: RequestContext) -> bool:
    return bool(enforcer.authorize("context_is_admin", {}, ctx.to_policy_values(), do_raise=False))


def authorize(enforcer: policy.Enforcer, ctx: RequestContext, action: str,
              target: dict[str, Any] | None = None) -> None:
    """Raise :class:`strongroom.exceptions.Forbidden` naming ``action`` unless policy allows it."""
    target = dict(target or {})
    target.setdefault("project_id", ctx.project_id)
    if not enforcer.authorize(action, target, ctx.to_policy_values(), do_raise=False):
        raise exceptions.Forbidden(reason=f"{action} is not allowed for this user")
