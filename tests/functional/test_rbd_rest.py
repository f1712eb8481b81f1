"""Through the REST API: an RBD image protected into an S3 bank (moto), restored to a new image, verified.

The image (256 MiB) holds random data, text, written zeros and never-written space, on the real Ceph
cluster of ``tests/servers/ceph.py``; the provider names the rbd backend with the cephx ``key`` option
itself, which must never reach the service's output.  The restored image must read back byte for byte
and stay thin: librbd's diff from the beginning shows no more allocated than the original has.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.functional.banks import bank_under_test
from tests.functional.harness import AllInOne, MiB, wait_for
from tests.servers.ceph import CephCluster

pytestmark = pytest.mark.functional

SIZE = 256 * MiB
TEXT = b"The quick brown fox jumps over the lazy dog. "


def write_image(handle: Any) -> None:
    """Random data, text, written zeros, holes; the end of the image written too."""
    rng = random.Random(11)
    handle.write(rng.randbytes(48 * MiB), 0)
    handle.write((TEXT * (16 * MiB // len(TEXT) + 1))[: 16 * MiB], 48 * MiB)
    handle.write(bytes(16 * MiB), 64 * MiB)  # written zeros: allocated here, a hole once restored
    # 80-200 MiB: never written
    handle.write(rng.randbytes(32 * MiB), 200 * MiB + 12345)
    handle.write(TEXT * 90, SIZE - len(TEXT) * 90)
    handle.flush()


def digest(handle: Any) -> str:
    sha = hashlib.sha256()
    for offset in range(0, handle.size(), 16 * MiB):
        sha.update(handle.read(offset, 16 * MiB))
    return sha.hexdigest()


def allocated_bytes(handle: Any) -> int:
    found: list[int] = []
    handle.diff_iterate(0, handle.size(), None, lambda o, n, exists: found.append(n) if exists else None)
    return sum(found)


@pytest.fixture
def rbd_pool(ceph_cluster: CephCluster) -> Iterator[Any]:
    pool = ceph_cluster.new_pool("functional")
    ioctx = ceph_cluster.admin().open_ioctx(pool)
    try:
        yield ioctx
    finally:
        ioctx.close()
        ceph_cluster.delete_pool(pool)


def test_rbd_image_protected_into_s3_restored_thin(ceph_cluster: CephCluster, rbd_pool: Any,
                                                    request: pytest.FixtureRequest, tmp_path: Path) -> None:
    import rbd

    pool = rbd_pool.get_pool_name()
    rbd.RBD().create(rbd_pool, "database", SIZE, old_format=False,
                     features=rbd.RBD_FEATURE_LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK
                     | rbd.RBD_FEATURE_OBJECT_MAP | rbd.RBD_FEATURE_FAST_DIFF)
    with rbd.Image(rbd_pool, "database") as image:
        write_image(image)
        original, original_allocated = digest(image), allocated_bytes(image)

    bank = bank_under_test("s3", request, tmp_path)
    state, providers = tmp_path / "state", tmp_path / "providers.d"
    providers.mkdir()
    state.mkdir()
    provider_id = str(uuid.uuid4())
    key = ceph_cluster.client_key
    (providers / "rbd.conf").write_text(
        f"[provider]\nname = Ceph\nid = {provider_id}\nplugin = volume\nbank = s3\n\n"
        "[volume]\nblock_backend = rbd\nworkers = 3\n\n"
        f"[rbd]\nmon_host = {ceph_cluster.mon_host}\npool = {pool}\nclient_name = strongroom\nkey = {key}\n"
        "op_timeout = 20\n\n" + bank.section())
    conf = tmp_path / "strongroom.conf"
    conf.write_text(f"[DEFAULT]\nstate_dir = {state}\nproviders_dir = {providers}\n[api]\nbind_port = 0\n")
    service = AllInOne(state_dir=state, config_file=conf)
    service.start()
    try:
        api = service.api()
        instances = requests.get(f"{api}/protectables/OS::Cinder::Volume/instances", timeout=30).json()
        assert [i["id"] for i in instances["instances"]] == ["database"]
        plan = requests.post(f"{api}/plans", json={"plan": {
            "name": "ceph", "provider_id": provider_id, "parameters": {},
            "resources": [{"id": "database", "type": "OS::Cinder::Volume", "name": "database"}]}}, timeout=10)
        assert plan.status_code == 200, plan.text

        began = time.monotonic()
        created = requests.post(f"{api}/providers/{provider_id}/checkpoints",
                                json={"checkpoint": {"plan_id": plan.json()["plan"]["id"]}}, timeout=30)
        assert created.status_code == 200, created.text
        cp_url = f"{api}/providers/{provider_id}/checkpoints/{created.json()['checkpoint']['id']}"
        cp = wait_for(cp_url, "checkpoint", {"available", "error"}, timeout=300)
        protect_seconds = time.monotonic() - began
        assert cp["status"] == "available", cp
        with rbd.Image(rbd_pool, "database", read_only=True) as image:
            assert len(list(image.list_snaps())) == 1, "the protect's snapshot is kept as the next base, alone"

        began = time.monotonic()
        restore = requests.post(f"{api}/restores", json={"restore": {
            "provider_id": provider_id, "checkpoint_id": cp["id"], "restore_target": None,
            "parameters": {"OS::Cinder::Volume": {"restore_name": "database-restored"}}}}, timeout=30)
        assert restore.status_code == 200, restore.text
        done = wait_for(f"{api}/restores/{restore.json()['restore']['id']}", "restore", {"success", "fail"},
                        timeout=300)
        restore_seconds = time.monotonic() - began
        assert done["status"] == "success", done
        with rbd.Image(rbd_pool, "database-restored", read_only=True) as image:
            assert image.size() == SIZE
            assert digest(image) == original
            restored_allocated = allocated_bytes(image)
        # Thin: the never-written 120 MiB and the 16 MiB of written zeros stay unallocated (allocation is
        # counted in 4 MiB objects, so the objects the random data only partly fills count whole).
        assert restored_allocated <= 104 * MiB < original_allocated - 8 * MiB, (restored_allocated,
                                                                               original_allocated)
        assert sorted(rbd.RBD().list(rbd_pool)) == ["database", "database-restored"]  # nothing staged left

        verification = requests.post(f"{api}/verifications", json={"verification": {
            "provider_id": provider_id, "checkpoint_id": cp["id"], "parameters": {}}}, timeout=30)
        assert verification.status_code == 200, verification.text
        verified = wait_for(f"{api}/verifications/{verification.json()['verification']['id']}",
                            "verification", {"success", "fail"}, timeout=300)
        assert verified["status"] == "success", verified

        assert requests.delete(cp_url, timeout=30).status_code == 202
        assert wait_for(cp_url, "checkpoint", {"deleted", "error-deleting"})["status"] == "deleted"
    finally:
        service.stop()
    assert key not in "".join(service.output)
    print(f"\nrbd 256 MiB: protect {protect_seconds:.1f} s ({SIZE / MiB / protect_seconds:.0f} MiB/s), "
          f"restore {restore_seconds:.1f} s ({SIZE / MiB / restore_seconds:.0f} MiB/s), "
          f"allocated {original_allocated // MiB} MiB -> {restored_allocated // MiB} MiB")
