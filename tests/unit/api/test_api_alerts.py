"""``GET /v1/{project_id}/alerts`` over HTTP: a project sees its plans' alerts and the infrastructure alerts
that put them at risk, never another project's; ``all_tenants`` for administrators; filters checked.

The alerts are the real evaluator's (a bank down, affecting two projects' plans), handed to the harness's
FAKE protection endpoint, which scopes them with the same function the real manager uses."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from typing import Any

import pytest
from apiharness import ADMIN_TOKEN, Stack

from strongroom.alerts import resources as rc
from strongroom.alerts.engine import Evaluator

NOW = _dt.datetime(2026, 5, 4, 12, 0, tzinfo=_dt.UTC)


@pytest.fixture
def bank_down(stack: Stack) -> Iterator[None]:
    world = [
        rc.Bank.resource("P/bank", "bank 'swift' of provider 'Cloud'", statistics={"error": "connection refused"},
                         affects=[("provider", "P")]),
        rc.Provider.resource("P", "provider 'Cloud'", affects=[("plan", "plan-a"), ("plan", "plan-b")]),
        rc.Plan.resource("plan-a", "plan 'nightly'", project_id="proj-a"),
        rc.Plan.resource("plan-b", "plan 'payroll'", project_id="proj-b"),
    ]
    stack.endpoint.alerts = Evaluator().evaluate(world, NOW)
    yield
    stack.endpoint.alerts = []


def _alerts(resp: Any) -> list[dict[str, Any]]:
    assert resp.status_code == 200, resp.text
    return list(resp.json()["alerts"])


def test_a_project_sees_its_plan_at_risk_and_the_bank_alert_but_nothing_of_another_project(
        stack: Stack, bank_down: None) -> None:
    alerts = _alerts(stack.call("GET", "/alerts", project="proj-a"))
    assert {(a["condition"], a["resource_type"]) for a in alerts} == {
        ("bank_unreachable", "bank"), ("at_risk", "provider"), ("at_risk", "plan")}
    [plan] = [a for a in alerts if a["resource_type"] == "plan"]
    [bank] = [a for a in alerts if a["resource_type"] == "bank"]
    assert plan == {**plan, "resource_id": "plan-a", "project_id": "proj-a", "severity": "error", "active": True,
                    "cause_id": bank["id"], "raised_at": "2026-05-04T12:00:00+00:00", "cleared_at": None,
                    "message": "plan 'nightly' is at risk: bank 'swift' of provider 'Cloud' is unreachable: "
                               "connection refused"}
    assert "payroll" not in str(alerts) and "proj-b" not in str(alerts)
    assert _alerts(stack.call("GET", "/alerts", project="proj-c")) == []


def test_all_tenants_is_for_administrators(stack: Stack, bank_down: None) -> None:
    resp = stack.call("GET", "/alerts", project="proj-a", params={"all_tenants": "1"})
    assert resp.status_code == 403 and "all_tenants" in resp.text
    everything = _alerts(stack.call("GET", "/alerts", project="proj-a", token=ADMIN_TOKEN,
                                    params={"all_tenants": "1"}))
    assert {a["resource_id"] for a in everything if a["resource_type"] == "plan"} == {"plan-a", "plan-b"}


def test_filters_keep_what_they_name_and_a_bad_value_is_a_400_naming_it(stack: Stack, bank_down: None) -> None:
    assert [a["condition"] for a in _alerts(stack.call("GET", "/alerts", project="proj-a",
                                                       params={"active": "false"}))] == []
    assert len(_alerts(stack.call("GET", "/alerts", project="proj-a", params={"active": "true",
                                                                             "severity": "error"}))) == 3
    assert _alerts(stack.call("GET", "/alerts", project="proj-a", params={"severity": "warning"})) == []
    resp = stack.call("GET", "/alerts", project="proj-a", params={"active": "maybe"})
    assert resp.status_code == 400 and "active: 'maybe' is not a boolean" in resp.text
    resp = stack.call("GET", "/alerts", project="proj-a", params={"severity": "dire"})
    assert resp.status_code == 400 and "severity: 'dire' is not one of info, warning, error" in resp.text
