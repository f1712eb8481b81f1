"""oslo.policy defaults of the API, derived from the route table, and the enforcer that holds them.

A rule's name, description and default check are declared once (:class:`strongroom.api.rules.Rule`); the
operations it documents are those of every route naming it (:data:`strongroom.api.routes.ROUTES`), so no path
is written twice.  The decision itself is :func:`strongroom.api.rules.authorize`.
Nothing is registered at import: :func:`get_enforcer` builds an ``Enforcer`` on the given ``ConfigOpts``.
"""

from __future__ import annotations

from oslo_config import cfg
from oslo_policy import policy

from strongroom.api.routes import ROUTES, V1
from strongroom.api.rules import BASE, Rule

# The documented operations of the rules no route names (they are checked inside handlers).
_UNROUTED: dict[Rule, list[policy.Operation]] = {
    Rule.ALL_TENANTS: [{"method": "GET", "path": V1 + "/plans?all_tenants=1"}],
    Rule.PROVIDER_BLOCK_BACKENDS: [{"method": "GET", "path": V1 + "/providers/{provider_id}"}],
}


def list_rules() -> list[policy.RuleDefault]:
    """For ``oslopolicy-sample-generator --namespace strongroom``: the base rules, then every :class:`Rule`."""
    operations: dict[Rule, list[policy.Operation]] = {rule: list(_UNROUTED.get(rule, [])) for rule in Rule}
    for route in ROUTES:
        operations[route.rule].append({"method": route.method, "path": route.full_path})
    return [*BASE, *(policy.DocumentedRuleDefault(rule.action, rule.check_str, rule.description, operations[rule])
                     for rule in Rule)]


def get_enforcer(conf: cfg.ConfigOpts) -> policy.Enforcer:
    """An enforcer with our defaults registered; a ``policy.yaml`` found by oslo.policy overrides them."""
    enforcer = policy.Enforcer(conf)
    enforcer.register_defaults(list_rules())
    return enforcer
