"""The chunk sweep removes the temp files of fs writers killed before their barrier, and never a live one's.

Each writer has its own :class:`FilesystemBank` on one directory (what another process sees) and its
own lease; the bank's clock and the leases' are one ``FakeClock``.  A killed writer is one that stops:
no barrier, no ``close()``, no lease renewal.
"""

from __future__ import annotations

import os
import pathlib

import pytest

from strongroom.bank_plugins import Bank
from strongroom.bank_plugins.fs import FilesystemBank
from strongroom.bank_plugins.layout import BankLayout
from strongroom.bank_plugins.lease import BankLease, LeaseWindows
from strongroom.clock import FakeClock
from strongroom.datamover import ChunkStore
from strongroom.objects.records import CheckpointRecord
from strongroom.protection import gc
from strongroom.protection.catalogue import CheckpointCatalogue

PROVIDER = "33333333-4444-5555-6666-777777777777"
WINDOWS = LeaseWindows(expire=60, renew=20, validity=10)


class Writer:
    """A protect in progress in project ``proj``: its lease, its active marker, its deferred chunks."""

    def __init__(self, root: pathlib.Path, clock: FakeClock, owner: str) -> None:
        self.bank = Bank(FilesystemBank({"path": str(root)}, clock), name=owner)
        self.lease = BankLease(self.bank.plugin, owner, WINDOWS, clock=clock)
        self.lease.acquire_lease()
        self.catalogue = CheckpointCatalogue(self.bank, None, clock, provider_id=PROVIDER)
        self.cid = f"cp-{owner}"
        self.catalogue.begin_protect(CheckpointRecord(
            id=self.cid, provider_id=PROVIDER, project_id="proj", status="protecting", owner_id=owner,
            created_at=clock.now(), resource_graph="[{}, []]"))
        self.chunks = ChunkStore(self.bank.section(BankLayout.chunks_prefix("proj")))
        self.digests = [self.put(os.urandom(5000)) for _ in range(3)]

    def put(self, data: bytes) -> str:
        digest = self.chunks.hash(data)
        self.chunks.put(digest, data)  # deferred: a temp file until the barrier
        return digest


def temp_files(root: pathlib.Path) -> set[str]:
    return {str(p) for p in root.rglob(".tmp-*")}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def collector_of(root: pathlib.Path, clock: FakeClock, owner: str = "collector") -> gc.GarbageCollector:
    bank = Bank(FilesystemBank({"path": str(root)}, clock), name="fs")
    lease = BankLease(bank.plugin, owner, WINDOWS, clock=clock)
    lease.acquire_lease()
    catalogue = CheckpointCatalogue(bank, None, clock, provider_id=PROVIDER)
    return gc.GarbageCollector(catalogue, lease, chunk_grace=600)


def test_a_live_writers_deferred_chunks_stay_and_a_killed_ones_go(tmp_path: pathlib.Path, clock: FakeClock) -> None:
    live = Writer(tmp_path, clock, "live-writer")
    live_temps = temp_files(tmp_path)
    killed = Writer(tmp_path, clock, "killed-writer")  # ... and killed here
    killed_temps = temp_files(tmp_path) - live_temps
    assert len(live_temps) == len(killed_temps) == 3
    collector = collector_of(tmp_path, clock)

    # Mid-backup, both leases still held: the sweep stands down and removes nothing.
    sweep = collector.sweep_project("proj")
    assert sweep.skipped and "is being written by" in sweep.skipped
    assert sweep.temporaries == 0
    assert temp_files(tmp_path) == live_temps | killed_temps
    # The killed writer's lease expires; the live one renews its own: still nothing goes.
    for _ in range(WINDOWS.expire // WINDOWS.renew + 1):
        clock.advance(WINDOWS.renew)
        live.lease.renew_lease()
        collector.lease.renew_lease()
    report = collector.collect()
    assert [s.skipped for s in report.sweeps] == ["checkpoint cp-live-writer is being written by live-writer"]
    assert [r.checkpoint_id for r in report.reclaimed] == [killed.cid]  # the zombie goes, its temps wait
    assert temp_files(tmp_path) == live_temps | killed_temps
    assert all(live.chunks.has(d) for d in live.digests)

    # The live writer finishes: its barrier publishes its chunks, it publishes its checkpoint.
    live.chunks.barrier()
    assert temp_files(tmp_path) == killed_temps
    assert live.catalogue.publish(live.cid, owner_id="live-writer", bytes_done=0) is None

    dry = collector.collect(dry_run=True)
    assert [s.temporaries for s in dry.sweeps] == [3]
    assert "would reclaim" in dry.summary() and "3 temp file(s)" in dry.summary()
    assert temp_files(tmp_path) == killed_temps  # a dry run removes nothing

    # The next sweep goes on (the killed writer's marker is a dead owner's): its temp files go.
    report = collector.collect()
    assert [(s.skipped, s.temporaries) for s in report.sweeps] == [(None, 3)]
    assert "reclaimed" in report.summary() and "3 temp file(s)" in report.summary()
    assert temp_files(tmp_path) == set()
    after = ChunkStore(Bank(FilesystemBank({"path": str(tmp_path)})).section(BankLayout.chunks_prefix("proj")))
    assert all(after.get(d) for d in live.digests)  # the live writer's chunks, published, are untouched
    assert not any(after.has(d) for d in killed.digests)


def test_a_failed_protect_removes_its_own_deferred_chunks(tmp_path: pathlib.Path, clock: FakeClock) -> None:
    """The release sweep of a failed protect (``finished``) runs in the writer's process, on its bank."""
    writer = Writer(tmp_path, clock, "writer")
    assert len(temp_files(tmp_path)) == 3
    collector = gc.GarbageCollector(writer.catalogue, writer.lease, chunk_grace=0)
    writer.catalogue.fail_protect(writer.cid, "the volume went away", "writer", 0, release=lambda: (
        collector.sweep_project("proj", grace=0, finished=writer.cid), None)[1])
    assert temp_files(tmp_path) == set()
    writer.chunks.barrier()  # nothing of the failed protect is left to publish
    assert writer.bank.list(BankLayout.chunks_prefix("proj") + "/") == []


def test_a_failed_protect_beside_a_live_writer_leaves_the_temp_files_alone(
        tmp_path: pathlib.Path, clock: FakeClock) -> None:
    live = Writer(tmp_path, clock, "live-writer")
    failed = Writer(tmp_path, clock, "failed-writer")
    before = temp_files(tmp_path)
    collector = gc.GarbageCollector(failed.catalogue, failed.lease, chunk_grace=0)
    sweep = collector.sweep_project("proj", grace=0, finished=failed.cid)
    assert sweep.skipped and "live-writer" in sweep.skipped
    assert temp_files(tmp_path) == before
    live.chunks.barrier()
    assert all(live.chunks.has(d) for d in live.digests)


def test_a_project_with_nothing_but_a_killed_writers_temp_files_is_swept(
        tmp_path: pathlib.Path, clock: FakeClock) -> None:
    """Its first protect was killed: no chunk is listed, the zombie's reclaim brings the sweep there."""
    Writer(tmp_path, clock, "killed-writer")
    collector = collector_of(tmp_path, clock)
    for _ in range(WINDOWS.expire // WINDOWS.renew + 1):
        clock.advance(WINDOWS.renew)
        collector.lease.renew_lease()
    report = collector.collect()
    assert [r.checkpoint_id for r in report.reclaimed] == ["cp-killed-writer"]
    assert [(s.project_id, s.skipped, s.temporaries) for s in report.sweeps] == [("proj", None, 3)]
    assert temp_files(tmp_path) == set()
