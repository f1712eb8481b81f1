"""Killing the Ceph OSD in the middle of a protect: the checkpoint ends ``error`` naming the backend and
the pool within the configured timeout, never ``available``, and once the OSD is back garbage collection
removes the protect's RBD snapshot (the protect could not: the cluster was gone when it tried).

A cluster of its own, so that killing its OSD hurts no other test: cephx off (the session cluster has it
on, so both ways run) and bluestore on a file, whose data outlives the killed OSD as a real disk's does.
"""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.functional.banks import bank_under_test, random_compressible
from tests.functional.harness import AllInOne, MiB
from tests.servers.ceph import CephCluster, CephError, missing_packages, must_not_skip

pytestmark = [pytest.mark.functional, pytest.mark.slow]

OP_TIMEOUT = 2
SIZE = 96 * MiB


def test_osd_killed_mid_protect(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    missing = missing_packages()
    if missing:
        message = f"Ceph is not installed (missing: {', '.join(missing)})"
        pytest.fail(message) if must_not_skip() else pytest.skip(message)
    import rbd

    cluster = CephCluster(tmp_path / "ceph", cephx=False, objectstore="bluestore", memstore_bytes=1 << 30)
    try:
        cluster.start()
    except CephError as err:
        pytest.fail(str(err)) if must_not_skip() else pytest.skip(f"Ceph could not start: {err}")
    try:
        pool = cluster.create_pool("dying")
        ioctx = cluster.admin().open_ioctx(pool)
        rbd.RBD().create(ioctx, "victim", SIZE, old_format=False,
                         features=rbd.RBD_FEATURE_LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK
                         | rbd.RBD_FEATURE_OBJECT_MAP | rbd.RBD_FEATURE_FAST_DIFF)
        with rbd.Image(ioctx, "victim") as image:
            image.write(random_compressible(random.Random(3), SIZE), 0)

        bank = bank_under_test("fs", request, tmp_path)
        state, providers = tmp_path / "state", tmp_path / "providers.d"
        state.mkdir()
        providers.mkdir()
        provider_id = str(uuid.uuid4())
        (providers / "rbd.conf").write_text(
            f"[provider]\nname = Ceph\nid = {provider_id}\nplugin = volume\nbank = fs\n\n"
            # Slow compression: the protect takes long enough to be killed in the middle.
            "[volume]\nblock_backend = rbd\nworkers = 2\ncompression_level = 15\n\n"
            f"[rbd]\nmon_host = {cluster.mon_host}\npool = {pool}\nconnect_timeout = {OP_TIMEOUT}\n"
            f"op_timeout = {OP_TIMEOUT}\n\n" + bank.section())
        conf = tmp_path / "strongroom.conf"
        conf.write_text(f"[DEFAULT]\nstate_dir = {state}\nproviders_dir = {providers}\n[api]\nbind_port = 0\n"
                        "[protection]\ngc_interval = 1\ngc_chunk_grace_period = 0\n")
        service = AllInOne(state_dir=state, config_file=conf)
        service.start()
        try:
            api = service.api()
            plan = requests.post(f"{api}/plans", json={"plan": {
                "name": "ceph", "provider_id": provider_id, "parameters": {},
                "resources": [{"id": "victim", "type": "OS::Cinder::Volume", "name": "victim"}]}}, timeout=30)
            assert plan.status_code == 200, plan.text
            created = requests.post(f"{api}/providers/{provider_id}/checkpoints",
                                    json={"checkpoint": {"plan_id": plan.json()["plan"]["id"]}}, timeout=30)
            assert created.status_code == 200, created.text
            cp_url = f"{api}/providers/{provider_id}/checkpoints/{created.json()['checkpoint']['id']}"
            statuses = set()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                cp = requests.get(cp_url, timeout=10).json()["checkpoint"]
                statuses.add(cp["status"])
                if cp["progress"]["bytes_done"] > 0 or cp["status"] != "protecting":
                    break
                time.sleep(0.05)
            assert cp["status"] == "protecting", cp
            assert cp["progress"]["bytes_done"] < SIZE, "the protect ended before the OSD could be killed"

            cluster.kill_osd()
            killed = time.monotonic()
            while time.monotonic() < killed + 60:
                cp = requests.get(cp_url, timeout=10).json()["checkpoint"]
                statuses.add(cp["status"])
                if cp["status"] != "protecting":
                    break
                time.sleep(0.1)
            took = time.monotonic() - killed
            assert cp["status"] == "error", cp
            assert "available" not in statuses
            # A read times out, then deleting the snapshot does: a few timeouts, not minutes.
            assert took < 4 * OP_TIMEOUT + 5, took
            assert f"rbd block backend (pool {pool})" in (cp.get("status_reason") or ""), cp
            cluster.start_osd()
            cluster.wait_until_writable(pool)
            deadline = time.monotonic() + 120  # the cluster peers again first: slow on a loaded machine
            while time.monotonic() < deadline:
                with rbd.Image(ioctx, "victim", read_only=True) as image:
                    snaps = [s["name"] for s in image.list_snaps()]
                if not snaps:
                    break
                time.sleep(0.5)
            said = "".join(line for line in service.output if "snapshot" in line or "WARNING" in line)
            assert snaps == [], f"garbage collection left the protect's snapshot; the service said:\n{said[-4000:]}"
            assert requests.get(cp_url, timeout=10).json()["checkpoint"]["status"] == "error"
        finally:
            service.stop()
        ioctx.close()
    finally:
        cluster.stop()
