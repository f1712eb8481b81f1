"""``strongroom alert list`` against the API test stack (alerts from the real evaluator, a pool filling up)."""

from __future__ import annotations

import datetime as _dt

import pytest
from apiharness import Stack
from cliharness import run, run_json

from strongroom.alerts import resources as rc
from strongroom.alerts.engine import Evaluator


def test_alert_list_shows_the_pool_alert_and_the_plan_it_puts_at_risk(
        stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    world = [
        rc.Pool.resource("mem/memory", "pool 'memory' of block backend 'mem'",
                         statistics={"free_percent": 4.0, "free_bytes": 4, "total_bytes": 100},
                         affects=[("volume", "mem/vol-1")]),
        rc.Volume.resource("mem/vol-1", "volume 'vol-1'", project_id="cli-proj", affects=[("plan", "p")]),
        rc.Plan.resource("p", "plan 'nightly'", project_id="cli-proj"),
    ]
    stack.endpoint.alerts = Evaluator().evaluate(world, _dt.datetime(2026, 5, 4, tzinfo=_dt.UTC))
    try:
        code, out, _ = run(stack, capsys, "alert", "list")
        assert code == 0
        header = [c.strip() for c in out.splitlines()[1].split("|")[1:-1]]
        assert header == ["severity", "condition", "resource_type", "resource_name", "message", "raised_at",
                          "cleared_at"]
        assert "pool 'memory' of block backend 'mem' has 4.0% free" in out
        listed = run_json(stack, capsys, "alert", "list", "--severity", "warning")
        assert {(a["condition"], a["resource_type"]) for a in listed} == {
            ("pool_free_capacity_low", "pool"), ("at_risk", "volume"), ("at_risk", "plan")}
        assert run_json(stack, capsys, "alert", "list", "--active", "false") == []
        code, _, err = run(stack, capsys, "alert", "list", "--all-tenants")
        assert code == 1 and "HTTP 403" in err
    finally:
        stack.endpoint.alerts = []
