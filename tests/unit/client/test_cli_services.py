"""``strongroom service list|disable|enable`` against the in-process API server."""

from __future__ import annotations

import functools
import uuid

import cliharness
import pytest
from apiharness import ADMIN_TOKEN, Stack

run = functools.partial(cliharness.run, project="admin-proj", token=ADMIN_TOKEN)
run_json = functools.partial(cliharness.run_json, project="admin-proj", token=ADMIN_TOKEN)


def test_service_list_disable_enable(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    host = f"worker-{uuid.uuid4().hex[:6]}"
    stack.db.service_heartbeat(host, "strongroom-protection", "strongroom-protection")
    stack.db.service_heartbeat(host, "strongroom-api", "strongroom-protection")

    code, out, _ = run(stack, capsys, "service", "list", "--host", host)
    assert code == 0
    header = [c.strip() for c in out.splitlines()[1].split("|")[1:-1]]
    assert header == ["id", "binary", "host", "status", "state", "updated_at", "disabled_reason"]
    assert sum(host in line and "enabled" in line and " up " in line for line in out.splitlines()) == 2

    shown = run_json(stack, capsys, "service", "disable", host, "strongroom-protection", "--reason", "new disks")
    assert (shown["status"], shown["disabled_reason"]) == ("disabled", "new disks")
    assert stack.db.service_is_disabled(host, "strongroom-protection")
    listed = run_json(stack, capsys, "service", "list", "--host", host, "--binary", "strongroom-protection")
    assert [(s["status"], s["disabled_reason"]) for s in listed] == [("disabled", "new disks")]

    shown = run_json(stack, capsys, "service", "enable", host, "strongroom-protection")
    assert (shown["status"], shown["disabled_reason"]) == ("enabled", None)
    assert not stack.db.service_is_disabled(host, "strongroom-protection")


def test_service_errors_are_one_line(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(stack, capsys, "service", "disable", "no-such-host", "strongroom-protection")
    assert code == 1
    assert err.strip() == "ERROR: no strongroom-protection service on host no-such-host (see 'strongroom service list')"
    code, _, err = run(stack, capsys, "service", "list", token="member-token")
    assert code == 1 and "HTTP 403" in err and "service:get_all" in err
    host = f"api-{uuid.uuid4().hex[:6]}"
    stack.db.service_heartbeat(host, "strongroom-api")
    code, _, err = run(stack, capsys, "service", "disable", host, "strongroom-api")
    assert code == 1 and "HTTP 400" in err and "cannot be disabled" in err
