"""The ``strongroom`` CLI and the Python client against the in-process API server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from apiharness import ADMIN_TOKEN, OTHER_PROVIDER_ID, PROVIDER_ID, VOLUME, Stack
from cliharness import run, run_json

from strongroom.client import Client, ClientError
from strongroom.client.output import progress_line, render_table


def test_provider_and_protectable_commands(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(stack, capsys, "provider", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[1].split("|")[1].strip() == "id"
    assert any(PROVIDER_ID in line and "OS Infra Provider" in line for line in lines)
    assert len({len(line) for line in lines}) == 1  # aligned columns
    shown = run_json(stack, capsys, "provider", "show", PROVIDER_ID)
    assert shown["id"] == PROVIDER_ID
    assert run_json(stack, capsys, "protectable", "list") == ["OS::Keystone::Project", VOLUME]
    instances = run_json(stack, capsys, "protectable", "instances", VOLUME, "--limit", "2")
    assert [i["id"] for i in instances] == ["vol-01", "vol-02"]
    inst = run_json(stack, capsys, "protectable", "instance", VOLUME, "vol-03")
    assert inst["name"] == "volume 3"


def test_plan_commands(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    plan = run_json(stack, capsys, "plan", "create", "nightly", PROVIDER_ID,
                    "--resource", f"{VOLUME}=vol-01=volume 1", "--resource", f"{VOLUME}=vol-02",
                    "--parameters", json.dumps({VOLUME: {"backup_mode": "full"}}), "--description", "d")
    assert plan["status"] == "suspended"
    # A resource given without a name keeps the name its protectable instance shows.
    assert [(r["id"], r["name"]) for r in plan["resources"]] == [("vol-01", "volume 1"), ("vol-02", "volume 2")]
    code, _, err = run(stack, capsys, "plan", "create", "n", PROVIDER_ID, "--resource", f"{VOLUME}=vol-404")
    assert code != 0 and f"plan.resources[0]: {VOLUME} 'vol-404' could not be found by provider" in err, err
    code, out, _ = run(stack, capsys, "plan", "show", plan["id"])
    assert code == 0 and "nightly" in out and "| Property" in out
    updated = run_json(stack, capsys, "plan", "update", plan["id"], "--status", "started", "--name", "n2")
    assert (updated["status"], updated["name"]) == ("started", "n2")
    listed = run_json(stack, capsys, "plan", "list", "--status", "started")
    assert [p["id"] for p in listed] == [plan["id"]]
    code, _, err = run(stack, capsys, "plan", "delete", plan["id"])
    assert code == 0 and "deleted" in err
    code, _, err = run(stack, capsys, "plan", "show", plan["id"])
    assert code == 1 and "HTTP 404" in err and plan["id"] in err


def test_cli_reports_server_validation_errors(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(stack, capsys, "plan", "create", "x", PROVIDER_ID, "--resource", "OS::Nope=1")
    assert code == 1
    assert "HTTP 400" in err and "plan.resources[0].type" in err and "req-" in err
    code, _, err = run(stack, capsys, "plan", "create", "x", PROVIDER_ID, "--resource", "justtype")
    assert code == 2 and "TYPE=ID" in err
    code, _, err = run(stack, capsys, "plan", "create", "x", PROVIDER_ID, "--resource", f"{VOLUME}=v",
                       "--parameters", "{oops")
    assert code == 2 and "--parameters" in err


def test_checkpoint_create_wait_draws_progress(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    plan = stack.add_plan(project="cli-proj", name="wait-plan")
    state = {"polls": 0}
    created: list[str] = []

    def sleep(_seconds: float) -> None:  # each "sleep" moves the fake protection forward
        state["polls"] += 1
        cp_id = stack.db.list_checkpoints(PROVIDER_ID, "cli-proj", filters={"plan_id": plan.id})[0].id
        created.append(cp_id)
        total = 4 * 1024 * 1024
        done = min(total, state["polls"] * total // 4)
        values: dict[str, Any] = {"bytes_done": done}
        if done == total:
            values["status"] = "available"
        stack.db.update_checkpoint(cp_id, values)

    code, out, err = run(stack, capsys, "-f", "json", "--poll-interval", "0", "checkpoint", "create",
                         PROVIDER_ID, plan.id, "--extra-info", "why=test", "--wait", sleep=sleep)
    assert code == 0, err
    final = json.loads(out)
    assert final["status"] == "available"
    assert final["extra_info"] == {"why": "test"}
    assert state["polls"] == 4
    assert "100.0%" in err and "MiB/s" in err and "25.0%" in err
    assert err.count("\n") == 1  # one line, redrawn with \r

    listed = run_json(stack, capsys, "checkpoint", "list", PROVIDER_ID, "--plan-id", plan.id)
    assert [c["id"] for c in listed] == [final["id"]]
    code, out, _ = run(stack, capsys, "checkpoint", "list", PROVIDER_ID)
    assert code == 0 and final["id"] in out and "available" in out


def test_checkpoint_wait_failure_exit_code(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    plan = stack.add_plan(project="cli-proj", name="fail-plan")

    def sleep(_seconds: float) -> None:
        cp_id = stack.db.list_checkpoints(PROVIDER_ID, "cli-proj", filters={"plan_id": plan.id})[0].id
        stack.db.update_checkpoint(cp_id, {"status": "error", "status_reason": "disk on fire"})

    code, out, err = run(stack, capsys, "-f", "json", "--poll-interval", "0", "checkpoint", "create",
                         PROVIDER_ID, plan.id, "--wait", sleep=sleep)
    assert code == 1
    assert json.loads(out)["status_reason"] == "disk on fire"


def test_checkpoint_delete_reset_and_restore(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    cp = stack.add_checkpoint(project="cli-proj", status="protecting")
    code, _, err = run(stack, capsys, "checkpoint", "reset-state", PROVIDER_ID, cp.id, "--state", "available")
    assert code == 1 and "HTTP 403" in err
    code, _, err = run(stack, capsys, "checkpoint", "reset-state", PROVIDER_ID, cp.id, "--state", "available",
                       token=ADMIN_TOKEN)
    assert code == 0, err

    def finish_restore(_seconds: float) -> None:
        for run_ in stack.db.list_restores("cli-proj"):
            if run_.status == "in_progress":
                stack.db.update_restore(run_.id, {"status": "success"})

    code, out, err = run(stack, capsys, "-f", "json", "--poll-interval", "0", "restore", "create", PROVIDER_ID,
                         cp.id, "--restore-name", "restored", "--wait", sleep=finish_restore)
    assert code == 0, err
    restore = json.loads(out)
    assert restore["status"] == "success"
    assert err.count("\r") >= 2 and terminal(err) == ["success"]  # not "successgress"
    assert restore["parameters"] == {VOLUME: {"restore_name": "restored"}}
    assert [r["id"] for r in run_json(stack, capsys, "restore", "list")] == [restore["id"]]
    assert run_json(stack, capsys, "restore", "show", restore["id"])["id"] == restore["id"]

    ver = run_json(stack, capsys, "verification", "create", PROVIDER_ID, cp.id)
    assert ver["status"] == "in_progress"
    assert run_json(stack, capsys, "verification", "show", ver["id"])["id"] == ver["id"]

    def finish_delete(_seconds: float) -> None:
        stack.db.update_checkpoint(cp.id, {"status": "deleted"})

    code, _, err = run(stack, capsys, "--poll-interval", "0", "checkpoint", "delete", PROVIDER_ID, cp.id,
                       "--wait", sleep=finish_delete)
    assert code == 0 and "deleted" in err


def test_checkpoint_copy_to_another_provider(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    project = "cli-copy"
    plan = stack.add_plan(project=project, name="copy-plan")
    first = stack.add_checkpoint(project=project, plan_id=plan.id)
    second = stack.add_checkpoint(project=project, plan_id=plan.id)
    with pytest.raises(SystemExit) as usage:  # the target is required
        run(stack, capsys, "checkpoint", "copy", PROVIDER_ID, plan.id, project=project)
    assert usage.value.code == 2 and "--to" in capsys.readouterr().err

    def finish(_seconds: float) -> None:  # the fake service ends the copy of ``first`` well, the other not
        for cp in stack.db.list_checkpoints(OTHER_PROVIDER_ID, project, filters={"status": "copying"}):
            values = {"status": "available"} if cp.id == first.id else {"status": "error",
                                                                        "status_reason": "target bank full"}
            stack.db.update_checkpoint(cp.id, values, provider_id=OTHER_PROVIDER_ID)

    code, out, err = run(stack, capsys, "-f", "json", "--poll-interval", "0", "checkpoint", "copy", PROVIDER_ID,
                         plan.id, "--to", OTHER_PROVIDER_ID, "--checkpoint", first.id, "--wait", project=project,
                         sleep=finish)
    assert code == 0, err
    copied = json.loads(out)
    assert [(c["id"], c["provider_id"], c["status"]) for c in copied] == [(first.id, OTHER_PROVIDER_ID, "available")]
    # By plan: what the target lacks; one copy failing fails the command.
    code, out, err = run(stack, capsys, "-f", "json", "--poll-interval", "0", "checkpoint", "copy", PROVIDER_ID,
                         plan.id, "--to", OTHER_PROVIDER_ID, "--wait", project=project, sleep=finish)
    assert code == 1
    assert [(c["id"], c["status"]) for c in json.loads(out)] == [(second.id, "error")]
    code, out, err = run(stack, capsys, "checkpoint", "copy", PROVIDER_ID, plan.id, "--to", OTHER_PROVIDER_ID,
                         project=project)
    assert code == 0 and "Nothing to copy" in err
    code, _, err = run(stack, capsys, "checkpoint", "copy", PROVIDER_ID, plan.id, "--to", PROVIDER_ID,
                       project=project)
    assert code == 1 and "copy.parameters.target_provider_id" in err
    code, _, err = run(stack, capsys, "checkpoint", "copy", PROVIDER_ID, plan.id, "--to", OTHER_PROVIDER_ID,
                       "--retention-lock-days", "0", project=project)
    assert code == 1 and "copy.parameters.retention_lock_days" in err  # the server's check, passed on


def terminal(text: str) -> list[str]:
    """What a terminal shows of ``text``: each carriage return goes back to the line's start, overwriting."""
    shown = []
    for line in text.removesuffix("\n").split("\n"):
        screen = ""
        for part in line.split("\r"):
            screen = part + screen[len(part):]
        shown.append(screen.rstrip())
    return shown


def test_operationlog_commands(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    import uuid

    from strongroom.objects.records import OperationLog

    log = stack.db.create_operation_log(OperationLog(id=str(uuid.uuid4()), project_id="cli-logs",
                                                     operation_type="protect", status="success"))
    listed = run_json(stack, capsys, "operationlog", "list", "--operation-type", "protect",
                      project="cli-logs")
    assert [row["id"] for row in listed] == [log.id]
    code, out, _ = run(stack, capsys, "operationlog", "show", log.id, project="cli-logs")
    assert code == 0 and "protect" in out


def test_client_pages_and_errors(stack: Stack) -> None:
    for i in range(7):
        stack.add_plan(project="client-proj", name=f"c{i}")
    client = Client(stack.url, "client-proj", token="tok-s3cr3t")
    assert "tok-s3cr3t" not in repr(client)
    assert len(client.list_plans(limit=3)) == 3
    assert sorted(p["name"] for p in client.list_plans(limit=3, follow=True)) == [f"c{i}" for i in range(7)]
    with pytest.raises(ClientError) as info:
        client.show_plan("missing")
    assert info.value.status == 404
    assert "missing" in info.value.server_message
    assert info.value.request_id and info.value.request_id.startswith("req-")
    unreachable = Client("http://127.0.0.1:9", "p", timeout=2)
    with pytest.raises(ClientError) as info:
        unreachable.list_plans()
    assert info.value.status == 0 and "cannot reach" in info.value.message


def test_table_and_progress_rendering() -> None:
    table = render_table(["a", "long header"], [["x", "1"], ["yyyy", "multi\nline"]])
    lines = table.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert "| yyyy | multi       |" in table and "|      | line        |" in table
    line = progress_line("protecting", 50 * 2**20, 200 * 2**20, 10 * 2**20, 2.0, True)
    assert "50.0/200.0 MiB" in line and "25.0%" in line and "5.0 MiB/s" in line and "protecting" in line


def test_debug_shows_each_calls_request_id_and_request_id_is_checked(stack: Stack,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import re

    code, _, err = run(stack, capsys, "--debug", "provider", "show", PROVIDER_ID)
    assert code == 0
    [line] = [line for line in err.splitlines() if line.startswith("DEBUG: ")]
    assert re.fullmatch(rf"DEBUG: GET {stack.url}/v1/cli-proj/providers/{PROVIDER_ID} -> 200 request id "
                        r"req-[0-9a-f-]{36}", line), line
    code, _, err = run(stack, capsys, "--debug", "plan", "show", "4f7e3a52-0c1d-4b7e-9f1a-2d3c4b5a6e7f")
    found = re.search(r"-> 404 request id (req-[0-9a-f-]{36})", err)
    assert code == 1 and found and f"(request {found.group(1)})" in err  # the same id in the error line
    code, _, err = run(stack, capsys, "--request-id", "my-own-id", "provider", "list")
    assert code == 2 and "--request-id" in err and "req-<uuid>" in err
    code, _, _ = run(stack, capsys, "--request-id", "req-7b1c6a4e-2f0d-4c8e-9a51-3e2d8f6b0c11", "provider", "list")
    assert code == 0
