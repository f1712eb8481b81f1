"""The route table is the one source of the routes and of the operations the policy defaults document."""

from __future__ import annotations

from pathlib import Path

import pytest
from oslo_config import cfg
from oslo_policy import generator
from oslo_policy import policy as oslo_policy

from strongroom.api import policy
from strongroom.api.routes import ROUTES, Route
from strongroom.api.rules import Rule
from strongroom.api.v1 import plans

SAMPLE = Path(__file__).resolve().parents[3] / "etc" / "strongroom" / "policy.yaml.sample"


def _documented() -> dict[str, oslo_policy.DocumentedRuleDefault]:
    return {r.name: r for r in policy.list_rules() if isinstance(r, oslo_policy.DocumentedRuleDefault)}


def test_every_route_is_documented_under_the_rule_it_names() -> None:
    documented = _documented()
    for route in ROUTES:
        operations = documented[route.rule.action].operations
        assert operations.count({"method": route.method, "path": route.full_path}) == 1, route


def test_every_rule_is_documented_once_in_declaration_order() -> None:
    assert list(_documented()) == [rule.action for rule in Rule]
    assert [r.name for r in policy.list_rules()][:3] == ["context_is_admin", "admin_or_owner", "admin_api"]


def test_only_rules_checked_inside_handlers_are_named_by_no_route() -> None:
    assert set(Rule) - {route.rule for route in ROUTES} == {Rule.ALL_TENANTS, Rule.PROVIDER_BLOCK_BACKENDS}
    assert _documented()["all_tenants"].operations == [
        {"method": "GET", "path": "/v1/{project_id}/plans?all_tenants=1"}]


def test_a_route_naming_an_unknown_request_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="NoSuchSchema"):
        Route("POST", "/plans", plans.create, Rule.PLAN_CREATE, "Create a plan", "NoSuchSchema")


def test_the_policy_sample_is_what_the_generator_writes(tmp_path: Path) -> None:
    """The ``oslo.policy.policies`` entry point works and ``make sample-config`` has been run."""
    out = tmp_path / "policy.yaml.sample"
    generator.generate_sample(["--namespace", "strongroom", "--output-file", str(out)], conf=cfg.ConfigOpts())
    assert out.read_text() == SAMPLE.read_text()
