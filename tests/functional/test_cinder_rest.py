"""Through the REST API: a Cinder volume protected into an S3 bank (moto), restored as a new Cinder volume.

The volume is made through Cinder's own API (1 GiB, its smallest), of a second volume type made for the
test, and filled as a guest would, through its RBD image: random data, text, written zeros and
never-written space.  The provider names the cinder backend (noauth, the ``rbd_key`` option itself, which
must never reach the service's output).  After the first (full) protect, a few small writes through
librbd; the next protect reads only what librbd's diff of the two Cinder snapshots says changed, one more
with nothing changed reads nothing, and the newest checkpoint is audited against its retained snapshot
(``{"source": true}``).  The restore of the full checkpoint must be a new Cinder volume that Cinder reports
``available``, of the original's volume type and zone, byte for byte the volume at that protect; a restore
of the incremental one into an existing available volume (``restore_target``) leaves it byte for byte the
volume at that protect, nothing of its old bytes left, and one into a volume Cinder has in maintenance is
refused naming it; each project lists only its own volumes; and with cinder-api stopped, the listing
answers 503 naming Cinder.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.functional.banks import bank_under_test
from tests.functional.harness import AllInOne, MiB, wait_for
from tests.servers.cinder import CinderService

pytestmark = pytest.mark.functional

GiB = 1 << 30
TEXT = b"The quick brown fox jumps over the lazy dog. "
CHUNK = 4 * MiB  # the volume plugin's default chunk size
VOLUME_KEY = "OS::Cinder::Volume#{}"
#: The nightly changes after the first protect: in the random data (unaligned), from the text across a
#: chunk boundary into the written zeros, in those zeros, in never-written space, and the volume's last byte.
CHANGES = {3 * MiB + 777: b"\x5a" * 4096, 8 * MiB - 100: b"\xa5" * 200, 9 * MiB: b"\x01" * 65536,
           400 * MiB + 12288: b"nightly" * 100, GiB - 1: b"!"}


def fill(handle: Any) -> None:
    """12 MiB of the 1 GiB: a few chunks of each kind are what the round trip proves; the bytes are the
    cost (every MiB written is protected, restored and hashed twice)."""
    rng = random.Random(23)
    handle.write(rng.randbytes(6 * MiB), 0)
    handle.write((TEXT * (2 * MiB // len(TEXT) + 1))[: 2 * MiB], 6 * MiB)
    handle.write(bytes(2 * MiB), 8 * MiB)  # written zeros
    # 10 MiB - 700 MiB: never written
    handle.write(rng.randbytes(2 * MiB), 700 * MiB + 4321)  # across a chunk boundary, unaligned
    handle.write(TEXT * 90, GiB - len(TEXT) * 90)
    handle.flush()


def digest(handle: Any) -> str:
    sha = hashlib.sha256()
    for offset in range(0, handle.size(), 32 * MiB):
        sha.update(handle.read(offset, 32 * MiB))
    return sha.hexdigest()


def protect(api: str, provider_id: str, plan_id: str) -> dict[str, Any]:
    """A protect through the API, waited for until ``available``."""
    made = requests.post(f"{api}/providers/{provider_id}/checkpoints", json={"checkpoint": {"plan_id": plan_id}},
                         timeout=30)
    assert made.status_code == 200, made.text
    body = wait_for(f"{api}/providers/{provider_id}/checkpoints/{made.json()['checkpoint']['id']}", "checkpoint",
                    {"available", "error"}, timeout=300)
    assert body["status"] == "available", body
    return dict(body)


def verify(api: str, provider_id: str, checkpoint_id: str, parameters: dict[str, Any]) -> dict[str, Any]:
    verification = requests.post(f"{api}/verifications", json={"verification": {
        "provider_id": provider_id, "checkpoint_id": checkpoint_id, "parameters": parameters}}, timeout=30)
    assert verification.status_code == 200, verification.text
    return dict(wait_for(f"{api}/verifications/{verification.json()['verification']['id']}", "verification",
                         {"success", "fail"}, timeout=300))


def retained(cinder: CinderService, volume_id: str, project: str) -> int:
    """How many snapshots the volume has once the older base is released (just after a checkpoint is
    published, so polled for)."""
    deadline = time.monotonic() + 30
    while True:
        snaps = cinder.api("GET", f"/snapshots?volume_id={volume_id}", project).json()["snapshots"]
        if len(snaps) <= 1 or time.monotonic() > deadline:
            return len(snaps)
        time.sleep(0.2)


def test_cinder_volume_protected_into_s3_restored_as_a_new_volume(
        cinder_service: CinderService, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    import rbd

    cinder = cinder_service
    project, other = f"demo-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    kind = f"strongroom-fast-{uuid.uuid4().hex[:6]}"  # not Cinder's default type: a restore must keep it
    typed = cinder.api("POST", "/types", json={"volume_type": {
        "name": kind, "extra_specs": {"volume_backend_name": "ceph"}}})
    assert typed.status_code == 200, typed.text
    asked = cinder.api("POST", "/volumes", project, json={"volume": {"size": 1, "name": "database",
                                                                     "volume_type": kind}})
    assert asked.status_code == 202, asked.text
    source = cinder.wait_volume(asked.json()["volume"]["id"], project)
    assert source["volume_type"] == kind
    foreign = cinder.create_volume(1, "not-yours", project=other)
    target = cinder.create_volume(1, "scratch", project=project)  # restored into, over its old bytes
    ioctx = cinder.ceph.admin().open_ioctx(cinder.pool)
    made: list[tuple[str, str]] = [(source["id"], project), (foreign["id"], other), (target["id"], project)]
    try:
        with rbd.Image(ioctx, f"volume-{source['id']}") as image:
            fill(image)
            original = digest(image)
        with rbd.Image(ioctx, f"volume-{target['id']}") as image:
            for offset in (0, 9 * MiB, 300 * MiB, GiB - MiB):  # in the original's data, zeros and holes
                image.write(b"\xee" * MiB, offset)

        bank = bank_under_test("s3", request, tmp_path)
        state, providers = tmp_path / "state", tmp_path / "providers.d"
        providers.mkdir()
        state.mkdir()
        provider_id = str(uuid.uuid4())
        key = cinder.ceph.client_key
        (providers / "cinder.conf").write_text(
            f"[provider]\nname = OpenStack\nid = {provider_id}\nplugin = volume\nbank = s3\n\n"
            "[volume]\nblock_backend = cinder\nworkers = 3\n\n"
            f"[cinder]\nauth_type = noauth\nendpoint = {cinder.endpoint}\nproject_id = admin\n"
            f"rbd_mon_host = {cinder.ceph.mon_host}\nrbd_client_name = strongroom\nrbd_key = {key}\n"
            "status_timeout = 60\ntimeout = 10\n\n" + bank.section())
        conf = tmp_path / "strongroom.conf"
        conf.write_text(f"[DEFAULT]\nstate_dir = {state}\nproviders_dir = {providers}\n[api]\nbind_port = 0\n")
        service = AllInOne(state_dir=state, config_file=conf)
        service.start()
        try:
            api = service.api(project)
            listed = requests.get(f"{api}/protectables/OS::Cinder::Volume/instances", timeout=30)
            assert listed.status_code == 200, listed.text
            instances = listed.json()["instances"]
            assert sorted((i["id"], i["name"]) for i in instances) == sorted(
                [(source["id"], "database"), (target["id"], "scratch")])
            theirs = requests.get(f"{service.api(other)}/protectables/OS::Cinder::Volume/instances", timeout=30)
            assert [i["id"] for i in theirs.json()["instances"]] == [foreign["id"]]

            def make_plan(volume_id: str, **resource: str) -> requests.Response:
                return requests.post(f"{api}/plans", json={"plan": {
                    "name": "cinder", "provider_id": provider_id, "parameters": {},
                    "resources": [{"id": volume_id, "type": "OS::Cinder::Volume", **resource}]}}, timeout=60)

            refused = make_plan(foreign["id"])  # another project's volume: Cinder does not show it to this one
            assert refused.status_code == 404, refused.text
            assert f"'{foreign['id']}' could not be found by provider" in refused.text, refused.text
            plan = make_plan(source["id"])
            assert plan.status_code == 200, plan.text
            assert plan.json()["plan"]["resources"][0]["name"] == "database"  # Cinder's name of it
            began = time.monotonic()
            created = requests.post(f"{api}/providers/{provider_id}/checkpoints",
                                    json={"checkpoint": {"plan_id": plan.json()["plan"]["id"]}}, timeout=30)
            assert created.status_code == 200, created.text
            cp_url = f"{api}/providers/{provider_id}/checkpoints/{created.json()['checkpoint']['id']}"
            cp = wait_for(cp_url, "checkpoint", {"available", "error"}, timeout=300)
            protect_seconds = time.monotonic() - began
            assert cp["status"] == "available", cp
            assert cp["extra_info"]["protected"][VOLUME_KEY.format(source["id"])]["mode"] == "full"
            snaps = cinder.api("GET", f"/snapshots?volume_id={source['id']}", project).json()["snapshots"]
            assert len(snaps) == 1, f"the protect's snapshot is kept as the next base, alone: {snaps}"

            # The nightly protects: a few small writes, then one with nothing changed.
            with rbd.Image(ioctx, f"volume-{source['id']}") as image:
                for offset, data in CHANGES.items():
                    image.write(data, offset)
                image.flush()
                changed = digest(image)
            assert changed != original
            began = time.monotonic()
            cp2 = protect(api, provider_id, plan.json()["plan"]["id"])
            incremental_seconds = time.monotonic() - began
            second = cp2["extra_info"]["protected"][VOLUME_KEY.format(source["id"])]
            assert (second["mode"], second["parent_checkpoint"], second["full_reason"]) == \
                ("incremental", cp["id"], None), second
            slots = {o // CHUNK for o in CHANGES} | {(o + len(d) - 1) // CHUNK for o, d in CHANGES.items()}
            assert sum(map(len, CHANGES.values())) <= second["bytes_read"] <= len(slots) * CHUNK, second
            assert 0 < second["bytes_stored"] <= len(slots) * CHUNK, second
            assert retained(cinder, source["id"], project) == 1, "only the newest checkpoint keeps its snapshot"
            began = time.monotonic()
            cp3 = protect(api, provider_id, plan.json()["plan"]["id"])
            unchanged_seconds = time.monotonic() - began
            third = cp3["extra_info"]["protected"][VOLUME_KEY.format(source["id"])]
            assert (third["mode"], third["parent_checkpoint"], third["bytes_read"], third["bytes_stored"]) == \
                ("incremental", cp2["id"], 0, 0), third
            assert retained(cinder, source["id"], project) == 1, "only the newest checkpoint keeps its snapshot"
            audit = verify(api, provider_id, cp3["id"], {"OS::Cinder::Volume": {"source": True}})
            assert audit["status"] == "success", audit

            began = time.monotonic()
            restore = requests.post(f"{api}/restores", json={"restore": {
                "provider_id": provider_id, "checkpoint_id": cp["id"], "restore_target": None,
                "parameters": {"OS::Cinder::Volume": {"restore_name": "database-restored"}}}}, timeout=30)
            assert restore.status_code == 200, restore.text
            done = wait_for(f"{api}/restores/{restore.json()['restore']['id']}", "restore", {"success", "fail"},
                            timeout=300)
            restore_seconds = time.monotonic() - began
            assert done["status"] == "success", done
            volumes = cinder.api("GET", "/volumes/detail", project).json()["volumes"]
            restored = [v for v in volumes if v["name"] == "database-restored"]
            assert len(restored) == 1, volumes
            made.append((restored[0]["id"], project))
            assert restored[0]["status"] == "available" and restored[0]["size"] == 1
            assert (restored[0]["volume_type"], restored[0]["availability_zone"]) == (
                kind, source["availability_zone"]), "the new volume is not placed like the original"
            assert not (restored[0].get("metadata") or {}).keys() & {"strongroom.staged", "strongroom.staged_at"}
            assert sorted(v["name"] for v in volumes) == ["database", "database-restored", "scratch"]
            with rbd.Image(ioctx, f"volume-{restored[0]['id']}", read_only=True) as image:
                assert digest(image) == original, "the full checkpoint is not the volume at its protect"

            # The incremental checkpoint into the existing volume: refused while Cinder has it in maintenance
            # (in use), then written whole.
            into = {f"OS::Cinder::Volume#{source['id']}": {"restore_target": target["id"]}}
            action = f"/volumes/{target['id']}/action"
            busy = cinder.api("POST", action, json={"os-reset_status": {"status": "maintenance"}})
            assert busy.status_code == 202, busy.text
            try:
                refused = requests.post(f"{api}/restores", json={"restore": {
                    "provider_id": provider_id, "checkpoint_id": cp2["id"], "parameters": into}}, timeout=30)
            finally:
                cinder.api("POST", action, json={"os-reset_status": {"status": "available"}})
            assert refused.status_code == 409, refused.text
            assert target["id"] in refused.text and "maintenance" in refused.text, refused.text
            began = time.monotonic()
            restore = requests.post(f"{api}/restores", json={"restore": {
                "provider_id": provider_id, "checkpoint_id": cp2["id"], "parameters": into}}, timeout=30)
            assert restore.status_code == 200, restore.text
            done = wait_for(f"{api}/restores/{restore.json()['restore']['id']}", "restore", {"success", "fail"},
                            timeout=300)
            overwrite_seconds = time.monotonic() - began
            assert done["status"] == "success", done
            assert [r["id"] for r in done["extra_info"]["restored_resources"].values()] == [target["id"]]
            assert cinder.wait_volume(target["id"], project)["name"] == "scratch"
            with rbd.Image(ioctx, f"volume-{target['id']}", read_only=True) as image:
                assert digest(image) == changed, "the incremental checkpoint is not the volume at its protect"
            assert len(cinder.api("GET", "/volumes/detail", project).json()["volumes"]) == 3, "a volume was made"

            cinder.stop_api()
            try:
                down = requests.get(f"{api}/protectables/OS::Cinder::Volume/instances", timeout=60)
                unplanned = make_plan(source["id"])
            finally:
                cinder.start_api()
            assert down.status_code == 503, down.text
            assert "Cinder" in down.text, down.text
            assert unplanned.status_code == 503, unplanned.text  # never a 404: the volume may well be there
            assert "Cinder" in unplanned.text, unplanned.text
            assert requests.delete(cp_url, timeout=30).status_code == 202
            assert wait_for(cp_url, "checkpoint", {"deleted", "error-deleting"})["status"] == "deleted"
        finally:
            service.stop()
        assert key not in "".join(service.output)
        print(f"\ncinder 1 GiB volume (12 MiB written): protect {protect_seconds:.1f} s, "
              f"incremental {incremental_seconds:.1f} s reading {second['bytes_read'] / MiB:.1f} MiB, "
              f"unchanged {unchanged_seconds:.1f} s reading {third['bytes_read']} bytes, "
              f"restore {restore_seconds:.1f} s, restore into an existing volume {overwrite_seconds:.1f} s")
    finally:
        ioctx.close()
        for volume_id, owner in made:
            cinder.delete_volume(volume_id, project=owner)
        cinder.api("DELETE", f"/types/{typed.json()['volume_type']['id']}")
