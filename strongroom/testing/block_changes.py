"""The block conformance suite's changed-block tracking and growth contracts.

Part of :class:`strongroom.testing.block.BlockBackendConformance` (every backend runs it).
:meth:`~strongroom.block.base.BlockBackend.changed_extents` may always say it cannot tell (None); what it
says otherwise is held to the one promise a protect relies on: **no change is ever missed**.  A seeded random
series of writes (1 byte to several MiB, on and across 4 KiB, 64 KiB and 1 MiB boundaries), rewrites of the
same bytes, discards (``write_zeros``) and, where the backend can, growth (``extend_volume``) runs between
snapshots; every byte that differs between two snapshots, read back whole, must lie in the reported extents,
for consecutive snapshots and for a base several snapshots back with the ones between deleted.  Then the
data mover builds incremental backups in a row on the backend's answers, keeping only the base snapshot as the
volume plugin does, and every backup restores byte for byte to its snapshot.

A backend that declares ``tracks_changes = True`` must answer (not None) for snapshots of one volume that
did not change size, and report nothing at all when nothing was written between them.
"""

from __future__ import annotations

import hashlib
import pathlib
import random
from collections.abc import Iterator
from typing import ClassVar

import pytest

from strongroom import exceptions
from strongroom.block.base import BlockBackend, BlockReader, Extent, Snapshot, Volume

MiB = 1 << 20
KiB = 1 << 10
UNKNOWN_ID = "00000000-0000-4000-8000-00000000dead"
#: Write sizes the random series picks from: a byte, odd sizes, and the block sizes backends track in.
SIZES = (1, 7, 511, 4 * KiB, 4 * KiB + 1, 64 * KiB - 1, 64 * KiB, 200 * KiB, MiB + 7, 3 * MiB)
BOUNDARIES = (4 * KiB, 64 * KiB, MiB)


def read_whole(reader: BlockReader) -> bytes:
    with reader:
        out = bytearray()
        while len(out) < reader.size:
            piece = reader.read(len(out), min(4 * MiB, reader.size - len(out)))
            assert piece, f"short read at {len(out)} of {reader.size}"
            out += piece
        return bytes(out)


def differing_runs(old: bytes, new: bytes) -> Iterator[tuple[int, int]]:
    """``[start, end)`` runs of bytes of ``new`` that differ from ``old`` (``old`` read as zeros past its end)."""
    old = old[: len(new)] + bytes(max(len(new) - len(old), 0))
    step = 4 * KiB
    for block in range(0, len(new), step):
        a, b = old[block:block + step], new[block:block + step]
        if a == b:
            continue
        start = None
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y and start is None:
                start = i
            elif x == y and start is not None:
                yield block + start, block + i
                start = None
        if start is not None:
            yield block + start, block + len(b)


def check_extents(extents: list[Extent], size: int, what: str) -> None:
    """Ascending, non-overlapping, non-empty, within ``[0, size)`` (``what`` names them in a failure)."""
    previous = 0
    for extent in extents:
        assert extent.length > 0, f"{what}: empty extent {extent}"
        assert extent.offset >= previous, f"{what}: extents overlap or go backwards: {extents[:8]}"
        assert extent.end <= size, f"{what}: extent {extent} goes past the end ({size})"
        previous = extent.end


def missed(extents: list[Extent], runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The runs (or parts of them) that no extent covers."""
    out = []
    index = 0
    for start, end in runs:
        pos = start
        while index < len(extents) and extents[index].end <= pos:
            index += 1
        probe = index
        while pos < end:
            if probe >= len(extents) or extents[probe].offset > pos:
                stop = end if probe >= len(extents) else min(end, extents[probe].offset)
                out.append((pos, stop))
                pos = stop
                continue
            pos = max(pos, extents[probe].end)
            probe += 1
    return out


class ChangedBlocksConformance:
    """``changed_extents`` never misses a change; ``extend_volume`` grows a volume with zeros."""

    #: The backend answers ``changed_extents`` for any two snapshots of a volume that kept its size.
    tracks_changes: ClassVar[bool] = False
    #: The backend implements ``extend_volume``.
    extends: ClassVar[bool] = False
    #: Size of the volume the random series runs on.
    changes_volume_size: ClassVar[int] = 8 * MiB
    #: Rounds (snapshots) of the random series.
    changes_rounds: ClassVar[int] = 6

    def make_backend(self, tmp_path: pathlib.Path) -> BlockBackend:
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------------------------

    def _changes(self, backend: BlockBackend, new: Snapshot, base: Snapshot, *,
                 must_answer: bool) -> list[Extent] | None:
        found = backend.changed_extents(new.id, base.id)
        if found is None:
            assert not (must_answer and self.tracks_changes), (
                f"changed_extents({new.id}, {base.id}) cannot tell, but the backend declares tracks_changes")
            return None
        extents = list(found)
        check_extents(extents, new.size, f"changed_extents({new.id}, {base.id})")
        return extents

    def _assert_nothing_missed(self, backend: BlockBackend, new: Snapshot, base: Snapshot, *,
                               must_answer: bool, why: str) -> list[Extent] | None:
        extents = self._changes(backend, new, base, must_answer=must_answer)
        if extents is None:
            return None
        runs = list(differing_runs(read_whole(backend.open_snapshot(base.id)),
                                   read_whole(backend.open_snapshot(new.id))))
        lost = missed(extents, runs)
        assert not lost, (f"{why}: changed_extents missed {len(lost)} changed range(s), first {lost[:4]}; "
                          f"it reported {extents[:8]}")
        return extents

    @staticmethod
    def _random_round(backend: BlockBackend, volume: Volume, rng: random.Random, *, grow: bool) -> Volume:
        with backend.writing_volume(volume.id) as writer:
            for _ in range(rng.randint(1, 6)):
                size = min(rng.choice(SIZES), volume.size)
                where = rng.random()
                if where < 0.3:
                    offset = rng.randrange(0, volume.size - size + 1)
                elif where < 0.6:  # straddling a boundary
                    edge = rng.choice(BOUNDARIES) * rng.randint(1, max(volume.size // MiB, 1))
                    offset = min(max(edge - size // 2 - 1, 0), volume.size - size)
                else:  # starting on one
                    unit = rng.choice(BOUNDARIES)
                    offset = min(rng.randrange(0, volume.size, unit), volume.size - size)
                kind = rng.random()
                if kind < 0.15:
                    writer.write_zeros(offset, size)  # a discard
                else:
                    writer.write(offset, rng.randbytes(size))
                if rng.random() < 0.1:  # the end of the device
                    writer.write(volume.size - 1, b"\xff")
            writer.flush()
        if grow:
            volume = backend.extend_volume(volume.id, volume.size + rng.choice((64 * KiB, MiB, 3 * MiB + 4096)))
            with backend.writing_volume(volume.id) as writer:
                writer.write(volume.size - 5000, rng.randbytes(5000))  # data in the new tail
                writer.flush()
        return volume

    # -- the contracts -----------------------------------------------------------------------------

    @pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed{s}") for s in (1, 2)])
    def test_changed_extents_never_miss_a_change(self, backend: BlockBackend, seed: int) -> None:
        rng = random.Random(seed)
        volume = backend.create_volume(self.changes_volume_size, name=f"conformance-changes-{seed}")
        with backend.writing_volume(volume.id) as writer:
            writer.write(0, rng.randbytes(volume.size // 2))  # a filled first half
            writer.flush()
        snapshots = [backend.create_snapshot(volume.id)]
        grow_at = rng.randrange(2, self.changes_rounds) if self.extends else -1
        sizes = [volume.size]
        for round_ in range(1, self.changes_rounds):
            volume = self._random_round(backend, volume, rng, grow=round_ == grow_at)
            sizes.append(volume.size)
            snapshots.append(backend.create_snapshot(volume.id))
            self._assert_nothing_missed(backend, snapshots[-1], snapshots[-2], must_answer=sizes[-1] == sizes[-2],
                                        why=f"seed {seed}, round {round_}")
        # A base several snapshots back, the ones between deleted (a failed protect's, an operator's).
        first, last = snapshots[0], snapshots[-1]
        for between in snapshots[1:-1]:
            backend.delete_snapshot(between.id)
        self._assert_nothing_missed(backend, last, first, must_answer=sizes[0] == sizes[-1],
                                    why=f"seed {seed}, first to last with the snapshots between deleted")

    def test_incremental_backups_in_a_row_restore_every_snapshot(self, backend: BlockBackend) -> None:
        """The data mover builds each backup on the one before with this backend's ``changed_extents``; every
        checkpoint restores byte for byte to its snapshot, and a backup that was told nothing changed reads
        nothing."""
        from strongroom.bank_plugins.bank import Bank
        from strongroom.bank_plugins.memory import MemoryBank
        from strongroom.block.memory import MemoryBlockBackend
        from strongroom.datamover import ChunkStore, Parent, backup, restore

        bank = Bank(MemoryBank(), name="conformance")
        store = ChunkStore(bank.section("chunks"))
        rng = random.Random(7)
        volume = backend.create_volume(self.changes_volume_size, name="conformance-incrementals")
        with backend.writing_volume(volume.id) as writer:
            writer.write(0, rng.randbytes(volume.size // 2))
            writer.flush()
        snapshots: list[Snapshot] = []
        expected: list[str] = []
        modes = []
        for round_ in range(self.changes_rounds):
            if round_:
                volume = self._random_round(backend, volume, rng, grow=False)
            snapshots.append(backend.create_snapshot(volume.id))
            expected.append(hashlib.sha256(read_whole(backend.open_snapshot(snapshots[-1].id))).hexdigest())
            parent = None
            if round_:
                changed = backend.changed_extents(snapshots[-1].id, snapshots[-2].id)
                if changed is not None:
                    parent = Parent(bank.section(f"m{round_ - 1}", read_only=True), list(changed))
            with backend.reading_snapshot(snapshots[-1].id) as reader:
                result = backup(reader, store, bank.section(f"m{round_}"), chunk_size=64 * KiB, parent=parent)
            modes.append(result.mode)
            if len(snapshots) > 2:
                backend.delete_snapshot(snapshots[-3].id)  # only the base is kept, as the plugin does
        if self.tracks_changes:
            assert modes[1:] == ["incremental"] * (len(modes) - 1), modes
        target = MemoryBlockBackend()
        for round_, (snapshot, digest) in enumerate(zip(snapshots, expected, strict=True)):
            copy = target.create_volume(snapshot.size)
            with target.writing_volume(copy.id) as writer:
                restore(bank.section(f"m{round_}", read_only=True), store, writer)
            got = hashlib.sha256(read_whole(target.open_volume_reader(copy.id))).hexdigest()
            assert got == digest, f"backup {round_} ({modes[round_]}) does not restore its snapshot's bytes"
        # Nothing changed since the last snapshot: the next incremental reads nothing.
        last = backend.create_snapshot(volume.id)
        changed = backend.changed_extents(last.id, snapshots[-1].id)
        if changed is not None:
            extents = list(changed)
            with backend.reading_snapshot(last.id) as reader:
                result = backup(reader, store, bank.section("m-last"), chunk_size=64 * KiB,
                                parent=Parent(bank.section(f"m{len(snapshots) - 1}", read_only=True), extents))
            if self.tracks_changes:
                assert result.bytes_read == 0 and result.bytes_stored == 0, (result, extents[:4])

    def test_nothing_changed_reports_nothing(self, backend: BlockBackend) -> None:
        volume = backend.create_volume(4 * MiB, name="conformance-unchanged")
        with backend.writing_volume(volume.id) as writer:
            writer.write(MiB, b"\x5a" * (2 * MiB + 3))
            writer.flush()
        base = backend.create_snapshot(volume.id)
        new = backend.create_snapshot(volume.id)
        extents = self._assert_nothing_missed(backend, new, base, must_answer=True, why="no write between")
        if extents is not None and self.tracks_changes:
            assert sum(e.length for e in extents) == 0, f"nothing was written, yet it reports {extents[:8]}"
        # The reverse question, or a snapshot with itself, is never answered wrongly either.
        self._assert_nothing_missed(backend, new, new, must_answer=False, why="a snapshot with itself")

    def test_changed_extents_of_other_volumes_or_missing_snapshots(self, backend: BlockBackend) -> None:
        one = backend.create_volume(MiB, name="conformance-changes-one")
        two = backend.create_volume(MiB, name="conformance-changes-two")
        a, b = backend.create_snapshot(one.id), backend.create_snapshot(two.id)
        assert backend.changed_extents(a.id, b.id) is None, "snapshots of two volumes have no changed extents"
        for new, base in ((a.id, UNKNOWN_ID), (UNKNOWN_ID, a.id)):
            with pytest.raises(exceptions.SnapshotNotFound) as info:
                backend.changed_extents(new, base)
            assert UNKNOWN_ID in str(info.value)

    def test_tracking_survives_a_restart(self, tmp_path: pathlib.Path) -> None:
        if not (self.tracks_changes and getattr(self, "persistent", False)):
            pytest.skip("the backend does not track changes persistently")
        first = self.make_backend(tmp_path)
        volume = first.create_volume(4 * MiB, name="conformance-changes-restart")
        base = first.create_snapshot(volume.id)
        with first.writing_volume(volume.id) as writer:
            writer.write(3 * MiB + 17, b"changed")
            writer.flush()
        new = first.create_snapshot(volume.id)
        first.close()
        second = self.make_backend(tmp_path)
        try:
            extents = self._assert_nothing_missed(second, new, base, must_answer=True, why="after a restart")
            assert extents is not None and sum(e.length for e in extents) < 4 * MiB, (
                f"after a restart it reports the whole volume: {extents}")
            with second.writing_volume(volume.id) as writer:
                writer.write(17, b"again")
                writer.flush()
            third = second.create_snapshot(volume.id)
            self._assert_nothing_missed(second, third, new, must_answer=True, why="the first snapshot after a restart")
        finally:
            for snap in second.list_snapshots(volume.id):
                second.delete_snapshot(snap.id)
            second.destroy_volume(volume.id)
            second.close()

    def test_extend_volume_grows_with_zeros(self, backend: BlockBackend) -> None:
        volume = backend.create_volume(MiB, name="conformance-grow")
        with backend.writing_volume(volume.id) as writer:
            writer.write(MiB - 3, b"end")
            writer.flush()
        if not self.extends:
            with pytest.raises(exceptions.BlockError):
                backend.extend_volume(volume.id, 2 * MiB)
            assert backend.get_volume(volume.id).size == MiB
            return
        before = backend.create_snapshot(volume.id)
        grown = backend.extend_volume(volume.id, 3 * MiB)
        assert (grown.id, grown.size) == (volume.id, 3 * MiB)
        assert backend.get_volume(volume.id).size == 3 * MiB
        data = read_whole(backend.open_volume_reader(volume.id))
        assert data[MiB - 3:MiB] == b"end" and data[MiB:] == bytes(2 * MiB), "the new bytes must read as zeros"
        assert backend.open_snapshot(before.id).size == MiB, "a snapshot keeps its size"
        with pytest.raises(exceptions.InvalidInput) as info:
            backend.extend_volume(volume.id, MiB)
        assert volume.id in str(info.value)
        with pytest.raises(exceptions.VolumeNotFound):
            backend.extend_volume(UNKNOWN_ID, 4 * MiB)
