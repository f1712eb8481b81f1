"""Done-when 3: through the real embedded service with a short interval, scheduled checkpoints appear and
retention trims them to ``max_backups``; fires missed while the service was down are logged
``dropped_out_of_window`` after a restart, and scheduling goes on."""

from __future__ import annotations

import datetime as _dt
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.functional.harness import PROVIDER_ID, AllInOne

pytestmark = pytest.mark.functional

PERIOD = 2  # seconds between fires
SHORT = """
[operationengine]
min_interval = 1
min_window = 1
poll_interval = 0.2
claim_timeout = 3
plan_ahead = 6
"""


@pytest.fixture
def service(tmp_path: Path) -> Iterator[AllInOne]:
    state = tmp_path / "state"
    (state / "volumes").mkdir(parents=True)
    conf = tmp_path / "strongroom.conf"
    conf.write_text(f"[DEFAULT]\nstate_dir = {state}\n[api]\nbind_port = 0\n{SHORT}")
    with open(state / "volumes" / "disk.img", "wb") as fh:
        fh.truncate(4 << 20)
        fh.write(os.urandom(1 << 20))
    aio = AllInOne(state_dir=state, config_file=conf)
    aio.start()
    try:
        yield aio
    finally:
        if aio.process is not None and aio.process.poll() is None:
            aio.stop()


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = requests.post(url, json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def logs(api: str, op_id: str) -> list[dict[str, Any]]:
    resp = requests.get(f"{api}/scheduled_operations/{op_id}/logs", timeout=10)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["scheduled_operation_logs"])


def wait_logs(api: str, op_id: str, done: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = logs(api, op_id)
        if sum(1 for e in entries if e["state"] == "success") >= done:
            return entries
        time.sleep(0.2)
    raise AssertionError(f"fewer than {done} successful runs in {timeout} s: {logs(api, op_id)}")


def checkpoints(api: str) -> list[dict[str, Any]]:
    """Every checkpoint, the deleted ones too (a list shows those only when its status filter asks)."""
    url = f"{api}/providers/{PROVIDER_ID}/checkpoints"
    return [*requests.get(url, timeout=10).json()["checkpoints"],
            *requests.get(url, params={"status": "deleted"}, timeout=10).json()["checkpoints"]]


def test_scheduled_checkpoints_appear_and_retention_trims_them(service: AllInOne) -> None:
    api = service.api()
    plan = post(f"{api}/plans", {"plan": {"name": "every two seconds", "provider_id": PROVIDER_ID, "resources": [
        {"id": "disk.img", "type": "OS::Cinder::Volume", "name": "disk.img"}]}})["plan"]
    trigger = post(f"{api}/triggers", {"trigger_info": {"name": "fast", "type": "time", "properties": {
        "format": "calendar", "pattern": f"BEGIN:VEVENT\nRRULE:FREQ=SECONDLY;INTERVAL={PERIOD}\nEND:VEVENT",
        "window": 1}}})["trigger_info"]
    op = post(f"{api}/scheduled_operations", {"scheduled_operation": {
        "name": "keep two", "operation_type": "retention_protect", "trigger_id": trigger["id"],
        "operation_definition": {"provider_id": PROVIDER_ID, "plan_id": plan["id"], "max_backups": 2}}})[
        "scheduled_operation"]

    entries = wait_logs(api, op["id"], done=5)
    times = [e["expect_start_time"] for e in entries]
    assert times == sorted(times, reverse=True) and len(set(times)) == len(times)  # newest first, once each
    made = [e["checkpoint_id"] for e in entries if e["state"] == "success"]
    assert len(set(made)) == len(made)

    stopped = requests.post(f"{api}/scheduled_operations/{op['id']}/action", json={"suspend": {}}, timeout=10)
    assert stopped.json()["scheduled_operation"]["enabled"] is False
    deadline = time.monotonic() + 30
    while any(e["state"] == "in_progress" for e in logs(api, op["id"])) and time.monotonic() < deadline:
        time.sleep(0.2)
    final = logs(api, op["id"])
    ours = {c["id"]: c for c in checkpoints(api) if c["protection_plan"]["id"] == plan["id"]}
    successes = [e for e in final if e["state"] == "success"]
    available = sorted((c for c in ours.values() if c["status"] == "available"), key=lambda c: c["created_at"])
    assert len(available) == 2  # trimmed to max_backups
    newest_two = sorted((ours[e["checkpoint_id"]] for e in successes), key=lambda c: c["created_at"])[-2:]
    assert [c["id"] for c in available] == [c["id"] for c in newest_two]
    assert all(ours[e["checkpoint_id"]]["status"] in ("deleted", "deleting") for e in successes
               if e["checkpoint_id"] not in {c["id"] for c in available})
    assert all(c["extra_info"]["scheduled_operation_id"] == op["id"] for c in ours.values())
    deleted = {d for e in successes for d in (e["extra_info"].get("retention") or {}).get("deleted", [])}
    assert deleted == {e["checkpoint_id"] for e in successes} - {c["id"] for c in available}
    assert all(e["state"] in ("success", "dropped_out_of_window") for e in final)

    # Down for a while: on restart the fires whose window closed are logged, and scheduling resumes.
    requests.post(f"{api}/scheduled_operations/{op['id']}/action", json={"resume": {}}, timeout=10)
    wait_logs(api, op["id"], done=len(successes) + 1)
    assert service.stop() == 0
    down_from = _dt.datetime.now(_dt.UTC)
    time.sleep(3 * PERIOD + 1)
    down_until = _dt.datetime.now(_dt.UTC)
    service.start()
    api = service.api()
    before = sum(1 for e in logs(api, op["id"]) if e["state"] == "success")
    after = wait_logs(api, op["id"], done=before + 2)
    missed = [e for e in after if e["state"] == "dropped_out_of_window"
              and down_from < _dt.datetime.fromisoformat(e["expect_start_time"]) < down_until
              - _dt.timedelta(seconds=1)]
    assert len(missed) >= 2, after
    assert all("window" in (e["error_info"] or "") for e in missed)
    # A run the stop interrupted was taken over by the restarted engine and finished, not failed.
    assert not [e for e in after if e["state"] == "failed"], after
