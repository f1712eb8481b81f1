"""``strongroom trigger ...`` and ``strongroom scheduledoperation ...`` against the in-process API server."""

from __future__ import annotations

import functools

import cliharness
import pytest
from apiharness import PROVIDER_ID, Stack

run = functools.partial(cliharness.run, project="cli-sched")
run_json = functools.partial(cliharness.run_json, project="cli-sched")


def test_trigger_and_scheduled_operation_commands(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    plan = stack.add_plan(project="cli-sched")
    trigger = run_json(stack, capsys, "trigger", "create", "nightly", "--pattern", "0 2 * * *", "--window", "600")
    assert trigger["properties"]["pattern"] == "0 2 * * *" and trigger["properties"]["window"] == 600
    karbor_style = run_json(stack, capsys, "trigger", "create", "hourly", "--property", "format=calendar",
                            "--property", "pattern=BEGIN:VEVENT\\nRRULE:FREQ=HOURLY\\nEND:VEVENT",
                            "--property", "window=300")
    assert karbor_style["properties"]["format"] == "calendar"
    code, out, _ = run(stack, capsys, "trigger", "list")
    assert code == 0 and "nightly" in out and "0 2 * * *" in out
    updated = run_json(stack, capsys, "trigger", "update", trigger["id"], "--pattern", "30 3 * * *")
    assert updated["properties"]["pattern"] == "30 3 * * *"

    op = run_json(stack, capsys, "scheduledoperation", "create", "keep a week", "retention_protect", trigger["id"],
                  "--provider-id", PROVIDER_ID, "--plan-id", plan.id, "--max-backups", "7", "--keep-monthly", "3")
    assert op["operation_definition"] == {"provider_id": PROVIDER_ID, "plan_id": plan.id, "max_backups": 7,
                                          "keep_monthly": 3}
    assert [o["id"] for o in run_json(stack, capsys, "scheduledoperation", "list")] == [op["id"]]
    assert run_json(stack, capsys, "scheduledoperation", "suspend", op["id"])["enabled"] is False
    assert run_json(stack, capsys, "scheduledoperation", "resume", op["id"])["enabled"] is True
    code, out, _ = run(stack, capsys, "scheduledoperation", "logs", op["id"])
    assert code == 0 and "expect_start_time" in out and "state" in out

    code, _, err = run(stack, capsys, "trigger", "delete", trigger["id"])
    assert code == 1 and "HTTP 409" in err and "used by scheduled operation" in err
    code, _, err = run(stack, capsys, "scheduledoperation", "delete", op["id"])
    assert code == 0 and "deleted" in err
    code, _, err = run(stack, capsys, "trigger", "delete", trigger["id"])
    assert code == 0


def test_scheduling_usage_and_server_errors(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(stack, capsys, "trigger", "create", "t")
    assert code == 2 and "--pattern is required" in err
    code, _, err = run(stack, capsys, "trigger", "create", "t", "--pattern", "*/5 * * * *")
    assert code == 1 and "trigger_info.properties.pattern" in err and "minimum interval" in err
    code, _, err = run(stack, capsys, "trigger", "update", "4f7e3a52-0c1d-4b7e-9f1a-2d3c4b5a6e7f")
    assert code == 2 and "nothing to change" in err
