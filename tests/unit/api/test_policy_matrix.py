"""The secure-RBAC matrix, rule by rule, generated from the route table: a project reader may do what the
``GET`` routes do, a project member everything else of its project, an administrator anything; the admin-only
rules stay admin only; another project's reader or member gets nothing; and with ``[oslo_policy]
enforce_new_defaults = false`` the legacy ``admin_or_owner`` check is honoured again (any role of the project)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from oslo_policy import policy as oslo_policy

from strongroom.api import policy, rules
from strongroom.api.routes import ROUTES
from strongroom.api.rules import Rule
from strongroom.config import new_conf
from strongroom.context import RequestContext, get_context

ADMIN_ONLY = {rule for rule in Rule if rule.check_str != rules.ADMIN_OR_OWNER}
#: Rules a reader may use: those only GET routes name (and not admin only).
READER_ALLOWED = {rule for rule in Rule
                  if rule not in ADMIN_ONLY and {r.method for r in ROUTES if r.rule is rule} == {"GET"}}
MEMBER_ONLY = set(Rule) - ADMIN_ONLY - READER_ALLOWED


def _ctx(project: str, *roles: str) -> RequestContext:
    return get_context(project, user_id="u-" + "-".join(roles), roles=list(roles))


PERSONAS: dict[str, RequestContext] = {
    "admin": _ctx("p1", "admin", "member", "reader"),
    "member": _ctx("p1", "member", "reader"),
    "member-without-implied-reader": _ctx("p1", "member"),
    "reader": _ctx("p1", "reader"),
    "other-member": _ctx("p2", "member", "reader"),
    "other-reader": _ctx("p2", "reader"),
    "no-role": _ctx("p1", "observer"),
}


def expected(persona: str, rule: Rule) -> bool:
    if persona == "admin":
        return True
    if rule in ADMIN_ONLY or persona in ("other-member", "other-reader", "no-role"):
        return False
    if persona == "reader":
        return rule in READER_ALLOWED
    return True  # the members


def _enforcer(**oslo_policy_options: Any) -> oslo_policy.Enforcer:
    conf = new_conf()
    enforcer = policy.get_enforcer(conf)  # registers [oslo_policy]'s options
    for name, value in oslo_policy_options.items():
        conf.set_override(name, value, group="oslo_policy")
    return enforcer


def test_the_matrix_partitions_every_rule() -> None:
    assert READER_ALLOWED and MEMBER_ONLY
    assert {Rule.PLAN_GET, Rule.PLAN_GET_ALL, Rule.CHECKPOINT_GET, Rule.CHECKPOINT_GET_ALL} <= READER_ALLOWED
    assert {Rule.PLAN_CREATE, Rule.PLAN_UPDATE, Rule.PLAN_DELETE, Rule.CHECKPOINT_CREATE, Rule.CHECKPOINT_DELETE,
            Rule.CHECKPOINT_COPY, Rule.RESTORE_CREATE, Rule.VERIFICATION_CREATE,
            Rule.SCHEDULED_OPERATION_UPDATE} <= MEMBER_ONLY
    assert {Rule.CHECKPOINT_RESET_STATE, Rule.ALL_TENANTS, Rule.SERVICE_GET_ALL} <= ADMIN_ONLY


@pytest.mark.parametrize("persona", sorted(PERSONAS))
@pytest.mark.parametrize("rule", list(Rule), ids=lambda r: r.action)
def test_matrix(rule: Rule, persona: str) -> None:
    ctx = PERSONAS[persona]
    # The object is of project p1 (the URL's project of the first five personas).
    got = rules.allowed(_enforcer(), ctx, rule.action, {"project_id": "p1"})
    assert got is expected(persona, rule), f"{persona} on {rule.action}"


def test_defaults_are_project_scoped_with_the_legacy_rule_deprecated() -> None:
    defaults = {r.name: r for r in policy.list_rules() if isinstance(r, oslo_policy.DocumentedRuleDefault)}
    assert set(defaults) == {rule.action for rule in Rule}
    for rule in Rule:
        default = defaults[rule.action]
        assert default.scope_types == ["project"]
        if rule in ADMIN_ONLY:
            assert default.deprecated_rule is None and default.check_str == rule.check_str
        else:
            assert default.check_str == (rules.PROJECT_READER_OR_ADMIN if rule in READER_ALLOWED
                                         else rules.PROJECT_MEMBER_OR_ADMIN)
            deprecated = default.deprecated_rule
            assert deprecated is not None and deprecated.check_str == rules.ADMIN_OR_OWNER
            assert deprecated.deprecated_since and deprecated.deprecated_reason


def test_a_rule_appended_with_routes_gets_its_persona_from_their_methods() -> None:
    get_only = [{"method": "GET", "path": "/v1/{project_id}/quotas/{id}"}]
    mixed = [*get_only, {"method": "PUT", "path": "/v1/{project_id}/quotas/{id}"}]
    assert policy.persona(Rule.PLAN_GET, get_only) == rules.PROJECT_READER_OR_ADMIN
    assert policy.persona(Rule.PLAN_GET, mixed) == rules.PROJECT_MEMBER_OR_ADMIN
    assert policy.persona(Rule.SERVICE_UPDATE, get_only) == rules.ADMIN_API


# oslo.policy warns, once per rule, that the deprecated check is still honoured: what an operator who opted
# out is told.
@pytest.mark.filterwarnings("ignore:Policy .* was deprecated")
@pytest.mark.parametrize("rule", sorted(MEMBER_ONLY, key=lambda r: r.action), ids=lambda r: r.action)
def test_opting_out_of_the_new_defaults_restores_admin_or_owner(rule: Rule) -> None:
    reader = PERSONAS["reader"]
    assert not rules.allowed(_enforcer(), reader, rule.action, {"project_id": "p1"})
    legacy = _enforcer(enforce_new_defaults=False)
    assert rules.allowed(legacy, reader, rule.action, {"project_id": "p1"})
    assert not rules.allowed(legacy, PERSONAS["other-member"], rule.action, {"project_id": "p1"})


@pytest.mark.filterwarnings("ignore:Policy .* was deprecated")
def test_scope_is_enforced() -> None:
    """oslo.policy 6 always checks scope (its ``enforce_scope`` option is gone): a system-scoped token is
    refused by these project-scoped rules, admin or not, whatever ``enforce_new_defaults`` says."""
    system_admin = RequestContext(user_id="root", roles=["admin", "member", "reader"], system_scope="all",
                                  overwrite=False)
    for enforcer in (_enforcer(), _enforcer(enforce_new_defaults=False)):
        assert not rules.allowed(enforcer, system_admin, "plan:get", {"project_id": "p1"})
        assert not rules.allowed(enforcer, system_admin, "all_tenants", {"project_id": "p1"})
    assert rules.allowed(_enforcer(), PERSONAS["admin"], "all_tenants", {"project_id": "p1"})


def test_the_tools_entry_point_gives_our_enforcer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["oslopolicy-checker", "--policy", "x.yaml"])
    enforcer = policy.enforcer_for_tools()
    enforcer.load_rules()
    assert "plan:create" in enforcer.rules and enforcer.rules["plan:create"] is not None


def test_the_policy_tools_find_our_enforcer(tmp_path: Path) -> None:
    """``oslopolicy-list-redundant`` loads the enforcer by the entry point, with the tool's configuration."""
    (tmp_path / "policy.yaml").write_text('"plan:get": "rule:project_reader_or_admin"\n"plan:create": "role:x"\n')
    (tmp_path / "strongroom.conf").write_text(f"[oslo_policy]\npolicy_file = {tmp_path / 'policy.yaml'}\n")
    tool = Path(sys.executable).parent / "oslopolicy-list-redundant"
    done = subprocess.run([str(tool), "--namespace", "strongroom", "--config-file", str(tmp_path / "strongroom.conf")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == '"plan:get": "rule:project_reader_or_admin"'
