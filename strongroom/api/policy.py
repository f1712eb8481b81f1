"""oslo.policy defaults of the API, derived from the route table, and the enforcer that holds them.

A rule's name, description and legacy check are declared once (:class:`strongroom.api.rules.Rule`); the
operations it documents are those of every route naming it (:data:`strongroom.api.routes.ROUTES`), so no path
is written twice.  Its secure-RBAC default is derived from those routes too (:func:`persona`): a rule every
route of which is a ``GET`` asks for a project reader, any other for a project member; a rule whose legacy
check is not ``admin_or_owner`` (the admin-only ones) keeps that check.  Every rule is project scoped
(``scope_types=["project"]``), and every persona default carries ``admin_or_owner`` as a ``DeprecatedRule``:
with ``[oslo_policy] enforce_new_defaults = false`` oslo.policy accepts either check, the old behaviour.
The decision itself is :func:`strongroom.api.rules.authorize`.
Nothing is registered at import: :func:`get_enforcer` builds an ``Enforcer`` on the given ``ConfigOpts``.
"""

from __future__ import annotations

import sys

from oslo_config import cfg
from oslo_policy import policy

from strongroom.api.routes import ROUTES, V1
from strongroom.api.rules import ADMIN_OR_OWNER, BASE, PROJECT_MEMBER_OR_ADMIN, PROJECT_READER_OR_ADMIN, Rule

# The documented operations of the rules no route names (they are checked inside handlers).
_UNROUTED: dict[Rule, list[policy.Operation]] = {
    Rule.ALL_TENANTS: [{"method": "GET", "path": V1 + "/plans?all_tenants=1"}],
    Rule.PROVIDER_BLOCK_BACKENDS: [{"method": "GET", "path": V1 + "/providers/{provider_id}"}],
}

SCOPE_TYPES = ["project"]
DEPRECATED_SINCE = "2026.2"
DEPRECATED_REASON = ("The API now understands the reader, member and admin personas of Keystone's default "
                     "roles: a project reader may list and show, only a member or an administrator may change. "
                     "The legacy admin_or_owner check let any role of the project do everything.")


def persona(rule: Rule, operations: list[policy.Operation]) -> str:
    """The default check of ``rule``: reader for a rule only ``GET`` routes name, member for any other;
    a rule whose legacy check is not ``admin_or_owner`` keeps its own (administrators only)."""
    if rule.check_str != ADMIN_OR_OWNER:
        return rule.check_str
    if operations and all(op["method"] == "GET" for op in operations):
        return PROJECT_READER_OR_ADMIN
    return PROJECT_MEMBER_OR_ADMIN


def _operations() -> dict[Rule, list[policy.Operation]]:
    operations: dict[Rule, list[policy.Operation]] = {rule: list(_UNROUTED.get(rule, [])) for rule in Rule}
    for route in ROUTES:
        operations[route.rule].append({"method": route.method, "path": route.full_path})
    return operations


def _default(rule: Rule, operations: list[policy.Operation]) -> policy.DocumentedRuleDefault:
    check = persona(rule, operations)
    deprecated = None
    if check != rule.check_str:
        deprecated = policy.DeprecatedRule(name=rule.action, check_str=rule.check_str,
                                           deprecated_reason=DEPRECATED_REASON,
                                           deprecated_since=DEPRECATED_SINCE)
    return policy.DocumentedRuleDefault(rule.action, check, rule.description, operations,
                                        scope_types=SCOPE_TYPES, deprecated_rule=deprecated)


def list_rules() -> list[policy.RuleDefault]:
    """For ``oslopolicy-sample-generator --namespace strongroom``: the base rules, then every :class:`Rule`."""
    operations = _operations()
    return [*BASE, *(_default(rule, operations[rule]) for rule in Rule)]


def get_enforcer(conf: cfg.ConfigOpts) -> policy.Enforcer:
    """An enforcer with our defaults registered; a ``policy.yaml`` found by oslo.policy overrides them."""
    enforcer = policy.Enforcer(conf)
    enforcer.register_defaults(list_rules())
    return enforcer


def enforcer_for_tools() -> policy.Enforcer:
    """The ``oslo.policy.enforcer`` entry point (``oslopolicy-policy-generator``, ``oslopolicy-checker``...):
    our enforcer on a fresh ``ConfigOpts`` given the tool's ``--config-file``/``--config-dir`` arguments only
    (the tool's own arguments are not ours to parse), so it sees the deployment's ``[oslo_policy]``."""
    args: list[str] = []
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg.startswith(("--config-file", "--config-dir")):
            args.append(arg)
            if "=" not in arg and i + 1 < len(argv):
                args.append(argv[i + 1])
    conf = cfg.ConfigOpts()
    conf(args, project="strongroom")  # no --config-file: oslo.config's default places, as the services
    return get_enforcer(conf)
