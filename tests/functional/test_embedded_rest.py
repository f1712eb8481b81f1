"""Done-when 2: the whole scenario through the raw REST API, with Karbor's shapes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import requests

from tests.functional.harness import PROVIDER_ID, AllInOne, wait_for, write_mixed_image

pytestmark = pytest.mark.functional


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bank_files(service: AllInOne, part: str) -> list[Path]:
    return [p for p in service.bank.rglob("*") if p.is_file() and part in str(p)]


def test_protect_restore_verify_delete_through_rest(all_in_one: AllInOne) -> None:
    image = all_in_one.volumes / "disk.img"
    write_mixed_image(image)
    api = all_in_one.api()

    resp = requests.get(f"{api}/protectables/OS::Cinder::Volume/instances", timeout=10)
    assert resp.status_code == 200
    assert "X-Openstack-Request-Id" in resp.headers
    assert [i["id"] for i in resp.json()["instances"]] == ["disk.img"]

    plan = requests.post(f"{api}/plans", json={"plan": {
        "name": "tour", "provider_id": PROVIDER_ID, "parameters": {},
        "resources": [{"id": "disk.img", "type": "OS::Cinder::Volume", "name": "disk.img"}]}}, timeout=10)
    assert plan.status_code == 200, plan.text
    plan_body = plan.json()["plan"]
    assert plan_body["status"] == "suspended" and plan_body["project_id"] == "demo"

    created = requests.post(f"{api}/providers/{PROVIDER_ID}/checkpoints",
                            json={"checkpoint": {"plan_id": plan_body["id"], "extra_info": {"note": "tour"}}},
                            timeout=10)
    assert created.status_code == 200, created.text
    cp = created.json()["checkpoint"]
    assert cp["status"] == "protecting"
    assert cp["protection_plan"]["id"] == plan_body["id"]
    extra = dict(cp["extra_info"])
    assert extra.pop("encryption")["algorithm"] == "AES-256-GCM" and extra == {"note": "tour"}
    graph = json.loads(cp["resource_graph"])  # real JSON, not a Python repr
    assert ["OS::Cinder::Volume", "disk.img", "disk.img", {}] in graph[0].values()

    cp_url = f"{api}/providers/{PROVIDER_ID}/checkpoints/{cp['id']}"
    cp = wait_for(cp_url, "checkpoint", {"available", "error"})
    assert cp["status"] == "available", cp
    assert cp["progress"]["bytes_done"] == cp["progress"]["bytes_total"] == image.stat().st_size
    chunks_after_protect = bank_files(all_in_one, "/chunks/")
    assert chunks_after_protect, "protect stored no chunk"

    listed = requests.get(f"{api}/providers/{PROVIDER_ID}/checkpoints",
                          params={"plan_id": plan_body["id"]}, timeout=10).json()["checkpoints"]
    assert [c["id"] for c in listed] == [cp["id"]]

    restore = requests.post(f"{api}/restores", json={"restore": {
        "provider_id": PROVIDER_ID, "checkpoint_id": cp["id"], "restore_target": None,
        "restore_auth": {"type": "password", "username": "u", "password": "hunter2-secret"},
        "parameters": {"OS::Cinder::Volume": {"restore_name": "restored.img"}}}}, timeout=10)
    assert restore.status_code == 200, restore.text
    assert "hunter2-secret" not in restore.text
    restore_body = wait_for(f"{api}/restores/{restore.json()['restore']['id']}", "restore", {"success", "fail"})
    assert restore_body["status"] == "success", restore_body
    assert restore_body["resources_status"] == {"OS::Cinder::Volume#disk.img": "success"}
    restored = all_in_one.volumes / "restored.img"
    assert sha256(restored) == sha256(image)
    # The 6 MiB hole in the middle stays a hole: the restored file is sparse.
    assert restored.stat().st_blocks * 512 < image.stat().st_size - 4 * 1024 * 1024

    verification = requests.post(f"{api}/verifications", json={"verification": {
        "provider_id": PROVIDER_ID, "checkpoint_id": cp["id"], "parameters": {}}}, timeout=10)
    assert verification.status_code == 200, verification.text
    body = wait_for(f"{api}/verifications/{verification.json()['verification']['id']}", "verification",
                    {"success", "fail"})
    assert body["status"] == "success", body

    deleted = requests.delete(cp_url, timeout=10)
    assert deleted.status_code == 202
    cp = wait_for(cp_url, "checkpoint", {"deleted", "error-deleting"})
    assert cp["status"] == "deleted"
    assert bank_files(all_in_one, "/chunks/") == [], "unique chunks must be gone from the bank"
    assert bank_files(all_in_one, "/resources/") == [], "manifests must be gone from the bank"

    logs = requests.get(f"{api}/operation_logs", params={"checkpoint_id": cp["id"]},
                        timeout=10).json()["operation_logs"]
    assert sorted(log["operation_type"] for log in logs) == ["delete", "protect", "restore", "verify"]
    assert {log["status"] for log in logs} == {"available", "success", "deleted"}
    assert "hunter2-secret" not in "".join(all_in_one.output)


def test_shared_chunks_survive_deleting_one_checkpoint(all_in_one: AllInOne) -> None:
    image = all_in_one.volumes / "disk.img"
    write_mixed_image(image)
    api = all_in_one.api()
    plan = requests.post(f"{api}/plans", json={"plan": {
        "name": "twice", "provider_id": PROVIDER_ID, "parameters": {},
        "resources": [{"id": "disk.img", "type": "OS::Cinder::Volume", "name": "disk.img"}]}},
        timeout=10).json()["plan"]
    ids = []
    for _ in range(2):
        cp = requests.post(f"{api}/providers/{PROVIDER_ID}/checkpoints",
                           json={"checkpoint": {"plan_id": plan["id"]}}, timeout=10).json()["checkpoint"]
        wait_for(f"{api}/providers/{PROVIDER_ID}/checkpoints/{cp['id']}", "checkpoint", {"available"})
        ids.append(cp["id"])
    requests.delete(f"{api}/providers/{PROVIDER_ID}/checkpoints/{ids[0]}", timeout=10)
    wait_for(f"{api}/providers/{PROVIDER_ID}/checkpoints/{ids[0]}", "checkpoint", {"deleted"})
    restore = requests.post(f"{api}/restores", json={"restore": {
        "provider_id": PROVIDER_ID, "checkpoint_id": ids[1],
        "parameters": {"OS::Cinder::Volume": {"restore_name": "again.img"}}}}, timeout=10).json()["restore"]
    body = wait_for(f"{api}/restores/{restore['id']}", "restore", {"success", "fail"})
    assert body["status"] == "success", body
    assert sha256(all_in_one.volumes / "again.img") == sha256(image)


def test_bad_input_gets_clear_errors(all_in_one: AllInOne) -> None:
    api = all_in_one.api()
    bad = requests.post(f"{api}/plans", json={"plan": {"name": "x", "provider_id": PROVIDER_ID,
                                                      "resources": [{"id": "a"}]}}, timeout=10)
    assert bad.status_code == 400
    assert "type" in bad.text
    unknown_provider = requests.post(f"{api}/plans", json={"plan": {
        "name": "x", "provider_id": "00000000-0000-0000-0000-000000000000", "parameters": {},
        "resources": [{"id": "a", "type": "OS::Cinder::Volume", "name": "a"}]}}, timeout=10)
    assert unknown_provider.status_code == 400
    assert "00000000-0000-0000-0000-000000000000" in unknown_provider.text
    missing = requests.get(f"{api}/providers/{PROVIDER_ID}/checkpoints/nope", timeout=10)
    assert missing.status_code == 404 and "nope" in missing.text
    not_json = requests.post(f"{api}/plans", data=b"{", headers={"Content-Type": "application/json"},
                             timeout=10)
    assert not_json.status_code == 400
    restore_missing = requests.post(f"{api}/restores", json={"restore": {
        "provider_id": PROVIDER_ID, "checkpoint_id": "nope", "parameters": {}}}, timeout=10)
    assert restore_missing.status_code == 404


def test_restart_never_leaves_a_checkpoint_protecting(all_in_one: AllInOne) -> None:
    import random
    import signal

    image = all_in_one.volumes / "big.img"
    image.write_bytes(random.Random(3).randbytes(96 * 1024 * 1024))
    api = all_in_one.api()
    plan = requests.post(f"{api}/plans", json={"plan": {
        "name": "big", "provider_id": PROVIDER_ID, "parameters": {},
        "resources": [{"id": "big.img", "type": "OS::Cinder::Volume", "name": "big.img"}]}},
        timeout=10).json()["plan"]
    cp = requests.post(f"{api}/providers/{PROVIDER_ID}/checkpoints",
                       json={"checkpoint": {"plan_id": plan["id"]}}, timeout=10).json()["checkpoint"]
    all_in_one.stop(signal.SIGKILL)
    all_in_one.output.clear()
    all_in_one.start()
    body = requests.get(f"{all_in_one.api()}/providers/{PROVIDER_ID}/checkpoints/{cp['id']}",
                        timeout=10).json()["checkpoint"]
    assert body["status"] in {"available", "error"}
    logs = requests.get(f"{all_in_one.api()}/operation_logs", params={"checkpoint_id": cp["id"]},
                        timeout=10).json()["operation_logs"]
    assert [log["status"] for log in logs if log["operation_type"] == "protect"] in (["error"], ["available"])
    if body["status"] == "error":
        # The restarted all-in-one (same owner id, its predecessor proven dead by the state lock)
        # reclaimed the zombie at once: only its index (now error) and the reclaim marker remain.
        assert "reclaimed by garbage collection" in body["status_reason"]
        assert "stopped" in body["status_reason"]
        left = sorted(p.name for p in (all_in_one.bank / "objects" / "checkpoints" / cp["id"]).rglob("*.obj"))
        assert left == ["index.json.obj", "reclaimed.obj"]
        assert any(log["operation_type"] == "reclaim" for log in logs)
        # An errored checkpoint can be deleted.
        requests.delete(f"{all_in_one.api()}/providers/{PROVIDER_ID}/checkpoints/{cp['id']}", timeout=10)
        wait_for(f"{all_in_one.api()}/providers/{PROVIDER_ID}/checkpoints/{cp['id']}", "checkpoint", {"deleted"})


def test_an_empty_volume_is_refused_not_kept_as_a_checkpoint_no_restore_could_use(all_in_one: AllInOne) -> None:
    (all_in_one.volumes / "empty.img").touch()
    api = all_in_one.api()
    plan = requests.post(f"{api}/plans", json={"plan": {
        "name": "empty", "provider_id": PROVIDER_ID, "parameters": {},
        "resources": [{"id": "empty.img", "type": "OS::Cinder::Volume", "name": "empty.img"}]}},
        timeout=10).json()["plan"]
    cp = requests.post(f"{api}/providers/{PROVIDER_ID}/checkpoints",
                       json={"checkpoint": {"plan_id": plan["id"]}}, timeout=10).json()["checkpoint"]
    body = wait_for(f"{api}/providers/{PROVIDER_ID}/checkpoints/{cp['id']}", "checkpoint", {"available", "error"})
    assert body["status"] == "error", body
    assert "volume empty.img is empty (0 bytes)" in json.dumps(body), body
