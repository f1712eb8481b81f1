"""Several block backends in one all-in-one: loopback, rbd on two pools of one cluster, qcow2.

Four providers side by side (one ``providers.d`` file each, each with its own filesystem bank): a loopback
directory, two pools of the real Ceph cluster of ``tests/servers/ceph.py`` (one provider given the cephx
``key`` itself, the other the keyring file), and a qcow2 directory served by the service's own
qemu-storage-daemon.  One volume on each is protected at the same time and restored at the same time, and
each restore must read back byte for byte.  An administrator's show of each provider names its driver and
its pools with their capacity; a member of a project sees none of it; the cephx key is in no response
and nowhere in the service's output.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from strongroom.block.qcow2 import Qcow2Backend
from strongroom.testing.block import read_all
from tests.functional.harness import AllInOne, MiB, wait_for
from tests.servers.ceph import CephCluster
from tests.servers.qemu import require_qemu

pytestmark = pytest.mark.functional

SIZE = 16 * MiB
TEXT = b"The quick brown fox jumps over the lazy dog. "


def image(seed: int) -> bytes:
    """Random data, text, written zeros, a hole and a random tail: different on every volume."""
    rng = random.Random(seed)
    data = bytearray(SIZE)
    data[0 : 5 * MiB] = rng.randbytes(5 * MiB)
    data[5 * MiB : 8 * MiB] = (TEXT * (3 * MiB // len(TEXT) + 1))[: 3 * MiB]
    # 8-10 MiB written zeros (below), 10-14 MiB never written
    data[14 * MiB + 4321 : SIZE] = rng.randbytes(SIZE - 14 * MiB - 4321)
    return bytes(data)


def write_regions(write: Any, data: bytes) -> None:
    for start, end in ((0, 10 * MiB), (14 * MiB, SIZE)):
        write(start, data[start:end])


@pytest.fixture
def two_pools(ceph_cluster: CephCluster) -> Iterator[tuple[str, str]]:
    pools = (ceph_cluster.new_pool("several-a"), ceph_cluster.new_pool("several-b"))
    try:
        yield pools
    finally:
        for pool in pools:
            ceph_cluster.delete_pool(pool)


class Seen:
    """Every answer's text, to look for the cephx key in afterwards."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, response: requests.Response) -> requests.Response:
        self.texts.append(response.text)
        return response


def test_several_backends_protect_and_restore_side_by_side(
        ceph_cluster: CephCluster, two_pools: tuple[str, str], tmp_path: Path) -> None:
    import rbd

    require_qemu()
    began = time.monotonic()
    pool_a, pool_b = two_pools
    key = ceph_cluster.client_key
    originals = {name: image(seed) for seed, name in enumerate(("vol-loop", "vol-a", "vol-b", "vol-q"))}

    loop_dir, qcow2_dir = tmp_path / "loopback", tmp_path / "qcow2"
    loop_dir.mkdir()
    with open(loop_dir / "vol-loop", "wb") as fh:
        fh.truncate(SIZE)
        write_regions(lambda offset, data: (fh.seek(offset), fh.write(data)), originals["vol-loop"])
    admin = ceph_cluster.admin()
    for pool, name in ((pool_a, "vol-a"), (pool_b, "vol-b")):
        with admin.open_ioctx(pool) as ioctx:
            rbd.RBD().create(ioctx, name, SIZE, old_format=False, features=rbd.RBD_FEATURE_LAYERING)
            with rbd.Image(ioctx, name) as handle:
                write_regions(lambda offset, data, h=handle: h.write(data, offset), originals[name])
    setup = Qcow2Backend({"path": str(qcow2_dir)})
    try:
        setup.create_volume(SIZE, name="vol-q")
        with setup.writing_volume("vol-q") as writer:
            write_regions(writer.write, originals["vol-q"])
    finally:
        setup.close()

    state, providers = tmp_path / "state", tmp_path / "providers.d"
    state.mkdir()
    providers.mkdir()
    ids = {name: str(uuid.uuid4()) for name in originals}
    volume = "[volume]\nblock_backend = {}\nworkers = 2\n\n"
    sections = {
        "vol-loop": ("Local", "loopback", f"[loopback]\npath = {loop_dir}\n"),
        "vol-a": ("Ceph A", "rbd", f"[rbd]\nmon_host = {ceph_cluster.mon_host}\npool = {pool_a}\n"
                                   f"client_name = strongroom\nkey = {key}\nop_timeout = 20\n"),
        "vol-b": ("Ceph B", "rbd", f"[rbd]\nmon_host = {ceph_cluster.mon_host}\npool = {pool_b}\n"
                                   f"client_name = strongroom\nkeyring = {ceph_cluster.client_keyring}\n"
                                   "op_timeout = 20\n"),
        "vol-q": ("KVM", "qcow2", f"[qcow2]\npath = {qcow2_dir}\ntimeout = 20\n"),
    }
    for name, (title, driver, section) in sections.items():
        (providers / f"{name}.conf").write_text(
            f"[provider]\nname = {title}\nid = {ids[name]}\nplugin = volume\nbank = fs\n\n"
            f"[fs]\npath = {tmp_path / 'banks' / name}\n\n" + volume.format(driver) + section)
    conf = tmp_path / "strongroom.conf"
    conf.write_text(f"[DEFAULT]\nstate_dir = {state}\nproviders_dir = {providers}\n[api]\nbind_port = 0\n")
    service = AllInOne(state_dir=state, config_file=conf)
    service.start()
    seen = Seen()
    try:
        api = service.api()
        instances = seen(requests.get(f"{api}/protectables/OS::Cinder::Volume/instances", timeout=30)).json()
        assert sorted(i["id"] for i in instances["instances"]) == sorted(originals)
        # Listed above (every backend's), but a plan is checked in its own provider's backend only.
        elsewhere = seen(requests.post(f"{api}/plans", json={"plan": {
            "name": "elsewhere", "provider_id": ids["vol-loop"], "parameters": {},
            "resources": [{"id": "vol-a", "type": "OS::Cinder::Volume"}]}}, timeout=10))
        assert elsewhere.status_code == 404, elsewhere.text
        assert elsewhere.json()["notFound"]["message"] == (
            f"plan.resources[0]: OS::Cinder::Volume 'vol-a' could not be found by provider 'Local' "
            f"({ids['vol-loop']}) in block backend 'loopback'")

        def protect(name: str) -> dict[str, Any]:
            plan = seen(requests.post(f"{api}/plans", json={"plan": {
                "name": name, "provider_id": ids[name], "parameters": {},
                "resources": [{"id": name, "type": "OS::Cinder::Volume", "name": name}]}}, timeout=10))
            assert plan.status_code == 200, plan.text
            created = seen(requests.post(f"{api}/providers/{ids[name]}/checkpoints",
                                         json={"checkpoint": {"plan_id": plan.json()["plan"]["id"]}}, timeout=30))
            assert created.status_code == 200, created.text
            return wait_for(f"{api}/providers/{ids[name]}/checkpoints/{created.json()['checkpoint']['id']}",
                            "checkpoint", {"available", "error"}, timeout=120)

        def restore(name: str, checkpoint_id: str) -> dict[str, Any]:
            created = seen(requests.post(f"{api}/restores", json={"restore": {
                "provider_id": ids[name], "checkpoint_id": checkpoint_id, "restore_target": None,
                "parameters": {"OS::Cinder::Volume": {"restore_name": f"{name}-restored"}}}}, timeout=30))
            assert created.status_code == 200, created.text
            return wait_for(f"{api}/restores/{created.json()['restore']['id']}", "restore", {"success", "fail"},
                            timeout=120)

        with ThreadPoolExecutor(len(originals)) as pool:
            protected = dict(zip(originals, pool.map(protect, originals), strict=True))
            assert {n: cp["status"] for n, cp in protected.items()} == dict.fromkeys(originals, "available"), \
                protected
            restored = dict(zip(originals, pool.map(lambda n: restore(n, protected[n]["id"]), originals),
                                strict=True))
            assert {n: r["status"] for n, r in restored.items()} == dict.fromkeys(originals, "success"), restored

        # What an administrator sees of each provider's backend; a member sees none of it.
        shown: dict[str, dict[str, Any]] = {}
        for name in originals:
            member = seen(requests.get(f"{api}/providers/{ids[name]}", timeout=30))
            assert member.status_code == 200 and "extra_info" not in member.json()["provider"], member.text
            answer = seen(requests.get(f"{api}/providers/{ids[name]}", headers=service.admin_headers(),
                                       timeout=30))
            assert answer.status_code == 200, answer.text
            (shown[name],) = answer.json()["provider"]["extra_info"]["block_backends"]
        listed = seen(requests.get(f"{api}/providers", timeout=30)).json()["providers"]
        assert all("extra_info" not in p for p in listed)
        assert {n: (b["driver"], [p["name"] for p in b["pools"]]) for n, b in shown.items()} == {
            "vol-loop": ("loopback", [str(loop_dir)]), "vol-a": ("rbd", [pool_a]), "vol-b": ("rbd", [pool_b]),
            "vol-q": ("qcow2", [str(qcow2_dir)])}
        for name, backend in shown.items():
            (pool_stats,) = backend["pools"]
            assert "error" not in backend, backend
            assert 0 <= pool_stats["free_bytes"] <= pool_stats["total_bytes"], (name, pool_stats)
            if backend["driver"] != "rbd":  # a cluster without ceph-mgr reports no usage: zeros
                # The original (12 MiB written) and its thin restore (the 2 MiB of written zeros a hole).
                assert pool_stats["total_bytes"] > 0 and pool_stats["allocated_bytes"] >= 20 * MiB, \
                    (name, pool_stats)
    finally:
        service.stop()

    contents = {"vol-loop": (loop_dir / "vol-loop-restored").read_bytes()}
    for pool, name in ((pool_a, "vol-a"), (pool_b, "vol-b")):
        with admin.open_ioctx(pool) as ioctx, rbd.Image(ioctx, f"{name}-restored", read_only=True) as handle:
            contents[name] = handle.read(0, handle.size())
    check = Qcow2Backend({"path": str(qcow2_dir)})
    try:
        with check.open_volume_reader("vol-q-restored") as reader:
            contents["vol-q"] = read_all(reader, 4 * MiB)
    finally:
        check.close()
    for name, data in originals.items():
        assert contents[name] == data, f"{name}: the restored volume differs from the original"
    assert key and not any(key in text for text in seen.texts), "the cephx key reached a response"
    assert key not in "".join(service.output), "the cephx key reached the service's output"
    print(f"\nloopback + rbd (2 pools) + qcow2, 16 MiB each: {time.monotonic() - began:.1f} s; "
          + "; ".join(f"{n}: {b['driver']} {b['pools'][0]['name']} "
                      f"{b['pools'][0]['allocated_bytes'] // MiB}/{b['pools'][0]['total_bytes'] // MiB} MiB"
                      for n, b in shown.items()))
