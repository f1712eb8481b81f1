"""The ``strongroom`` CLI's output options anywhere on the line, ``--version``, and what ``--wait`` shows
(bytes, rate and ETA of a restore; the id it was following on Ctrl-C)."""

from __future__ import annotations

import json

import pytest
from apiharness import PROVIDER_ID, Stack
from cliharness import run

from strongroom.client.cli import hoist_output_options, main
from strongroom.client.output import progress_line


def test_format_and_columns_after_the_subcommand(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    plan = stack.add_plan(project="cli-proj", name="fmt-plan")
    code, out, err = run(stack, capsys, "plan", "show", plan.id, "-f", "json")
    assert code == 0, err
    assert json.loads(out)["name"] == "fmt-plan"
    for argv in (["-f", "value", "-c", "id", "plan", "show", plan.id],
                 ["plan", "show", plan.id, "-f", "value", "-c", "id"],
                 ["plan", "show", "-fvalue", plan.id, "--column=id"]):
        code, out, err = run(stack, capsys, *argv)
        assert (code, out) == (0, plan.id + "\n"), (argv, err)
    code, out, _ = run(stack, capsys, "plan", "list", "--name", "fmt-plan", "-f", "value", "-c", "id", "-c", "name")
    assert out == f"{plan.id} fmt-plan\n"
    code, out, _ = run(stack, capsys, "plan", "list", "--name", "fmt-plan", "-f", "csv", "-c", "name")
    assert out == '"name"\n"fmt-plan"\n'
    code, out, _ = run(stack, capsys, "plan", "show", plan.id, "-f", "yaml", "-c", "name", "-c", "status")
    assert out == "name: fmt-plan\nstatus: suspended\n"
    code, out, err = run(stack, capsys, "plan", "show", plan.id, "-c", "nope")
    assert code == 2 and "-c nope: no such column" in err and "provider_id" in err


def test_trigger_format_is_not_taken_for_an_output_format() -> None:
    argv = ["trigger", "create", "n", "--format", "calendar", "--pattern", "x", "-f", "json"]
    assert hoist_output_options(argv) == ["-f", "json", "trigger", "create", "n", "--format", "calendar",
                                          "--pattern", "x"]
    assert hoist_output_options(["plan", "show", "--", "-f", "json"]) == ["plan", "show", "--", "-f", "json"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"strongroom {metadata.version('strongroom')}\n"


def test_restore_wait_shows_its_own_bytes_rate_and_eta(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    cp = stack.add_checkpoint(project="cli-proj", status="available")
    total = 8 * 2**20
    clock = {"now": 0.0}
    polls = {"n": 0}

    def sleep(seconds: float) -> None:  # 2 MiB a second, reported by the restore record itself
        clock["now"] += 1.0
        polls["n"] += 1
        [restore] = [r for r in stack.db.list_restores("cli-proj") if r.status == "in_progress"]
        done = min(total, polls["n"] * 2 * 2**20)
        values: dict = {"progress": {"bytes_total": total, "bytes_done": done}}
        if polls["n"] == 5:
            values["status"] = "success"
        stack.db.update_restore(restore.id, values)

    capsys.readouterr()
    code = main(["--url", stack.url, "--project", "cli-proj", "--token", "t", "--poll-interval", "1",
                 "restore", "create", PROVIDER_ID, cp.id, "--restore-name", "r", "--wait", "-f", "value",
                 "-c", "status"], sleep=sleep, clock=lambda: clock["now"])
    out, err = capsys.readouterr()
    assert (code, out) == (0, "success\n"), err
    frames = err.split("\r")
    second = next(f for f in frames if "4.0/8.0 MiB" in f)  # after two seconds: half, 2 MiB/s, 2 s to go
    assert "50.0%" in second and "2.0 MiB/s" in second and "ETA  0:00:02" in second
    assert "8.0/8.0 MiB 100.0%" in frames[-1] and "success" in frames[-1]


def test_ctrl_c_during_wait_prints_the_id_and_exits_130(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    plan = stack.add_plan(project="cli-proj", name="ctrl-c-plan")

    def sleep(_seconds: float) -> None:
        raise KeyboardInterrupt

    code, out, err = run(stack, capsys, "checkpoint", "create", PROVIDER_ID, plan.id, "--wait", sleep=sleep)
    [cp] = stack.db.list_checkpoints(PROVIDER_ID, "cli-proj", filters={"plan_id": plan.id})
    assert code == 130
    assert out == cp.id + "\n"
    assert f"interrupted: {cp.id} carries on in the service" in err and "Traceback" not in err
    cp_v = stack.add_checkpoint(project="cli-proj", status="available")
    code, out, err = run(stack, capsys, "verification", "create", PROVIDER_ID, cp_v.id, "--wait", sleep=sleep)
    [ver] = [v for v in stack.db.list_restores("cli-proj", kind="verification") if v.checkpoint_id == cp_v.id]
    assert (code, out) == (130, ver.id + "\n")
    assert f"interrupted: {ver.id} carries on in the service" in err and "Traceback" not in err


def test_progress_line_eta_and_no_bytes_yet() -> None:
    line = progress_line("restoring", 25 * 2**20, 100 * 2**20, 25 * 2**20, 5.0, True)
    assert "5.0 MiB/s" in line and "ETA  0:00:15" in line
    assert progress_line("in_progress", 0, 0, 0, 1.0, True) == "in_progress"  # no count reported yet
    assert "ETA  0:00:00" in progress_line("available", 4, 4, 0, 0.0, True)
