"""Done-when 6 of issue 13: recovery from the bank alone, with the real all-in-one.

Three checkpoints of a volume that changes between them; the service stopped and its metadata database
deleted (the state directory's other files, its key files among them, stay); a fresh service on the same
bank with an empty database; ``strongroom-manage catalogue rebuild`` run as an operator runs it; then all
three are listed under their recovered plan, verified, and restored byte-identical to the volume at each protect.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.functional.harness import PROVIDER_ID, AllInOne, MiB, running_all_in_one, wait_for, write_mixed_image

pytestmark = pytest.mark.functional
MANAGE = str(Path(sys.executable).parent / "strongroom-manage")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manage(service: AllInOne, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STRONGROOM_STATE_DIR"}
    return subprocess.run([MANAGE, "--config-file", str(service.config_file), *args], env=env,
                          capture_output=True, text=True, timeout=180)


def change(image: Path, seed: int) -> None:
    """Overwrite 1 MiB somewhere in the volume and grow its written part (an incremental's worth)."""
    rng = random.Random(seed)
    with open(image, "r+b") as fh:
        fh.seek(rng.randrange(0, 20) * MiB)
        fh.write(rng.randbytes(MiB))
        fh.seek(13 * MiB + seed * 4096)  # into the hole
        fh.write(rng.randbytes(64 * 1024))


def test_a_fresh_service_on_the_same_bank_restores_every_checkpoint_after_a_rebuild(tmp_path: Path) -> None:
    with running_all_in_one(tmp_path) as service:
        image = service.volumes / "disk.img"
        write_mixed_image(image)
        api = service.api()
        checkpoints = f"{api}/providers/{PROVIDER_ID}/checkpoints"
        plan = requests.post(f"{api}/plans", json={"plan": {
            "name": "drill", "provider_id": PROVIDER_ID, "parameters": {},
            "resources": [{"id": "disk.img", "type": "OS::Cinder::Volume", "name": "disk.img"}]}},
            timeout=10).json()["plan"]
        digests: dict[str, str] = {}
        for seed in (1, 2, 3):
            if seed > 1:
                change(image, seed)
            cp = requests.post(checkpoints, json={"checkpoint": {"plan_id": plan["id"]}},
                               timeout=10).json()["checkpoint"]
            assert wait_for(f"{checkpoints}/{cp['id']}", "checkpoint", {"available", "error"})["status"] \
                == "available"
            digests[cp["id"]] = sha256(image)
        assert len(set(digests.values())) == 3, "the volume changed between protects"
        before = {c["id"]: c for c in requests.get(checkpoints, timeout=10).json()["checkpoints"]}
        assert service.stop() == 0

        # The disaster: the metadata database is lost; the bank and the state directory's keys survive.
        database = service.state_dir / "strongroom.sqlite"
        assert database.is_file()
        for path in service.state_dir.glob("strongroom.sqlite*"):
            path.unlink()
        kept = sorted(p.name for p in service.state_dir.iterdir())
        service.output.clear()
        service.start()
        api = service.api()  # a new port
        checkpoints = f"{api}/providers/{PROVIDER_ID}/checkpoints"
        assert requests.get(checkpoints, timeout=10).json()["checkpoints"] == []
        assert sorted(p.name for p in service.state_dir.iterdir() if not p.name.startswith("strongroom.sqlite")) \
            == kept

        dry = manage(service, "catalogue", "rebuild", "--provider", PROVIDER_ID, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "would add 3 checkpoint(s): 3 available" in dry.stdout
        assert requests.get(checkpoints, timeout=10).json()["checkpoints"] == []

        rebuilt = manage(service, "catalogue", "rebuild", "--provider", PROVIDER_ID, "--verbose")
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert "added 3 checkpoint(s): 3 available" in rebuilt.stdout, rebuilt.stdout
        assert "added 1 plan(s), suspended, described as recovered" in rebuilt.stdout
        assert all(cid in rebuilt.stdout for cid in digests)

        again = manage(service, "catalogue", "rebuild", "--provider", PROVIDER_ID)
        assert again.returncode == 0, again.stderr
        assert "nothing to add" in again.stdout and "skipped 3 already in the catalogue" in again.stdout

        # Listed as before, under the recovered plan.
        recovered = requests.get(f"{api}/plans/{plan['id']}", timeout=10).json()["plan"]
        assert (recovered["name"], recovered["status"], recovered["resources"]) == (
            "drill", "suspended", plan["resources"])
        assert recovered["description"].startswith("Recovered from the bank")
        listed = requests.get(checkpoints, params={"plan_id": plan["id"]}, timeout=10).json()["checkpoints"]
        assert sorted(c["id"] for c in listed) == sorted(digests)
        for cp in listed:
            old = before[cp["id"]]
            assert (cp["status"], cp["created_at"], cp["resource_graph"], cp["progress"], cp["protection_plan"]) \
                == (old["status"], old["created_at"], old["resource_graph"], old["progress"],
                    old["protection_plan"])

        # Every one of them verifies, and restores byte-identical to the volume when it was protected.
        for n, (cid, digest) in enumerate(digests.items()):
            verification = requests.post(f"{api}/verifications", json={"verification": {
                "provider_id": PROVIDER_ID, "checkpoint_id": cid, "parameters": {}}}, timeout=10)
            assert verification.status_code == 200, verification.text
            body = wait_for(f"{api}/verifications/{verification.json()['verification']['id']}", "verification",
                            {"success", "fail"})
            assert body["status"] == "success", body
            name = f"recovered-{n}.img"
            restore = requests.post(f"{api}/restores", json={"restore": {
                "provider_id": PROVIDER_ID, "checkpoint_id": cid,
                "parameters": {"OS::Cinder::Volume": {"restore_name": name}}}}, timeout=10)
            assert restore.status_code == 200, restore.text
            body = wait_for(f"{api}/restores/{restore.json()['restore']['id']}", "restore", {"success", "fail"})
            assert body["status"] == "success", body
            assert sha256(service.volumes / name) == digest, f"checkpoint {cid} restored different bytes"

        # And a new protect after the recovery works on top of them.
        cp = requests.post(checkpoints, json={"checkpoint": {"plan_id": plan["id"]}}, timeout=10).json()["checkpoint"]
        assert wait_for(f"{checkpoints}/{cp['id']}", "checkpoint", {"available", "error"})["status"] == "available"
