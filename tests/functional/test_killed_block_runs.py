"""SIGKILL in the middle of block work: nothing half-made stays behind or passes for good data.

A real ``strongroom-all-in-one`` with a loopback block backend and an fs bank is killed while a
protect reads its snapshot, or while a restore writes its volume, and started again on the same
state directory (same owner id: its start-up recovery reclaims what its predecessor left).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.functional.banks import (
    bank_under_test,
    configure,
    create_plan,
    start_checkpoint,
    wait_progress,
    write_random_image,
)
from tests.functional.harness import AllInOne, MiB, retained_bases, wait_for

pytestmark = [pytest.mark.functional, pytest.mark.slow]

VOLUME_SIZE = 96 * MiB
#: A killed protect's volume: the protect after the restart reads it all again at level 15.
PROTECTED_VOLUME_SIZE = 48 * MiB
#: zstd at level 15 protects the tests' compressible random data at a few MiB/s here: slow enough to stop a
#: protect early in its run.
SLOW = {"compression_level": 15}

#: Takes a snapshot through the loopback backend and is killed while copying it (the copy never ends).
_KILLED_SNAPSHOT = """
import sys, time
from strongroom.block.loopback import backend as mod
def copy_forever(src, dst, size):
    import os
    os.pwrite(dst, b"x" * 65536, 0)
    print("copying", flush=True)
    time.sleep(600)
mod.clone_or_copy = copy_forever
mod.link_locked = lambda source, path: None  # a copy even if the image is unchanged since a snapshot
mod.LoopbackBackend({"path": sys.argv[1]}).create_snapshot("vol.img", {"strongroom.checkpoint": "c"})
"""


def _files(directory: Path) -> dict[str, int]:
    """Every file under ``directory`` (hidden ones too) with the bytes allocated to it."""
    return {str(p.relative_to(directory)): p.stat().st_blocks * 512
            for p in directory.rglob("*") if p.is_file()}


def _restart(first: AllInOne) -> AllInOne:
    second = AllInOne(state_dir=first.state_dir, config_file=first.config_file)
    second.start()
    return second


def _kill_if_running(service: AllInOne) -> None:
    if service.process is not None and service.process.poll() is None:
        service.stop(signal.SIGKILL)


def _a_snapshot_killed_mid_copy(volumes: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", _KILLED_SNAPSHOT, str(volumes)], stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "copying"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)


def test_killed_protects_leave_no_snapshot_nor_partial_image(request: pytest.FixtureRequest,
                                                             tmp_path: Path) -> None:
    bank = bank_under_test("fs", request, tmp_path)
    first, provider = configure(tmp_path, bank, "aio-snapshots", volume=SLOW)
    first.start()
    try:
        write_random_image(first.volumes / "vol.img", PROTECTED_VOLUME_SIZE, seed=3)
        api = first.api()
        plan = create_plan(api, provider, "vol.img")
        doomed = start_checkpoint(api, provider, plan)
        wait_progress(f"{api}/providers/{provider}/checkpoints/{doomed}", 0.05)
        first.stop(signal.SIGKILL)
    finally:
        _kill_if_running(first)
    _a_snapshot_killed_mid_copy(first.volumes)
    snapshots = first.volumes / ".snapshots"
    left = _files(snapshots)
    assert any(name.startswith(".partial-") for name in left), left
    assert [name for name in left if name.endswith(".json")], f"the killed protect left no snapshot: {left}"
    print(f"killed protect and snapshot left {sum(left.values()) / MiB:.1f} MiB in {sorted(left)}")

    second = _restart(first)
    try:
        body = wait_for(f"{second.api()}/providers/{provider}/checkpoints/{doomed}", "checkpoint",
                        {"error", "available"}, timeout=60)
        assert body["status"] == "error", body
        assert _files(snapshots) == {}, "snapshots or partial images outlived the restart"
        # The backend still works, and a protect's own snapshot goes when it ends.
        done = start_checkpoint(second.api(), provider, plan)
        body = wait_for(f"{second.api()}/providers/{provider}/checkpoints/{done}", "checkpoint",
                        {"error", "available"}, timeout=120)
        assert body["status"] == "available", body
        kept = retained_bases(snapshots)
        assert list(kept.values()) == [done], f"only the protect's own snapshot is kept, as the next base: {kept}"
        [base] = kept
        assert set(_files(snapshots)) == {base, f"{base}.json"}, _files(snapshots)
    finally:
        second.stop()


def test_a_killed_restore_leaves_no_volume_that_looks_restored(request: pytest.FixtureRequest,
                                                                tmp_path: Path) -> None:
    bank = bank_under_test("fs", request, tmp_path)
    first, provider = configure(tmp_path, bank, "aio-restore")
    first.start()
    try:
        write_random_image(first.volumes / "vol.img", VOLUME_SIZE, seed=4)
        api = first.api()
        checkpoint = start_checkpoint(api, provider, create_plan(api, provider, "vol.img"))
        body = wait_for(f"{api}/providers/{provider}/checkpoints/{checkpoint}", "checkpoint",
                        {"error", "available"}, timeout=120)
        assert body["status"] == "available", body
        before = set(os.listdir(first.volumes))
        response = requests.post(f"{api}/restores", json={"restore": {
            "provider_id": provider, "checkpoint_id": checkpoint,
            "parameters": {"OS::Cinder::Volume": {"restore_name": "restored.img"}}}}, timeout=30)
        assert response.status_code == 200, response.text
        restore_id = response.json()["restore"]["id"]
        # Killed as soon as the restore's target holds some data.
        deadline = time.monotonic() + 60
        written = 0
        while time.monotonic() < deadline and written < 4 * MiB:
            written = sum(size for name, size in _files(first.volumes).items()
                          if name.split("/")[0] not in before and not name.startswith(".snapshots"))
            time.sleep(0.005)
        first.stop(signal.SIGKILL)
    finally:
        _kill_if_running(first)
    left = {name: size for name, size in _files(first.volumes).items() if name.split("/")[0] not in before}
    assert left, "the restore wrote nothing before it was killed"
    print(f"killed restore left {sum(left.values()) / MiB:.1f} MiB in {sorted(left)}")

    second = _restart(first)
    try:
        api = second.api()
        body = wait_for(f"{api}/restores/{restore_id}", "restore", {"success", "fail"}, timeout=30)
        assert body["status"] == "fail", body
        reasons = body["resources_reason"]
        assert "interrupted" in reasons["_"], reasons
        [said] = [text for key, text in reasons.items() if key != "_"]
        assert "the partly restored volume restored.img was never published and has been removed" in said, reasons
        assert set(os.listdir(second.volumes)) == before, "the killed restore's volume outlived the restart"
        listed = requests.get(f"{api}/protectables/OS::Cinder::Volume/instances", timeout=10).json()
        assert [i["id"] for i in listed["instances"]] == ["vol.img"], listed
    finally:
        second.stop()
