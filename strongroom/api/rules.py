"""The policy rules of the API, each declared once, and the one function that decides.

Defaults follow the secure-RBAC personas: a project ``reader`` may list and show what its project holds, a
project ``member`` (or an ``admin``) may also create, change, delete, protect, restore, verify and copy;
resetting a checkpoint's state, listing across projects (``all_tenants``) and ``os-services`` stay admin only.
Which persona a rule asks for is not written here but derived from the HTTP methods of the routes naming it
(:func:`strongroom.api.policy.persona`), so a rule added with its routes gets one by the same logic.  Every
persona default carries the legacy ``admin_or_owner`` check as its deprecated rule, which oslo.policy still
honours for operators who set ``[oslo_policy] enforce_new_defaults = false``.  The same decisions are taken
with ``noauth`` (whose contexts carry ``member`` and ``reader``, plus ``admin`` with the admin token) and with
keystone, so one code path is tested.

A route names the :class:`Rule` its handler checks (:mod:`strongroom.api.routes`); the oslo.policy defaults
are built from both (:mod:`strongroom.api.policy`).  This module imports neither, so the handlers below the
route table can call :func:`authorize`.
"""

from __future__ import annotations

import enum
from typing import Any

from oslo_policy import policy

from strongroom import exceptions
from strongroom.context import RequestContext

ADMIN_OR_OWNER = "rule:admin_or_owner"
ADMIN_API = "rule:admin_api"
PROJECT_READER_OR_ADMIN = "rule:project_reader_or_admin"
PROJECT_MEMBER_OR_ADMIN = "rule:project_member_or_admin"

BASE = (
    policy.RuleDefault("context_is_admin", "role:admin", description="Decides who is an administrator."),
    policy.RuleDefault("admin_or_owner", "rule:context_is_admin or project_id:%(project_id)s",
                       description="Administrators, or members of the object's project."),
    policy.RuleDefault("admin_api", "rule:context_is_admin",
                       description="Administrators only."),
    # Keystone's tokens carry the roles ``member`` implies (``reader``); ``member`` is named as well so a
    # deployment without that implied role (or a token made by hand) still lets its members read.
    policy.RuleDefault("project_reader_or_admin",
                       "rule:context_is_admin or ((role:reader or role:member) and project_id:%(project_id)s)",
                       description="Administrators, or readers (and members) of the object's project."),
    policy.RuleDefault("project_member_or_admin",
                       "rule:context_is_admin or (role:member and project_id:%(project_id)s)",
                       description="Administrators, or members of the object's project."),
)


class Rule(enum.Enum):
    """A rule an API call is checked against: its name, description and default check.

    The order of the members is the order of ``policy.yaml.sample``.
    """

    PROVIDER_GET = ("provider:get", "Show a provider.")
    PROVIDER_GET_ALL = ("provider:get_all", "List providers.")
    PROTECTABLE_GET = ("protectable:get", "Show protectables.")
    PROTECTABLE_GET_ALL = ("protectable:get_all", "List protectable types.")
    PLAN_CREATE = ("plan:create", "Create a plan.")
    PLAN_GET = ("plan:get", "Show a plan.")
    PLAN_GET_ALL = ("plan:get_all", "List plans.")
    PLAN_UPDATE = ("plan:update", "Update a plan.")
    PLAN_DELETE = ("plan:delete", "Delete a plan.")
    CHECKPOINT_CREATE = ("checkpoint:create", "Protect a plan (create a checkpoint).")
    CHECKPOINT_GET = ("checkpoint:get", "Show a checkpoint.")
    CHECKPOINT_GET_ALL = ("checkpoint:get_all", "List checkpoints.")
    CHECKPOINT_DELETE = ("checkpoint:delete", "Delete a checkpoint.")
    CHECKPOINT_RESET_STATE = ("checkpoint:reset_state", "Force a checkpoint's status.", ADMIN_API)
    CHECKPOINT_COPY = ("checkpoint:copy", "Copy checkpoints to another provider.")
    RESTORE_CREATE = ("restore:create", "Restore a checkpoint.")
    RESTORE_GET = ("restore:get", "Show a restore.")
    RESTORE_GET_ALL = ("restore:get_all", "List restores.")
    VERIFICATION_CREATE = ("verification:create", "Verify a checkpoint.")
    VERIFICATION_GET = ("verification:get", "Show a verification.")
    VERIFICATION_GET_ALL = ("verification:get_all", "List verifications.")
    OPERATION_LOG_GET = ("operation_log:get", "Show an operation log.")
    OPERATION_LOG_GET_ALL = ("operation_log:get_all", "List operation logs.")
    TRIGGER_CREATE = ("trigger:create", "Create a trigger.")
    TRIGGER_GET = ("trigger:get", "Show a trigger.")
    TRIGGER_LIST = ("trigger:list", "List triggers.")
    TRIGGER_UPDATE = ("trigger:update", "Update a trigger.")
    TRIGGER_DELETE = ("trigger:delete", "Delete a trigger.")
    SCHEDULED_OPERATION_CREATE = ("scheduled_operation:create", "Create a scheduled operation.")
    SCHEDULED_OPERATION_GET = ("scheduled_operation:get", "Show a scheduled operation and its logs.")
    SCHEDULED_OPERATION_LIST = ("scheduled_operation:list", "List scheduled operations.")
    SCHEDULED_OPERATION_UPDATE = ("scheduled_operation:update", "Suspend or resume a scheduled operation.")
    SCHEDULED_OPERATION_DELETE = ("scheduled_operation:delete", "Delete a scheduled operation.")
    ALERT_GET_ALL = ("alert:get_all", "List alerts (the project's, and what puts its plans at risk).")
    SERVICE_GET_ALL = ("service:get_all", "List services, up or down.", ADMIN_API)
    SERVICE_UPDATE = ("service:update", "Enable or disable a service.", ADMIN_API)
    # Named by no route: checked inside list handlers (``all_tenants=1``, a foreign ``project_id``).
    ALL_TENANTS = ("all_tenants", "List objects of every project.", ADMIN_API)
    PROVIDER_BLOCK_BACKENDS = ("provider:block_backends",
                               "See a provider's block backends, their pools and capacity, on its show.", ADMIN_API)
    USAGE_GET = ("usage:get", "Show what a project's checkpoints hold in the banks (all_tenants: admin).")
    POOL_GET_ALL = ("pool:get_all", "List the block backends' pools and their capacity.", ADMIN_API)
    QUOTA_GET = ("quota:get", "Show a project's quotas (with their use, in detail).")
    QUOTA_UPDATE = ("quota:update", "Set a project's quotas.", ADMIN_API)
    QUOTA_DEFAULTS = ("quota:defaults", "Show the default quotas.")
    QUOTA_CLASS_GET = ("quota_class:get", "Show a quota class.", ADMIN_API)
    QUOTA_CLASS_UPDATE = ("quota_class:update", "Set a quota class's limits.", ADMIN_API)

    def __init__(self, action: str, description: str, check_str: str = ADMIN_OR_OWNER) -> None:
        # ``check_str`` is the legacy check: ADMIN_OR_OWNER rules get a persona default (reader or member,
        # from their routes' methods) with it as the deprecated rule; any other check is kept as it is.
        self.action = action
        self.description = description
        self.check_str = check_str


def is_admin(enforcer: policy.Enforcer, ctx: RequestContext) -> bool:
    return bool(enforcer.authorize("context_is_admin", {}, ctx.to_policy_values(), do_raise=False))


def allowed(enforcer: policy.Enforcer, ctx: RequestContext, action: str,
            target: dict[str, Any] | None = None) -> bool:
    """Whether policy allows ``action``: for what a handler adds to an answer rather than refuses."""
    target = dict(target or {})
    target.setdefault("project_id", ctx.project_id)
    return bool(enforcer.authorize(action, target, ctx.to_policy_values(), do_raise=False))


def authorize(enforcer: policy.Enforcer, ctx: RequestContext, action: str,
              target: dict[str, Any] | None = None) -> None:
    """Raise :class:`strongroom.exceptions.Forbidden` naming ``action`` unless policy allows it."""
    if not allowed(enforcer, ctx, action, target):
        raise exceptions.Forbidden(reason=f"{action} is not allowed for this user")
