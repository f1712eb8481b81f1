"""Copy of checkpoints to a second provider's bank, through the real all-in-one and real banks.

One all-in-one with two providers: the source keeps its checkpoints in one bank (fs, or a bucket of
moto_server), the target in another (a bucket of moto_server, or a container of the Swift all-in-one).
A 64 MiB volume (``make long``: 256 MiB) is protected and copied; then one 4 MiB block of it changes, a
second checkpoint is protected and copied by plan (only the checkpoint the target lacks goes); the second copy
must write under twice the changed share of the bytes the first wrote (``extra_info["copied"]["bytes_written"]``,
what the copy sent), and restore from the target byte for byte.  A service SIGKILLed mid-copy leaves no
``available`` copy: after the restart the target's garbage collection reclaims it and its chunks.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.functional.banks import (
    add_provider,
    bank_under_test,
    configure,
    create_plan,
    restore_and_hash,
    rewrite_blocks,
    sha256,
    start_checkpoint,
    stored_chunks,
    write_random_image,
)
from tests.functional.harness import MiB, wait_for

pytestmark = [pytest.mark.functional, pytest.mark.slow]

VOLUME_SIZE = int(os.environ.get("STRONGROOM_COPY_VOLUME_MIB", "64")) * MiB
#: One 4 MiB block rewritten: 6.25% of a 64 MiB volume (1.6% of 256 MiB) changes between the two checkpoints.
REWRITE_EVERY = VOLUME_SIZE // (4 * MiB)


def _copy(api: str, provider_id: str, plan_id: str, target: str, checkpoint_id: str | None = None
          ) -> requests.Response:
    parameters: dict[str, Any] = {"target_provider_id": target}
    if checkpoint_id is not None:
        parameters["checkpoint_id"] = checkpoint_id
    return requests.post(f"{api}/providers/{provider_id}/checkpoints/action",
                         json={"copy": {"plan_id": plan_id, "parameters": parameters}}, timeout=60)


def _protect(api: str, provider_id: str, plan_id: str) -> str:
    cid = start_checkpoint(api, provider_id, plan_id)
    body = wait_for(f"{api}/providers/{provider_id}/checkpoints/{cid}", "checkpoint", {"available", "error"},
                    timeout=300)
    assert body["status"] == "available", body
    return cid


def _copied(api: str, target: str, cid: str) -> dict[str, Any]:
    body = wait_for(f"{api}/providers/{target}/checkpoints/{cid}", "checkpoint", {"available", "error"},
                    timeout=300)
    assert body["status"] == "available", body
    return dict(body)


@pytest.mark.timeout(600)  # a volume protected, copied twice and restored: minutes on a loaded machine
@pytest.mark.parametrize("source_kind,target_kind", [("fs", "s3"), ("s3", "swift")])
def test_copy_sends_only_new_chunks_and_restores_from_the_target(
        source_kind: str, target_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    source_bank = bank_under_test(source_kind, request, tmp_path)
    target_bank = bank_under_test(target_kind, request, tmp_path)
    service, source = configure(tmp_path, source_bank, "copy-service")
    target = add_provider(tmp_path, target_bank)
    image = service.volumes / "big.img"
    write_random_image(image, VOLUME_SIZE, seed=13)
    service.start()
    try:
        api = service.api()
        plan = create_plan(api, source, "big.img")
        first = _protect(api, source, plan)

        began = time.monotonic()
        response = _copy(api, source, plan, target, first)
        assert response.status_code == 200, response.text
        assert response.json()["copy"]["checkpoints"] == [first]
        copy1 = _copied(api, target, first)
        first_took = time.monotonic() - began
        report1 = copy1["extra_info"]["copied"]
        assert report1["chunks_sent"] > 0 and not report1["rehashed"], report1
        assert copy1["extra_info"]["copied_from"]["provider_id"] == source

        again = _copy(api, source, plan, target, first)  # the target holds it now
        assert again.status_code == 409 and "copy.checkpoint_id" in again.text, again.text

        rewrite_blocks(image, REWRITE_EVERY, seed=14)
        second = _protect(api, source, plan)
        began = time.monotonic()
        response = _copy(api, source, plan, target)  # by plan: only what the target lacks
        assert response.status_code == 200, response.text
        assert response.json()["copy"]["checkpoints"] == [second]
        copy2 = _copied(api, target, second)
        second_took = time.monotonic() - began
        report2 = copy2["extra_info"]["copied"]
        ratio = report2["bytes_written"] / report1["bytes_written"]
        print(f"\n{source_kind} -> {target_kind}: first copy {report1['bytes_written']} bytes in {first_took:.1f} s "
              f"({report1['chunks_sent']} chunks), second {report2['bytes_written']} bytes in {second_took:.1f} s "
              f"({report2['chunks_sent']} sent, {report2['chunks_present']} present): {ratio:.2%}")
        assert ratio < 2 / REWRITE_EVERY, (report1, report2)

        restored, record = restore_and_hash(service, target, second, "from-target.img")
        assert restored == sha256(image), record

        listed = requests.get(f"{api}/providers/{target}/checkpoints", timeout=30).json()["checkpoints"]
        assert {c["id"] for c in listed} == {first, second}
        shown = requests.get(f"{api}/providers/{source}/checkpoints/{first}", timeout=30).json()["checkpoint"]
        assert shown["copies"] == [{"provider_id": target, "status": "available", "status_reason": None}]

        # The copy is the target's: deleting it leaves the source's untouched.
        deleted = requests.delete(f"{api}/providers/{target}/checkpoints/{first}", timeout=30)
        assert deleted.status_code == 202, deleted.text
        wait_for(f"{api}/providers/{target}/checkpoints/{first}", "checkpoint", {"deleted"}, timeout=120)
        shown = requests.get(f"{api}/providers/{source}/checkpoints/{first}", timeout=30).json()["checkpoint"]
        assert shown["status"] == "available"
        logs = requests.get(f"{api}/operation_logs", params={"operation_type": "copy"}, timeout=30).json()
        assert sorted(log["status"] for log in logs["operation_logs"]) == ["success", "success"]
    finally:
        if service.process is not None and service.process.poll() is None:
            service.stop()


def test_sigkill_mid_copy_leaves_no_available_copy_and_is_reclaimed(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    source_bank = bank_under_test("fs", request, tmp_path)
    target_bank = bank_under_test("s3", request, tmp_path)
    service, source = configure(tmp_path, source_bank, "copy-killed")
    target = add_provider(tmp_path, target_bank)
    write_random_image(service.volumes / "big.img", VOLUME_SIZE, seed=21)
    service.start()
    try:
        api = service.api()
        plan = create_plan(api, source, "big.img")
        cid = _protect(api, source, plan)
        response = _copy(api, source, plan, target, cid)
        assert response.status_code == 200, response.text
        url = f"{api}/providers/{target}/checkpoints/{cid}"
        deadline = time.monotonic() + 120
        while True:
            body = requests.get(url, timeout=10).json()["checkpoint"]
            assert body["status"] == "copying", body  # killed before it could finish
            if body["progress"]["bytes_done"] > 0:
                break
            assert time.monotonic() < deadline
            time.sleep(0.02)
        service.stop(signal.SIGKILL)
        project = body["project_id"]
        assert stored_chunks(target_bank.bank(), project), "the copy had sent no chunk yet"

        service.start()
        api = service.api()
        url = f"{api}/providers/{target}/checkpoints/{cid}"
        body = wait_for(url, "checkpoint", {"error", "available"}, timeout=60)
        assert body["status"] == "error" and "reclaimed by garbage collection" in body["status_reason"], body
        deadline = time.monotonic() + 60
        while stored_chunks(target_bank.bank(), project) and time.monotonic() < deadline:
            time.sleep(0.5)  # the target's sweeps, every second, remove chunks no manifest names
        assert not stored_chunks(target_bank.bank(), project)
        listed = requests.get(f"{api}/providers/{target}/checkpoints", timeout=30).json()["checkpoints"]
        assert [c["status"] for c in listed] == ["error"]
        source_view = requests.get(f"{api}/providers/{source}/checkpoints/{cid}", timeout=30).json()["checkpoint"]
        assert source_view["status"] == "available"
    finally:
        if service.process is not None and service.process.poll() is None:
            service.stop()
