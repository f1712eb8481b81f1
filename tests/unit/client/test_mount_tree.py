"""``strongroom mount``'s parts that need no kernel: the readahead over a volume and the tree's names.

The volumes here are in-memory stand-ins (``InMemoryVolumeStandIn``) for the API-backed one; the real FUSE
mount against the all-in-one is tests/functional/test_mount.py.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from strongroom.client.client import Client
from strongroom.client.commands.base import UsageError
from strongroom.client.commands.mount import ApiVolume, build_tree
from strongroom.client.mountfs import Readahead, build_nodes


class InMemoryVolumeStandIn:
    """A volume held in memory that counts the reads it answered."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads: list[tuple[int, int]] = []
        self.lock = threading.Lock()

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        with self.lock:
            self.reads.append((offset, length))
        return self.data[offset:offset + length]


def test_readahead_answers_every_range_and_fetches_each_block_once() -> None:
    data = random.Random(1).randbytes(10 * 1000 + 7)
    volume = InMemoryVolumeStandIn(data)
    reader = Readahead(volume, block=1000, blocks=20, prefetch=0)
    rng = random.Random(2)
    for _ in range(300):
        offset = rng.randrange(len(data) + 50)
        length = rng.randrange(1, 2500)
        assert reader.read(offset, length) == data[offset:offset + length]
    assert sorted(set(volume.reads)) == sorted(volume.reads)  # no block fetched twice while kept
    assert all(offset % 1000 == 0 for offset, _ in volume.reads)
    assert (10000, 7) in volume.reads  # the last block is asked for what is left, not past the end


def test_readahead_keeps_only_its_last_blocks() -> None:
    volume = InMemoryVolumeStandIn(bytes(range(256)) * 40)
    reader = Readahead(volume, block=1024, blocks=2, prefetch=0)
    for offset in (0, 1024, 2048, 0):
        reader.read(offset, 10)
    assert [offset for offset, _ in volume.reads] == [0, 1024, 2048, 0]  # block 0 was dropped for block 2


def test_a_sequential_read_fetches_the_next_blocks_before_they_are_asked_for() -> None:
    data = random.Random(4).randbytes(8 * 1024)
    volume = InMemoryVolumeStandIn(data)
    reader = Readahead(volume, block=1024, blocks=4, prefetch=2)
    assert reader.read(0, 1024) == data[:1024]
    assert [o for o, _ in volume.reads] == [0]  # one read is no sequence yet
    assert reader.read(1024, 1024) == data[1024:2048]
    deadline = time.monotonic() + 5
    while len(volume.reads) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(o for o, _ in volume.reads) == [0, 1024, 2048, 3072]
    assert reader.read(2048, 2048) == data[2048:4096]
    time.sleep(0.1)
    assert sorted(o for o, _ in volume.reads)[:4] == [0, 1024, 2048, 3072]  # served from what was fetched
    assert volume.reads.count((2048, 1024)) == 1 and volume.reads.count((3072, 1024)) == 1
    reader.read(7000, 10)  # a jump: no prefetch beyond the end or of what a jump skipped
    time.sleep(0.1)
    assert all(o < 8192 for o, _ in volume.reads)


def test_a_block_wanted_by_several_threads_is_fetched_once() -> None:
    gate = threading.Event()

    class Slow(InMemoryVolumeStandIn):
        def read(self, offset: int, length: int) -> bytes:
            gate.wait(5)
            return super().read(offset, length)

    volume = Slow(b"x" * 4096)
    reader = Readahead(volume, block=4096, prefetch=0)
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(reader.read(100, 10))) for _ in range(4)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert results == [b"x" * 10] * 4
    assert volume.reads == [(0, 4096)]


def test_the_inode_table_refuses_a_name_that_is_not_a_file_name() -> None:
    with pytest.raises(ValueError, match="not a file name"):
        build_nodes({"a/b": {}})
    nodes = build_nodes({"plan": {"cp": {"disk.raw": InMemoryVolumeStandIn(b"abc")}}})
    assert [n.name for n in nodes.values()] == ["", "plan", "cp", "disk.raw"]
    assert nodes[4].volume is not None and nodes[4].volume.size == 3


def _checkpoint(cp_id: str, plan_id: str, plan_name: str, created: str, resources: list[dict]) -> dict:
    return {"id": cp_id, "created_at": created, "status": "available",
            "protection_plan": {"id": plan_id, "name": plan_name, "provider_id": "prov", "resources": resources}}


def test_the_tree_names_plans_checkpoints_and_volumes_uniquely_and_readably() -> None:
    vol = {"type": "OS::Cinder::Volume"}
    checkpoints = [
        _checkpoint("c1", "p1", "nightly", "2026-12-04T19:45:38.123456+00:00",
                    [{**vol, "id": "v1", "name": "root"}, {**vol, "id": "v2", "name": "root"},
                     {"type": "OS::Keystone::Project", "id": "demo", "name": "demo"}]),
        _checkpoint("c2", "p1", "nightly", "2026-12-05T01:00:00+01:00", [{**vol, "id": "v1", "name": "root"}]),
        _checkpoint("c3", "p2", "nightly", "2026-12-04T10:00:00+00:00", [{**vol, "id": "a/b", "name": ""}]),
        _checkpoint("c4", "p3", "db/prod", "2026-12-04T10:00:00+00:00", [{**vol, "id": "v9", "name": "data"}]),
    ]
    tree = build_tree(Client("http://127.0.0.1:1", "demo"), checkpoints)
    assert {plan: {cp: sorted(files) for cp, files in cps.items()} for plan, cps in tree.items()} == {
        "nightly_p1": {"2026-12-04T19:45:38Z_c1": ["root_v1.raw", "root_v2.raw"],
                       "2026-12-05T00:00:00Z_c2": ["root.raw"]},
        "nightly_p2": {"2026-12-04T10:00:00Z_c3": ["a_b.raw"]},
        "db_prod": {"2026-12-04T10:00:00Z_c4": ["data.raw"]},
    }
    volume = tree["nightly_p1"]["2026-12-04T19:45:38Z_c1"]["root_v2.raw"]
    assert isinstance(volume, ApiVolume)
    assert (volume.provider_id, volume.checkpoint_id, volume.resource_key) == ("prov", "c1", "OS::Cinder::Volume#v2")


class ClientStandIn:
    """Answers the three listings ``strongroom mount`` makes, as the API would, from fixed records."""

    def __init__(self, plans: list[dict], checkpoints: dict[str, list[dict]]) -> None:
        self.plans = plans
        self.checkpoints = checkpoints
        self.asked: list[tuple[str, dict]] = []

    def list_providers(self) -> list[dict]:
        return [{"id": p} for p in self.checkpoints]

    def list_plans(self, follow: bool = False) -> list[dict]:
        return self.plans

    def list_checkpoints(self, provider_id: str, follow: bool = False, **params: str) -> list[dict]:
        self.asked.append((provider_id, params))
        return [dict(cp) for cp in self.checkpoints[provider_id] if cp["status"] == params.get("status")]


def _run_listing(client: ClientStandIn, *argv: str) -> list[str]:
    import argparse

    from strongroom.client.commands import mount

    parser = argparse.ArgumentParser()
    mount.register(parser.add_subparsers())
    args = parser.parse_args(["mount", "/tmp", *argv])
    cli = argparse.Namespace(client=client)
    return [cp["id"] for cp in mount._checkpoints(cli, args)]  # type: ignore[arg-type]


def test_mount_shows_the_available_checkpoints_of_every_provider_or_of_the_plan_named() -> None:
    cps = {"prov-a": [{"id": "c1", "status": "available", "protection_plan": {"id": "p1", "name": "web"}},
                      {"id": "c2", "status": "error", "protection_plan": {"id": "p1", "name": "web"}}],
           "prov-b": [{"id": "c3", "status": "available", "protection_plan": {"id": "p2", "name": "db"}}]}
    plans = [{"id": "p1", "name": "web", "provider_id": "prov-a"}, {"id": "p2", "name": "db", "provider_id": "prov-b"}]
    client = ClientStandIn(plans, cps)
    assert _run_listing(client) == ["c1", "c3"]
    assert {params["status"] for _, params in client.asked} == {"available"}
    assert _run_listing(client, "--provider", "prov-b") == ["c3"]
    assert _run_listing(client, "--plan", "db") == ["c3"]
    assert _run_listing(client, "--plan", "p1") == ["c1"]
    with pytest.raises(UsageError, match="--plan nope: no plan"):
        _run_listing(client, "--plan", "nope")
    with pytest.raises(UsageError, match="--plan db"):
        _run_listing(client, "--plan", "db", "--provider", "prov-a")
