"""Incremental backups on the memory block backend (exact change tracking) and a real in-memory bank.

The proof that no change is missed runs on every backend in the conformance suite
(``strongroom.testing.block_changes``); here the mover's own rules: unchanged slots are never read, the
manifest is the one a full backup would write, and a parent it cannot build on makes it read everything
and say why.
"""

from __future__ import annotations

import random

import pytest

from strongroom.bank_plugins.bank import Bank
from strongroom.block.base import Extent
from strongroom.block.memory import MemoryBlockBackend
from strongroom.datamover import ChunkStore, backup, restore
from strongroom.datamover import incremental as inc
from strongroom.datamover.manifest import HEADER_KEY, iter_entries

from .conftest import CHUNK, CountingReader, manifest_section

SIZE = 40 * CHUNK - 1000  # the last slot is short


def _write(backend: MemoryBlockBackend, volume_id: str, offset: int, data: bytes) -> None:
    with backend.writing_volume(volume_id) as writer:
        writer.write(offset, data)


def _entries(bank: Bank, checkpoint: str) -> list[tuple[int, int, str | None]]:
    return [(e.offset, e.length, e.digest) for e in iter_entries(manifest_section(bank, checkpoint))]


def _restored(bank: Bank, store: ChunkStore, checkpoint: str) -> bytes:
    target = MemoryBlockBackend()
    volume = target.create_volume(SIZE)
    with target.writing_volume(volume.id) as writer:
        restore(manifest_section(bank, checkpoint), store, writer)
    with target.open_volume_reader(volume.id) as reader:
        return reader.read(0, SIZE)


class Chain:
    """Protects of one memory volume in a row, each built on the one before."""

    def __init__(self, bank: Bank, store: ChunkStore) -> None:
        self.bank, self.store = bank, store
        self.backend = MemoryBlockBackend()
        self.volume = self.backend.create_volume(SIZE)
        self.snapshots: list[str] = []

    def protect(self, checkpoint: str, *, incremental: bool = True) -> tuple[object, CountingReader]:
        snapshot = self.backend.create_snapshot(self.volume.id)
        parent = None
        if incremental and self.snapshots:
            changed = self.backend.changed_extents(snapshot.id, self.snapshots[-1])
            assert changed is not None
            parent = inc.Parent(manifest_section(self.bank, f"c{len(self.snapshots) - 1}"), list(changed))
        self.snapshots.append(snapshot.id)
        with self.backend.reading_snapshot(snapshot.id) as inner:
            reader = CountingReader(inner)
            result = backup(reader, self.store, manifest_section(self.bank, checkpoint), chunk_size=CHUNK,
                            parent=parent)
        return result, reader

    def snapshot_bytes(self, index: int) -> bytes:
        with self.backend.reading_snapshot(self.snapshots[index]) as reader:
            return reader.read(0, SIZE)


def test_random_changes_incrementals_in_a_row_restore_byte_for_byte(bank: Bank, store: ChunkStore) -> None:
    rng = random.Random(5)
    chain = Chain(bank, store)
    _write(chain.backend, chain.volume.id, 0, rng.randbytes(SIZE // 2))
    chain.protect("c0")
    for round_ in range(1, 8):
        for _ in range(rng.randint(1, 5)):
            length = rng.choice((1, 100, 4096, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5))
            offset = rng.choice((rng.randrange(0, SIZE - length), rng.randrange(1, 40) * CHUNK - length // 2))
            offset = min(max(offset, 0), SIZE - length)
            if rng.random() < 0.2:
                with chain.backend.writing_volume(chain.volume.id) as writer:
                    writer.write_zeros(offset, length)
            else:
                _write(chain.backend, chain.volume.id, offset, rng.randbytes(length))
        result, _ = chain.protect(f"c{round_}")
        assert result.mode == "incremental" and result.full_reason is None  # type: ignore[attr-defined]
    # Every checkpoint restores to its own snapshot, and its manifest is what a full backup writes.
    for index in range(8):
        assert _restored(bank, store, f"c{index}") == chain.snapshot_bytes(index), f"checkpoint c{index}"
    with chain.backend.reading_snapshot(chain.snapshots[-1]) as reader:
        backup(reader, store, manifest_section(bank, "full"), chunk_size=CHUNK)
    assert _entries(bank, "c7") == _entries(bank, "full")


def test_unchanged_slots_are_never_read(bank: Bank, store: ChunkStore) -> None:
    chain = Chain(bank, store)
    _write(chain.backend, chain.volume.id, 0, random.Random(1).randbytes(SIZE))
    full, _ = chain.protect("c0")
    _write(chain.backend, chain.volume.id, 5 * CHUNK + 10, b"x" * 20)  # one slot
    _write(chain.backend, chain.volume.id, 9 * CHUNK - 3, b"y" * 6)  # across two
    result, reader = chain.protect("c1")
    assert {offset // CHUNK for offset, _ in reader.reads} == {5, 8, 9}
    assert result.bytes_read == 3 * CHUNK  # type: ignore[attr-defined]
    assert result.reused_chunks == full.chunks - 3  # type: ignore[attr-defined]
    nothing, reader = chain.protect("c2")
    assert reader.reads == [] and nothing.bytes_read == 0 and nothing.bytes_stored == 0  # type: ignore[attr-defined]
    assert _restored(bank, store, "c2") == chain.snapshot_bytes(2)


def test_an_incremental_prefetches_the_slots_it_reads_and_no_other(bank: Bank, store: ChunkStore) -> None:
    chain = Chain(bank, store)
    _write(chain.backend, chain.volume.id, 0, random.Random(1).randbytes(SIZE))
    chain.protect("c0")
    for offset in (5 * CHUNK + 10, 9 * CHUNK - 3, 30 * CHUNK):
        _write(chain.backend, chain.volume.id, offset, b"z" * 6)
    _, reader = chain.protect("c1")
    assert {offset // CHUNK for offset, _ in reader.prefetched} == {5, 8, 9, 30}
    assert reader.unprefetched_reads() == []


def test_deleting_the_parent_leaves_the_child_whole(bank: Bank, store: ChunkStore) -> None:
    chain = Chain(bank, store)
    _write(chain.backend, chain.volume.id, 0, random.Random(2).randbytes(SIZE))
    chain.protect("c0")
    _write(chain.backend, chain.volume.id, CHUNK, b"z" * CHUNK)
    chain.protect("c1")
    parent = manifest_section(bank, "c0")
    for key in parent.list():
        parent.delete(key)
    assert _restored(bank, store, "c1") == chain.snapshot_bytes(1)


@pytest.mark.parametrize("damage, reason", [
    ("header", inc.PARENT_UNREADABLE),
    ("chunk", inc.PARENT_CHUNKS_MISSING),
    ("resize", inc.RESIZED),
    ("chunk_size", inc.CHUNK_SETTINGS),
])
def test_a_parent_it_cannot_build_on_means_a_full_read_that_says_why(
        bank: Bank, store: ChunkStore, damage: str, reason: str) -> None:
    chain = Chain(bank, store)
    _write(chain.backend, chain.volume.id, 0, random.Random(3).randbytes(SIZE))
    chain.protect("c0")
    parent = manifest_section(bank, "c0")
    if damage == "header":
        parent.delete(HEADER_KEY)
    elif damage == "chunk":
        digest = next(d for _, _, d in _entries(bank, "c0") if d)
        store.delete(digest)
    snapshot = chain.backend.create_snapshot(chain.volume.id)
    size, chunk = SIZE, CHUNK
    if damage == "resize":
        chain.backend.extend_volume(chain.volume.id, SIZE + CHUNK)
        snapshot = chain.backend.create_snapshot(chain.volume.id)
        size = SIZE + CHUNK
    if damage == "chunk_size":
        chunk = 2 * CHUNK
    with chain.backend.reading_snapshot(snapshot.id) as reader:
        result = backup(reader, store, manifest_section(bank, "c1"), chunk_size=chunk,
                        parent=inc.Parent(parent, [], name="checkpoint c0"))
    assert result.mode == "full" and result.full_reason is not None
    assert result.full_reason.startswith(reason), result.full_reason
    assert result.bytes_read >= SIZE  # everything allocated was read
    with chain.backend.reading_snapshot(snapshot.id) as reader:
        expected = reader.read(0, size)
    target = MemoryBlockBackend()
    volume = target.create_volume(size)
    with target.writing_volume(volume.id) as writer:
        restore(manifest_section(bank, "c1"), store, writer)
    with target.open_volume_reader(volume.id) as reader:
        assert reader.read(0, size) == expected


def test_a_changed_extent_outside_the_volume_is_refused(bank: Bank, store: ChunkStore) -> None:
    chain = Chain(bank, store)
    _write(chain.backend, chain.volume.id, 0, b"a" * 10)
    chain.protect("c0")
    snapshot = chain.backend.create_snapshot(chain.volume.id)
    with chain.backend.reading_snapshot(snapshot.id) as reader, pytest.raises(Exception) as info:
        backup(reader, store, manifest_section(bank, "c1"), chunk_size=CHUNK,
               parent=inc.Parent(manifest_section(bank, "c0"), [Extent(SIZE - 1, 2)]))
    assert "outside the volume" in str(info.value)
