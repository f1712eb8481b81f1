from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO

import pytest
import zstandard

from strongroom import exceptions
from strongroom.bank_plugins.bank import Bank
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.block.base import BlockReader, Extent
from strongroom.block.loopback import LoopbackBackend
from strongroom.datamover import (
    ChunkStore,
    ManifestIncomplete,
    backup,
    manifest_digests,
    read_manifest_header,
    restore,
    verify,
)
from strongroom.datamover.manifest import iter_entries
from strongroom.datamover.mover import max_in_flight

from .conftest import CHUNK, CountingReader, manifest_section, write_mixed_image


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _protect(backend: LoopbackBackend, volume: str, store: ChunkStore, bank: Bank, checkpoint: str,
             **kwargs: object):  # type: ignore[no-untyped-def]
    snap = backend.create_snapshot(volume)
    try:
        with backend.reading_snapshot(snap.id) as reader:
            return backup(reader, store, manifest_section(bank, checkpoint), chunk_size=CHUNK,
                          **kwargs)  # type: ignore[arg-type]
    finally:
        backend.delete_snapshot(snap.id)


@pytest.fixture
def image(backend: LoopbackBackend) -> Path:
    path = Path(backend.options["path"]) / "vol1"
    write_mixed_image(path)
    return path


VARIANTS = [("sha256", "zstd"), ("blake3", "zstd"), ("sha256", "none")]


@pytest.mark.parametrize(("algo", "compression"), VARIANTS)
def test_round_trip_restores_identical_sparse_volume(backend: LoopbackBackend, bank: Bank, image: Path,
                                                     algo: str, compression: str) -> None:
    store = ChunkStore(bank.section("projects/p1/chunks"), hash_algo=algo, compression=compression)
    seen: list[int] = []
    result = _protect(backend, "vol1", store, bank, "c1", progress=seen.append, entries_per_part=4)
    size = image.stat().st_size
    assert sum(seen) == size
    assert result.size == size
    assert result.chunks == result.new_chunks == 24  # 8 random + 8 text + 8 half-written slots
    assert result.zero_bytes == size - 24 * CHUNK
    assert result.manifest.parts > 1
    if compression == "zstd":
        assert result.bytes_stored < result.bytes_read
    header = read_manifest_header(manifest_section(bank, "c1"))
    assert (header.size, header.chunk_size, header.hash) == (size, CHUNK, algo)

    backend.create_volume(size, name="restored")
    with backend.writing_volume("restored") as writer:
        restored = restore(manifest_section(bank, "c1"), store, writer, workers=3)
    target = Path(backend.options["path"]) / "restored"
    assert _sha256_file(target) == _sha256_file(image)
    assert restored.chunks == 24
    # Zero runs were not written: the restored image allocates no more than the chunks' bytes.
    assert target.stat().st_blocks * 512 <= 24 * CHUNK + 64 * 1024
    assert target.stat().st_blocks < image.stat().st_blocks


def test_second_backup_dedups_and_one_changed_chunk_is_one_new_chunk(
        backend: LoopbackBackend, bank: Bank, store: ChunkStore, image: Path) -> None:
    first = _protect(backend, "vol1", store, bank, "c1")
    second = _protect(backend, "vol1", store, bank, "c2")
    assert second.new_chunks == 0 and second.bytes_stored == 0
    assert second.chunks == first.chunks
    with open(image, "r+b") as f:
        f.seek(5 * CHUNK + 100)  # inside a random-data chunk
        f.write(b"changed!")
    third = _protect(backend, "vol1", store, bank, "c3")
    assert third.new_chunks == 1
    assert 0 < third.bytes_stored <= CHUNK
    assert set(manifest_digests(manifest_section(bank, "c3"))) <= set(store.iter_digests())


def test_corrupt_chunk_fails_restore_and_is_reported_by_verify(
        backend: LoopbackBackend, bank: Bank, store: ChunkStore, image: Path) -> None:
    _protect(backend, "vol1", store, bank, "c1")
    section = manifest_section(bank, "c1")
    assert verify(section, store).errors == []
    victim = sorted(set(manifest_digests(section)))[3]
    bank.put(f"projects/p1/chunks/{victim[:2]}/{victim}", b"bit rot")

    backend.create_volume(image.stat().st_size, name="restored")
    with backend.writing_volume("restored") as writer:
        with pytest.raises(exceptions.DataIntegrityError, match=rf"chunk {victim} at offset \d+"):
            restore(section, store, writer)

    result = verify(section, store)
    assert result.chunks_checked == 24
    assert len(result.errors) == 1 and victim in result.errors[0]

    store.delete(victim)
    result = verify(section, store)
    assert len(result.errors) == 1 and "missing" in result.errors[0]


def test_verify_sample_checks_a_fraction(backend: LoopbackBackend, bank: Bank, store: ChunkStore,
                                         image: Path) -> None:
    _protect(backend, "vol1", store, bank, "c1")
    result = verify(manifest_section(bank, "c1"), store, sample=0.5, seed=1)
    assert 0 < result.chunks_checked < 24
    assert result.errors == []


def test_incomplete_or_damaged_manifest_is_refused(backend: LoopbackBackend, bank: Bank, store: ChunkStore,
                                                   image: Path) -> None:
    _protect(backend, "vol1", store, bank, "c1", entries_per_part=4)
    section = manifest_section(bank, "c1")
    bank.put(f"{section.prefix}parts/00000001", b"\x28\xb5\x2f\xfd broken")
    with pytest.raises(ManifestIncomplete, match="parts/00000001"):
        verify(section, store)
    section.delete("manifest.json")
    backend.create_volume(image.stat().st_size, name="restored")
    with backend.writing_volume("restored") as writer:
        with pytest.raises(ManifestIncomplete, match="manifest.json is missing"):
            restore(section, store, writer)
    with pytest.raises(ManifestIncomplete):
        verify(section, store)
    with pytest.raises(ManifestIncomplete):
        list(manifest_digests(section))
    # garbage collection can still learn which chunks an unfinished backup wrote
    assert set(manifest_digests(section, allow_incomplete=True)) <= set(store.iter_digests())


def test_restore_refuses_a_smaller_target(backend: LoopbackBackend, bank: Bank, store: ChunkStore,
                                          image: Path) -> None:
    _protect(backend, "vol1", store, bank, "c1")
    backend.create_volume(CHUNK, name="small")
    with backend.writing_volume("small") as writer:
        with pytest.raises(exceptions.InvalidInput, match="target"):
            restore(manifest_section(bank, "c1"), store, writer)


def test_restore_with_zero_fill_overwrites_old_data(backend: LoopbackBackend, bank: Bank, store: ChunkStore,
                                                    image: Path) -> None:
    _protect(backend, "vol1", store, bank, "c1")
    target = Path(backend.options["path"]) / "used"
    target.write_bytes(b"\xff" * image.stat().st_size)
    with backend.writing_volume("used") as writer:
        restore(manifest_section(bank, "c1"), store, writer, zero_fill=True)
    assert _sha256_file(target) == _sha256_file(image)


def test_restore_and_verify_report_the_bytes_they_read_and_write(backend: LoopbackBackend, bank: Bank,
                                                                 store: ChunkStore, image: Path) -> None:
    _protect(backend, "vol1", store, bank, "c1")
    section = manifest_section(bank, "c1")
    header = read_manifest_header(section)
    chunks = [e for e in iter_entries(section, header) if e.digest is not None]
    chunk_bytes = sum(e.length for e in chunks)
    assert 0 < chunk_bytes < header.size  # the mixed image has zero runs: never stored, never read

    def counting() -> tuple[list[int], Callable[[int, int], None]]:
        totals = [0, 0]

        def add(read: int, written: int) -> None:
            totals[0] += read
            totals[1] += written

        return totals, add

    sparse, add = counting()
    backend.create_volume(header.size, name="new")
    with backend.writing_volume("new") as writer:
        result = restore(section, store, writer, transferred=add)
    assert sparse == [chunk_bytes, result.bytes_written]
    assert result.bytes_written <= chunk_bytes  # zero blocks inside chunks stay holes

    whole, add = counting()
    (Path(backend.options["path"]) / "used").write_bytes(b"\xff" * header.size)
    with backend.writing_volume("used") as writer:
        restore(section, store, writer, zero_fill=True, transferred=add)
    assert whole == [chunk_bytes, header.size]  # every byte of the old data overwritten

    checked, add = counting()
    verify(section, store, transferred=add)
    assert checked == [chunk_bytes, 0]
    gone = chunks[0].digest
    assert gone is not None
    store.delete(gone)
    checked, add = counting()
    assert verify(section, store, transferred=add).errors
    assert checked == [chunk_bytes - sum(e.length for e in chunks if e.digest == gone), 0]  # nothing read of it


class FakeSparseReader(BlockReader):
    """A test double: a huge sparse device with a few data extents, generated on read.

    It counts, at every read, how many data slots have been read but not yet
    reported done through ``progress`` -- the chunks the mover holds in flight.
    """

    def __init__(self, size: int, extents: list[Extent], chunk_size: int) -> None:
        self.size = size
        self.extents = extents
        self.chunk_size = chunk_size
        self.done_bytes = 0
        self.read_slots: set[int] = set()
        self.max_in_flight = 0
        self.lock = threading.Lock()

    def allocated_extents(self) -> Iterator[Extent]:
        return iter(self.extents)

    def progress(self, n: int) -> None:
        with self.lock:
            self.done_bytes += n

    def read(self, offset: int, length: int) -> bytes:
        with self.lock:
            self.read_slots.add(offset // self.chunk_size)
            in_flight = sum(1 for s in self.read_slots if s * self.chunk_size >= self.done_bytes)
            self.max_in_flight = max(self.max_in_flight, in_flight)
        seed = hashlib.sha256(str(offset).encode()).digest()
        return (seed * (length // len(seed) + 1))[:length]


def test_backup_prefetches_what_it_reads_a_bounded_way_ahead(
        backend: LoopbackBackend, bank: Bank, store: ChunkStore, image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every range read was hinted first; the hints run ahead of the reads by about PREFETCH_AHEAD (here 4
    slots), never much further; holes are never hinted."""
    from strongroom.datamover import mover

    monkeypatch.setattr(mover, "PREFETCH_AHEAD", 4 * CHUNK)
    size = image.stat().st_size
    with backend.open_volume_reader("vol1") as inner:
        reader = CountingReader(inner)
        result = backup(reader, store, manifest_section(bank, "hinted"), chunk_size=CHUNK, workers=2)
        allocated = list(inner.allocated_extents())
    assert reader.unprefetched_reads() == []
    assert sum(n for _, n in reader.prefetched) == result.bytes_read == sum(n for _, n in reader.reads)
    assert all(any(e.offset <= start and start + n <= e.end for e in allocated) for start, n in reader.prefetched)
    assert reader.hinted_at_read[0] > 4 * CHUNK  # the first read waits for the first window of hints
    for (offset, _), hinted in zip(reader.reads, reader.hinted_at_read, strict=True):
        slots_read_before = offset // CHUNK
        assert hinted <= (slots_read_before + 5 + max_in_flight(2) + 1) * CHUNK, (offset, hinted)
    assert result.size == size


def test_huge_sparse_volume_reads_only_its_data_and_is_memory_bounded(bank: Bank, store: ChunkStore) -> None:
    """64 GiB, of which 92 MiB hold data: only those slots are read (no timing here: its speed is the
    benchmarks'; a hole read would show in ``read_slots``), with at most the pool's bound in flight."""
    mib, gib = 1 << 20, 1 << 30
    chunk = 4 * mib
    # 5 slots, 1 slot, 16 slots in a row, 1 short slot at the end
    extents = [Extent(0, 6 * mib), Extent(7 * mib, 12 * mib), Extent(10 * gib + 5, 3 * mib),
               Extent(40 * gib, 64 * mib), Extent(64 * gib - 100_000, 100_000)]
    reader = FakeSparseReader(64 * gib, extents, chunk)
    result = backup(reader, store, manifest_section(bank), chunk_size=chunk, workers=2,
                    progress=reader.progress)
    assert reader.done_bytes == 64 * gib
    assert 0 < reader.max_in_flight <= max_in_flight(2)
    assert result.chunks == len(reader.read_slots) == 5 + 1 + 16 + 1
    assert result.bytes_read == sum(e.length for e in extents)
    assert result.zero_bytes == 64 * gib - 23 * chunk


def test_should_stop_stops_promptly_without_a_header(bank: Bank, store: ChunkStore) -> None:
    mib = 1 << 20
    reader = FakeSparseReader(1 << 30, [Extent(0, 1 << 30)], mib)
    polls = 0

    def should_stop() -> bool:
        nonlocal polls
        polls += 1
        return polls > 5

    with pytest.raises(exceptions.ProtectionError, match="stopped"):
        backup(reader, store, manifest_section(bank), chunk_size=mib, should_stop=should_stop)
    assert len(reader.read_slots) <= 5 + max_in_flight(2)
    assert not manifest_section(bank).exists("manifest.json")


def test_allocated_all_zero_slots_are_zero_runs(bank: Bank, store: ChunkStore, tmp_path: Path) -> None:
    backend = LoopbackBackend({"path": str(tmp_path / "v")})
    backend.create_volume(8 * CHUNK, name="z")
    with backend.writing_volume("z") as writer:
        writer.write(0, bytes(8 * CHUNK))
        writer.write(3 * CHUNK, b"x")
    with backend.reading_snapshot(backend.create_snapshot("z").id) as reader:
        result = backup(reader, store, manifest_section(bank), chunk_size=CHUNK)
    assert result.chunks == 1
    assert result.zero_bytes == 7 * CHUNK
    assert len(list(store.iter_digests())) == 1
    assert os.path.exists(tmp_path / "v" / "z")


class RecordingBank(MemoryBank):
    """A real in-memory bank that also remembers the order of writes."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[str] = []

    def put_object(self, key: str, data: bytes | IO[bytes],
                   metadata: Mapping[str, str] | None = None) -> None:
        self.puts.append(key)
        super().put_object(key, data, metadata)


def test_write_order_is_chunks_then_parts_then_header(backend: LoopbackBackend, image: Path) -> None:
    plugin = RecordingBank()
    bank = Bank(plugin)
    store = ChunkStore(bank.section("projects/p1/chunks"))
    _protect(backend, "vol1", store, bank, "c1", entries_per_part=2)
    kinds = ["chunk" if "/chunks/" in k else "header" if k.endswith("manifest.json") else "part"
             for k in plugin.puts]
    assert kinds[-1] == "header" and kinds.count("header") == 1
    # every part is written after the chunks it lists
    section = manifest_section(bank, "c1")
    for index in range(read_manifest_header(section).parts):
        part_at = plugin.puts.index(f"{section.prefix}parts/{index:08d}")
        decoded = zstandard.ZstdDecompressor().decompress(section.get(f"parts/{index:08d}")).decode()
        for line in decoded.splitlines():
            digest = json.loads(line)[2]
            if digest:
                assert plugin.puts.index(f"projects/p1/chunks/{digest[:2]}/{digest}") < part_at


def test_zero_blocks_inside_a_chunk_stay_holes_on_restore(backend: LoopbackBackend, bank: Bank,
                                                          store: ChunkStore) -> None:
    backend.create_volume(2 * CHUNK, name="src")
    with backend.writing_volume("src") as writer:
        writer.write(0, b"a" * 4096)
        writer.write(CHUNK - 4096, b"b" * 4096)  # one chunk: data, 56 KiB of zeros, data
    with backend.reading_snapshot(backend.create_snapshot("src").id) as reader:
        result = backup(reader, store, manifest_section(bank), chunk_size=CHUNK)
    assert result.chunks == 1
    backend.create_volume(2 * CHUNK, name="dst")
    with backend.writing_volume("dst") as writer:
        restored = restore(manifest_section(bank), store, writer)
    assert restored.bytes_written == 8192
    base = Path(backend.options["path"])
    assert (base / "dst").read_bytes() == (base / "src").read_bytes()
    assert (base / "dst").stat().st_blocks * 512 <= 16384
