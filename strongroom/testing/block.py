"""Conformance suite for block backends (after Flocker's ``make_iblockdeviceapi_tests``).

A backend author subclasses :class:`BlockBackendConformance` in a test module
and provides a factory::

    from strongroom.testing.block import BlockBackendConformance

    class TestMyBackend(BlockBackendConformance):
        def make_backend(self, tmp_path):
            return MyBackend({"endpoint": ..., "password": ...})

pytest then runs every ``test_*`` method below against it.  Class attributes
tune the suite for what a backend can promise (see their comments).  Each test
gets a fresh backend from ``make_backend`` and cleans up the volumes and
snapshots it made, so the suite can run against a shared real system too.

Volumes are a few MiB; one test creates a 1 GiB volume and relies on it being
sparse (skipped when ``sparse = False``).  The crash contracts (staged volumes,
snapshot tags, ``reclaim_leftovers``) are in :mod:`strongroom.testing.block_staging`, the
overwrite and placement contracts in :mod:`strongroom.testing.block_overwrite`, changed-block tracking
and growth in :mod:`strongroom.testing.block_changes`, all part of the same class.
"""

from __future__ import annotations

import os
import pathlib
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from strongroom import exceptions
from strongroom.block.base import BackendStats, BlockBackend, BlockReader, Extent, Snapshot, Volume
from strongroom.testing.block_changes import ChangedBlocksConformance, check_extents
from strongroom.testing.block_overwrite import OverwriteConformance
from strongroom.testing.block_staging import StagingConformance

MiB = 1 << 20
GiB = 1 << 30
UNKNOWN_ID = "00000000-0000-4000-8000-00000000dead"


def pattern(length: int, seed: int = 1) -> bytes:
    """Deterministic non-zero bytes, distinct per seed (so a misplaced write is visible)."""
    block = bytes(((i * 31 + seed * 17) % 255) + 1 for i in range(4096))
    return (block * (length // len(block) + 1))[:length]


def read_all(reader: BlockReader, chunk: int = MiB) -> bytes:
    parts = []
    offset = 0
    while offset < reader.size:
        data = reader.read(offset, min(chunk, reader.size - offset))
        assert data, f"short read at offset {offset} of {reader.size}"
        parts.append(data)
        offset += len(data)
    return b"".join(parts)


def extents_of(reader: BlockReader) -> list[Extent]:
    return list(reader.allocated_extents())


def assert_well_formed(extents: list[Extent], size: int) -> None:
    """Ascending, non-overlapping, non-empty, within the device."""
    check_extents(extents, size, "allocated extents")


def covered(extents: list[Extent], offset: int, length: int) -> bool:
    """Whether ``[offset, offset + length)`` lies within the union of ``extents``."""
    pos, end = offset, offset + length
    for extent in extents:
        if extent.end <= pos:
            continue
        if extent.offset > pos:
            return False
        pos = extent.end
        if pos >= end:
            return True
    return pos >= end


class OwnBackend:
    """A ``backend`` fixture for a backend's own tests beside the suite: ``make_backend`` (the class's),
    closed after the test, without the suite's clean-up of what the test left."""

    def make_backend(self, tmp_path: pathlib.Path) -> BlockBackend:
        raise NotImplementedError

    @pytest.fixture
    def backend(self, tmp_path: pathlib.Path) -> Iterator[Any]:
        backend = self.make_backend(tmp_path)
        try:
            yield backend
        finally:
            backend.close()


class BlockBackendConformance(StagingConformance, OverwriteConformance, ChangedBlocksConformance):
    """Every behaviour the protection engine relies on.  Subclass it and define :meth:`make_backend`."""

    #: The backend keeps unwritten regions unallocated; allocated extents of a mostly empty volume are small.
    sparse: ClassVar[bool] = True
    #: Name of a secret option the backend accepts (added to its options by :meth:`make_backend_with`);
    #: None skips the credential-leak check.
    secret_option: ClassVar[str | None] = None
    #: Size of the ordinary volumes the suite creates.
    volume_size: ClassVar[int] = 4 * MiB

    # -- hooks for subclasses ------------------------------------------------

    def make_backend(self, tmp_path: pathlib.Path) -> BlockBackend:
        """A fresh backend; ``tmp_path`` is a per-test empty directory it may use."""
        raise NotImplementedError

    def make_backend_with(self, tmp_path: pathlib.Path, extra_options: dict[str, Any]) -> BlockBackend:
        """A backend like :meth:`make_backend`'s with ``extra_options`` added.  Override if needed."""
        base = self.make_backend(tmp_path)
        options = {**base.options, **extra_options}
        base.close()
        return type(base)(options)

    # -- fixtures ------------------------------------------------------------

    @pytest.fixture
    def backend(self, tmp_path: pathlib.Path) -> Iterator[BlockBackend]:
        backend = self.make_backend(tmp_path)
        before_volumes = {v.id for v in backend.list_volumes() + backend.list_staged_volumes()}
        before_snapshots = {s.id for s in backend.list_snapshots()}
        try:
            yield backend
        finally:
            for snap in backend.list_snapshots():
                if snap.id not in before_snapshots:
                    backend.delete_snapshot(snap.id)
            for staged in backend.list_staged_volumes():
                if staged.id not in before_volumes:
                    backend.discard_volume(staged.id)
            for vol in backend.list_volumes():
                if vol.id not in before_volumes:
                    backend.destroy_volume(vol.id)
            backend.close()

    def _write(self, backend: BlockBackend, volume: Volume, offset: int, data: bytes) -> None:
        with backend.writing_volume(volume.id) as writer:
            writer.write(offset, data)
            writer.flush()

    def _read_volume(self, backend: BlockBackend, volume: Volume) -> bytes:
        reader = backend.open_volume_reader(volume.id)
        try:
            return read_all(reader)
        finally:
            reader.close()

    def _read_snapshot(self, backend: BlockBackend, snapshot: Snapshot) -> bytes:
        with backend.reading_snapshot(snapshot.id) as reader:
            return read_all(reader)

    # -- volumes -------------------------------------------------------------

    def test_create_list_get_destroy(self, backend: BlockBackend) -> None:
        volume = backend.create_volume(self.volume_size)
        assert volume.size == self.volume_size
        assert volume.id
        got = backend.get_volume(volume.id)
        assert (got.id, got.name, got.size) == (volume.id, volume.name, self.volume_size)
        assert volume.id in [v.id for v in backend.list_volumes()]
        backend.destroy_volume(volume.id)
        assert volume.id not in [v.id for v in backend.list_volumes()]
        with pytest.raises(exceptions.VolumeNotFound):
            backend.get_volume(volume.id)

    def test_list_volumes_sorted_by_id(self, backend: BlockBackend) -> None:
        for _ in range(3):
            backend.create_volume(MiB)
        ids = [v.id for v in backend.list_volumes()]
        assert ids == sorted(ids)

    @pytest.mark.parametrize("name", ["a\nb", "x\nERROR forged", "a\x1b[31m", "a\x00b", "a\x85b", "txt\u202egpj"])
    def test_unprintable_names_refused(self, backend: BlockBackend, name: str) -> None:
        """A volume's name is shown in listings and logs: control and bidi characters are refused."""
        with pytest.raises(exceptions.InvalidInput):
            backend.create_volume(MiB, name=name)
        assert all(v.name != name for v in backend.list_volumes())

    def test_named_volume_and_duplicate_name(self, backend: BlockBackend) -> None:
        volume = backend.create_volume(MiB, name="conformance-named")
        assert volume.name == "conformance-named"
        assert backend.get_volume(volume.id).name == "conformance-named"
        with pytest.raises(exceptions.VolumeExists):
            backend.create_volume(MiB, name="conformance-named")

    @pytest.mark.parametrize("size", [0, -1])
    def test_invalid_size_rejected(self, backend: BlockBackend, size: int) -> None:
        with pytest.raises(exceptions.InvalidInput):
            backend.create_volume(size)

    def test_unknown_volume(self, backend: BlockBackend) -> None:
        with pytest.raises(exceptions.VolumeNotFound) as info:
            backend.get_volume(UNKNOWN_ID)
        assert UNKNOWN_ID in str(info.value)
        with pytest.raises(exceptions.VolumeNotFound):
            backend.destroy_volume(UNKNOWN_ID)
        with pytest.raises(exceptions.VolumeNotFound):
            backend.create_snapshot(UNKNOWN_ID)
        with pytest.raises(exceptions.VolumeNotFound):
            backend.open_volume_reader(UNKNOWN_ID)
        with pytest.raises(exceptions.VolumeNotFound):
            backend.open_volume_writer(UNKNOWN_ID)

    def test_unknown_snapshot(self, backend: BlockBackend) -> None:
        with pytest.raises(exceptions.SnapshotNotFound) as info:
            backend.open_snapshot(UNKNOWN_ID)
        assert UNKNOWN_ID in str(info.value)

    # -- data ----------------------------------------------------------------

    def test_new_volume_reads_zeros(self, backend: BlockBackend) -> None:
        volume = backend.create_volume(self.volume_size)
        assert self._read_volume(backend, volume) == bytes(self.volume_size)

    @pytest.mark.parametrize("offset", [0, 1, 4095, 4096 + 17, MiB - 3])
    def test_write_read_round_trip(self, backend: BlockBackend, offset: int) -> None:
        volume = backend.create_volume(self.volume_size)
        data = pattern(100_003, seed=offset % 251)
        self._write(backend, volume, offset, data)
        expected = bytearray(self.volume_size)
        expected[offset : offset + len(data)] = data
        assert self._read_volume(backend, volume) == bytes(expected)
        reader = backend.open_volume_reader(volume.id)
        try:
            assert reader.read(offset, len(data)) == data
            assert reader.read(offset + 5, 10) == data[5:15]
        finally:
            reader.close()

    def test_write_pieces_writes_them_end_to_end(self, backend: BlockBackend) -> None:
        """What the data mover's restore sends: neighbouring chunks (bytes and views into them) in one call,
        more pieces than one ``pwritev`` takes, and pieces written from several threads when the writer says
        it takes them."""
        volume = backend.create_volume(self.volume_size)
        data = pattern(2 * MiB + 4096, seed=5)
        sizes = [1, 4095, 0, 513, 7, 100] * 400  # 2400 pieces, 1.9 MB
        pieces: list[bytes | memoryview] = []
        pos = 4096
        for n, size in enumerate(sizes):
            piece = data[pos:pos + size]
            pieces.append(memoryview(piece) if n % 2 else piece)
            pos += size
        last = pattern(3 * 4096, seed=6)
        with backend.writing_volume(volume.id) as writer:
            half = len(pieces) // 2
            spans = [(4096, pieces[:half]), (4096 + sum(sizes[:half]), pieces[half:])]
            threads = [threading.Thread(target=writer.write_pieces, args=span) for span in spans]
            if writer.parallel_writes:
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
            else:
                for start, part in spans:
                    writer.write_pieces(start, part)
            writer.write_pieces(self.volume_size - len(last), [last])
            with pytest.raises(exceptions.InvalidInput):
                writer.write_pieces(self.volume_size - 4096, [last[:4096], b"x"])
        expected = bytearray(self.volume_size)
        expected[4096:pos] = data[4096:pos]
        expected[self.volume_size - len(last):] = last
        assert self._read_volume(backend, volume) == bytes(expected)

    def test_overwrite_keeps_neighbours(self, backend: BlockBackend) -> None:
        volume = backend.create_volume(self.volume_size)
        self._write(backend, volume, 0, pattern(3 * 4096, seed=1))
        self._write(backend, volume, 4096 + 10, pattern(20, seed=2))
        expected = bytearray(pattern(3 * 4096, seed=1))
        expected[4096 + 10 : 4096 + 30] = pattern(20, seed=2)
        reader = backend.open_volume_reader(volume.id)
        try:
            assert reader.read(0, 3 * 4096) == bytes(expected)
        finally:
            reader.close()

    def test_read_is_short_only_at_the_end(self, backend: BlockBackend) -> None:
        volume = backend.create_volume(MiB)
        self._write(backend, volume, MiB - 10, pattern(10))
        reader = backend.open_volume_reader(volume.id)
        try:
            assert reader.size == MiB
            assert reader.read(MiB - 10, 100) == pattern(10)
            assert reader.read(MiB, 100) == b""
        finally:
            reader.close()

    @pytest.mark.parametrize(("offset", "length"), [(4 * MiB - 10, 11), (4 * MiB, 1), (5 * MiB, 1), (-1, 1)])
    def test_write_past_the_end_rejected(self, backend: BlockBackend, offset: int, length: int) -> None:
        volume = backend.create_volume(4 * MiB)
        with backend.writing_volume(volume.id) as writer:
            assert writer.size == 4 * MiB
            with pytest.raises(exceptions.InvalidInput):
                writer.write(offset, pattern(length))
            writer.write(4 * MiB - 10, pattern(10))  # exactly up to the end is fine
        assert backend.get_volume(volume.id).size == 4 * MiB

    def test_writer_and_reader_close_are_idempotent(self, backend: BlockBackend) -> None:
        volume = backend.create_volume(MiB)
        writer = backend.open_volume_writer(volume.id)
        writer.write(0, b"x")
        writer.close()
        writer.close()
        reader = backend.open_volume_reader(volume.id)
        assert reader.read(0, 1) == b"x"
        reader.close()
        reader.close()

    # -- snapshots -----------------------------------------------------------

    def test_snapshot_is_point_in_time(self, backend: BlockBackend) -> None:
        volume = backend.create_volume(self.volume_size)
        before = pattern(64 * 1024, seed=3)
        self._write(backend, volume, 12345, before)
        snapshot = backend.create_snapshot(volume.id)
        assert snapshot.volume_id == volume.id
        assert snapshot.size == self.volume_size
        after = pattern(200 * 1024, seed=4)
        self._write(backend, volume, 0, after)
        self._write(backend, volume, self.volume_size - 5, b"later")

        expected = bytearray(self.volume_size)
        expected[12345 : 12345 + len(before)] = before
        assert self._read_snapshot(backend, snapshot) == bytes(expected)
        with backend.reading_snapshot(snapshot.id) as reader:
            assert reader.size == self.volume_size
        # ... and the volume has the new data.
        current = self._read_volume(backend, volume)
        assert current[: len(after)] == after
        assert current[-5:] == b"later"

    def test_snapshots_listed_per_volume(self, backend: BlockBackend) -> None:
        first = backend.create_volume(MiB)
        second = backend.create_volume(MiB)
        s1 = backend.create_snapshot(first.id)
        s2 = backend.create_snapshot(first.id)
        s3 = backend.create_snapshot(second.id)
        assert s1.id != s2.id
        assert [s.id for s in backend.list_snapshots(first.id)] == sorted([s1.id, s2.id])
        assert [s.id for s in backend.list_snapshots(second.id)] == [s3.id]
        all_ids = [s.id for s in backend.list_snapshots()]
        assert all_ids == sorted(all_ids)
        assert {s1.id, s2.id, s3.id} <= set(all_ids)
        snapshot_ids = set(all_ids)
        assert not snapshot_ids & {v.id for v in backend.list_volumes()}, "snapshots listed as volumes"

    def test_delete_snapshot_is_idempotent(self, backend: BlockBackend) -> None:
        volume = backend.create_volume(MiB)
        snapshot = backend.create_snapshot(volume.id)
        backend.delete_snapshot(snapshot.id)
        backend.delete_snapshot(snapshot.id)
        backend.delete_snapshot(UNKNOWN_ID)
        assert snapshot.id not in [s.id for s in backend.list_snapshots()]
        with pytest.raises(exceptions.SnapshotNotFound):
            backend.open_snapshot(snapshot.id)

    def test_destroy_volume_with_snapshots(self, backend: BlockBackend) -> None:
        """Either refused with ``Conflict`` (volume intact) or allowed (snapshot still readable)."""
        volume = backend.create_volume(MiB)
        self._write(backend, volume, 0, pattern(4096))
        snapshot = backend.create_snapshot(volume.id)
        try:
            backend.destroy_volume(volume.id)
        except exceptions.Conflict as err:
            assert snapshot.id in str(err), "the refusal should name the snapshots in the way"
            assert backend.get_volume(volume.id).id == volume.id
        else:
            with pytest.raises(exceptions.VolumeNotFound):
                backend.get_volume(volume.id)
        assert self._read_snapshot(backend, snapshot)[:4096] == pattern(4096)

    # -- extents -------------------------------------------------------------

    def test_allocated_extents_cover_written_bytes(self, backend: BlockBackend) -> None:
        volume = backend.create_volume(self.volume_size)
        writes = [(0, 10), (4095, 2), (100_000, 70_000), (MiB + 1, 1), (self.volume_size - 3, 3)]
        for seed, (offset, length) in enumerate(writes, start=1):
            self._write(backend, volume, offset, pattern(length, seed))
        snapshot = backend.create_snapshot(volume.id)
        readers = [backend.open_volume_reader(volume.id), backend.open_snapshot(snapshot.id)]
        try:
            for reader in readers:
                extents = extents_of(reader)
                assert_well_formed(extents, reader.size)
                for offset, length in writes:
                    assert covered(extents, offset, length), f"[{offset}, +{length}) not in {extents}"
                # Outside the extents everything reads as zeros.
                data = read_all(reader)
                pos = 0
                for extent in extents + [Extent(reader.size, 0)]:
                    assert data[pos : extent.offset] == bytes(extent.offset - pos)
                    pos = extent.end
        finally:
            for reader in readers:
                reader.close()

    def test_small_write_allocates_little(self, backend: BlockBackend) -> None:
        if not self.sparse:
            pytest.skip("backend declares sparse = False")
        volume = backend.create_volume(self.volume_size)
        self._write(backend, volume, MiB + 100, pattern(4096))
        snapshot = backend.create_snapshot(volume.id)
        for reader in (backend.open_volume_reader(volume.id), backend.open_snapshot(snapshot.id)):
            try:
                extents = extents_of(reader)
            finally:
                reader.close()
            assert covered(extents, MiB + 100, 4096)
            total = sum(e.length for e in extents)
            assert total <= self.volume_size // 4, f"{total} bytes allocated for one 4 KiB write: {extents}"

    def test_large_sparse_volume_is_cheap(self, backend: BlockBackend) -> None:
        if not self.sparse:
            pytest.skip("backend declares sparse = False")
        before = self._allocated(backend.stats())
        volume = backend.create_volume(GiB)
        self._write(backend, volume, GiB // 2 + 7, pattern(5000))
        self._write(backend, volume, GiB - 4096, pattern(4096, seed=9))
        snapshot = backend.create_snapshot(volume.id)
        with backend.reading_snapshot(snapshot.id) as reader:
            assert reader.size == GiB
            extents = extents_of(reader)
            assert covered(extents, GiB // 2 + 7, 5000)
            assert covered(extents, GiB - 4096, 4096)
            assert sum(e.length for e in extents) <= 16 * MiB, extents
            assert reader.read(GiB // 2 + 7, 5000) == pattern(5000)
            assert reader.read(GiB - 4096, 8192) == pattern(4096, seed=9)
            assert reader.read(GiB // 4, 4096) == bytes(4096)
        grew = self._allocated(backend.stats()) - before
        assert grew <= 64 * MiB, f"a 1 GiB volume with 9 KiB written and its snapshot cost {grew} bytes"

    @staticmethod
    def _allocated(stats: BackendStats) -> int:
        return sum(p.allocated_capacity for p in stats.pools)

    # -- capacity and secrets ------------------------------------------------

    def test_stats(self, backend: BlockBackend) -> None:
        stats = backend.stats()
        assert stats.backend
        assert len(stats.pools) >= 1
        for pool in stats.pools:
            assert pool.name
            assert pool.total_capacity >= pool.free_capacity >= 0
            assert pool.allocated_capacity >= 0

    def test_repr_and_stats_never_show_secrets(self, tmp_path: pathlib.Path) -> None:
        if self.secret_option is None:
            pytest.skip("backend declares no secret option (secret_option = None)")
        secret = "s3cr3t-conformance-value"
        backend = self.make_backend_with(tmp_path, {self.secret_option: secret})
        try:
            volume = backend.create_volume(MiB)
            shown = [repr(backend), str(backend), repr(backend.stats()), repr(volume)]
            shown += [repr(v) for v in backend.list_volumes()]
            describe = getattr(backend, "describe", None)
            if callable(describe):
                shown.append(repr(describe()))
            for text in shown:
                assert secret not in text
            backend.destroy_volume(volume.id)
        finally:
            backend.close()

    # -- concurrency ---------------------------------------------------------

    def test_concurrent_creates_and_snapshots(self, backend: BlockBackend) -> None:
        sources = [backend.create_volume(MiB) for _ in range(4)]
        for i, volume in enumerate(sources):
            self._write(backend, volume, 0, pattern(8192, seed=i + 1))
        barrier = threading.Barrier(8)
        errors: list[BaseException] = []
        snapshots: dict[int, Snapshot] = {}
        created: list[Volume] = []

        def snapshot(i: int) -> None:
            try:
                barrier.wait()
                snapshots[i] = backend.create_snapshot(sources[i].id)
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

        def create(i: int) -> None:
            try:
                barrier.wait()
                created.append(backend.create_volume(MiB, name=f"concurrent-{os.getpid()}-{i}"))
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

        threads = [threading.Thread(target=snapshot, args=(i,)) for i in range(4)]
        threads += [threading.Thread(target=create, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert len(created) == 4
        assert len({s.id for s in snapshots.values()}) == 4
        for i, snap in snapshots.items():
            assert snap.volume_id == sources[i].id
            assert self._read_snapshot(backend, snap)[:8192] == pattern(8192, seed=i + 1)
