"""The block conformance suite's overwrite and placement contracts.

Part of :class:`strongroom.testing.block.BlockBackendConformance` (every backend runs it): a restore into
an existing volume opens it with ``open_volume_overwriter``, which refuses a volume in use and keeps a
second overwriter out while it writes; ``Volume.placement`` is what ``create_volume(placement=...)``
takes, and a placement key the backend has no notion of is refused by name.
"""

from __future__ import annotations

import pathlib

import pytest

from strongroom import exceptions
from strongroom.block.base import BlockBackend, BlockReader

MiB = 1 << 20
UNKNOWN_ID = "00000000-0000-4000-8000-00000000dead"


def _pattern(length: int, seed: int) -> bytes:
    block = bytes(((i * 7 + seed * 13) % 251) + 1 for i in range(4096))
    return (block * (length // len(block) + 1))[:length]


def _read(reader: BlockReader) -> bytes:
    with reader:
        return reader.read(0, reader.size)


class OverwriteConformance:
    """``check_overwrite``, ``open_volume_overwriter`` and placement."""

    def make_backend(self, tmp_path: pathlib.Path) -> BlockBackend:
        raise NotImplementedError

    def test_overwrite_replaces_every_byte_in_place(self, backend: BlockBackend) -> None:
        volume = backend.create_volume(2 * MiB, name="conformance-target")
        with backend.writing_volume(volume.id) as writer:
            writer.write(0, _pattern(2 * MiB, seed=1))
        before = [v.id for v in backend.list_volumes()]
        assert backend.check_overwrite(volume.id).id == volume.id
        new = bytearray(_pattern(2 * MiB, seed=2))
        with backend.open_volume_overwriter(volume.id) as writer:
            assert writer.size == 2 * MiB
            writer.write(0, bytes(new))
            for offset, length in ((MiB // 2, MiB // 2), (MiB + 5, 3000), (2 * MiB - 7, 7)):
                writer.write_zeros(offset, length)  # whole and partial blocks: nothing old survives
                new[offset : offset + length] = bytes(length)
            with pytest.raises(exceptions.InvalidInput):
                writer.write_zeros(2 * MiB - 1, 2)
            writer.flush()
        assert _read(backend.open_volume_reader(volume.id)) == bytes(new)
        assert [v.id for v in backend.list_volumes()] == before, "an overwrite made or removed a volume"
        got = backend.get_volume(volume.id)
        assert (got.name, got.size, got.staged) == ("conformance-target", 2 * MiB, False)

    def test_a_volume_being_overwritten_is_in_use(self, backend: BlockBackend) -> None:
        volume = backend.create_volume(MiB)
        first = backend.open_volume_overwriter(volume.id)
        try:
            first.write(0, b"first")
            with pytest.raises(exceptions.VolumeInUse) as info:
                backend.open_volume_overwriter(volume.id)
            assert volume.id in str(info.value)
            with pytest.raises(exceptions.VolumeInUse):
                backend.check_overwrite(volume.id)
        finally:
            first.close()
        first.close()  # idempotent, and releases nothing twice
        assert backend.check_overwrite(volume.id).id == volume.id
        with backend.open_volume_overwriter(volume.id) as second:
            second.write(0, b"again")
        with backend.open_volume_reader(volume.id) as reader:
            assert reader.read(0, 5) == b"again"

    def test_overwrite_of_a_missing_or_staged_volume_is_refused(self, backend: BlockBackend) -> None:
        staged = backend.create_volume(MiB, name="conformance-staged-target", staged=True)
        for volume_id in (UNKNOWN_ID, staged.id):
            with pytest.raises(exceptions.VolumeNotFound):
                backend.check_overwrite(volume_id)
            with pytest.raises(exceptions.VolumeNotFound):
                backend.open_volume_overwriter(volume_id)

    def test_placement_is_what_create_volume_takes(self, backend: BlockBackend) -> None:
        volume = backend.create_volume(MiB)
        assert set(volume.placement) <= backend.placement_keys
        again = backend.create_volume(MiB, placement=volume.placement)
        assert backend.get_volume(again.id).placement == volume.placement
        with pytest.raises(exceptions.InvalidInput) as info:
            backend.create_volume(MiB, name="conformance-misplaced", placement={"no_such_place": "x"})
        assert "no_such_place" in str(info.value)
        assert all(v.name != "conformance-misplaced" for v in backend.list_volumes())
