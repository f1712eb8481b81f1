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
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

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


class CachingEnforcer(policy.Enforcer):  # type: ignore[misc]
    """oslo.policy's ``Enforcer`` that remembers its decisions while its rules stay the same.

    Evaluating a rule costs oslo.policy an ``inspect.getfullargspec`` per check of the rule's tree (a persona
    default with its deprecated alternative has seven or so): about 0.8 ms of CPU per decision, three
    decisions per request, nearly half of what a list or show request cost.  A decision is a function of the
    rule, the target and the credentials, so the answer to the same question is kept, and dropped whenever
    the rules change: new rules set (a changed ``policy.yaml`` or ``policy.d``), a rule object replaced, a
    default registered.  oslo.policy looks for changed policy files at every decision (``load_rules``: a
    search of the configuration directories, ~0.2 ms); this one at most every ``recheck_interval`` seconds
    (1), so an edited policy file rules the answers a second later at most.  Not kept: a call that may raise
    (``do_raise``), a rule given as a check object, a target or credentials with a value that cannot be a
    key (a nested dict).  A policy that asks a remote server (oslo.policy's ``http:`` check) would be asked once per
    question: none of ours does.
    """

    #: Decisions kept at most (then all are dropped): roughly rules x callers' role sets x projects.
    MAX_DECISIONS = 4096

    def __init__(self, *args: Any, recheck_interval: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 **kwargs: Any) -> None:
        self._recheck_interval = recheck_interval
        self._clock = clock
        self._checked_at: float | None = None
        self._decisions: dict[tuple[Any, ...], bool] = {}
        self._decisions_for: tuple[Any, int] | None = None
        self._generation = 0
        self._decisions_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def set_rules(self, *args: Any, **kwargs: Any) -> None:
        super().set_rules(*args, **kwargs)
        self._generation += 1

    def register_default(self, default: policy.RuleDefault) -> None:
        super().register_default(default)
        self._generation += 1

    def enforce(self, rule: Any, target: Any, creds: Any, do_raise: bool = False, exc: Any = None,
                *args: Any, **kwargs: Any) -> Any:
        key = _decision_key(rule, target, creds) if not (do_raise or exc or args or kwargs) else None
        if key is None:
            return super().enforce(rule, target, creds, do_raise, exc, *args, **kwargs)
        now = self._clock()
        if self._checked_at is None or not 0 <= now - self._checked_at < self._recheck_interval:
            self.load_rules()  # what enforce does first: a changed policy file sets new rules
            self._checked_at = now
        state = (self.rules, self._generation)
        with self._decisions_lock:
            if not self._same_rules(state):
                self._decisions, self._decisions_for = {}, state
            found = self._decisions.get(key)
        if found is not None:
            return found
        result = bool(super().enforce(rule, target, creds, False))  # a first question: as oslo.policy asks it
        with self._decisions_lock:
            if self._same_rules(state):  # not when the question itself found new rules
                if len(self._decisions) >= self.MAX_DECISIONS:
                    self._decisions.clear()
                self._decisions[key] = result
        return result

    def _same_rules(self, state: tuple[Any, int]) -> bool:
        kept = self._decisions_for
        return kept is not None and kept[0] is state[0] and kept[1] == state[1]


def _frozen(values: Any) -> tuple[Any, ...] | None:
    """``values`` (a mapping) as a sorted tuple of items, lists as tuples; None when one cannot be a key."""
    if not isinstance(values, Mapping):
        return None
    items = []
    for name, value in values.items():
        if isinstance(value, list | tuple):
            if not all(isinstance(v, str | int | float | bool | None) for v in value):
                return None
            value = tuple(value)
        elif not isinstance(value, str | int | float | bool | None):
            return None
        items.append((str(name), value))
    return tuple(sorted(items))


def _decision_key(rule: Any, target: Any, creds: Any) -> tuple[Any, ...] | None:
    if not isinstance(rule, str):
        return None
    if hasattr(creds, "to_policy_values"):
        creds = creds.to_policy_values()
    frozen_target, frozen_creds = _frozen(target), _frozen(creds)
    if frozen_target is None or frozen_creds is None:
        return None
    return (rule, frozen_target, frozen_creds)


def get_enforcer(conf: cfg.ConfigOpts) -> policy.Enforcer:
    """An enforcer with our defaults registered; a ``policy.yaml`` found by oslo.policy overrides them."""
    enforcer = CachingEnforcer(conf)
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
