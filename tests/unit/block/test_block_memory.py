"""Memory backend specifics: sparseness and copy-on-write accounting."""

from __future__ import annotations

import pytest

from strongroom import exceptions
from strongroom.block.memory import BLOCK_SIZE, MemoryBlockBackend
from strongroom.testing.block import MiB, pattern

TiB = 1 << 40


def allocated(backend: MemoryBlockBackend) -> int:
    return backend.stats().pools[0].allocated_capacity


def test_empty_terabyte_volume_costs_nothing() -> None:
    backend = MemoryBlockBackend()
    volume = backend.create_volume(TiB)
    backend.create_snapshot(volume.id)
    assert allocated(backend) == 0
    reader = backend.open_volume_reader(volume.id)
    assert list(reader.allocated_extents()) == []
    assert reader.read(TiB - 10, 100) == bytes(10)


def test_snapshot_shares_blocks_until_overwritten() -> None:
    backend = MemoryBlockBackend()
    volume = backend.create_volume(8 * MiB)
    with backend.writing_volume(volume.id) as writer:
        writer.write(0, pattern(2 * MiB))
    assert allocated(backend) == 2 * MiB
    backend.create_snapshot(volume.id)
    assert allocated(backend) == 2 * MiB  # shared, not copied
    with backend.writing_volume(volume.id) as writer:
        writer.write(10, b"x")  # one block diverges
    assert allocated(backend) == 2 * MiB + BLOCK_SIZE


def test_stats_capacity_option() -> None:
    backend = MemoryBlockBackend({"capacity": 10 * MiB})
    volume = backend.create_volume(TiB)
    with backend.writing_volume(volume.id) as writer:
        writer.write(0, pattern(MiB))
    [pool] = backend.stats().pools
    assert (pool.total_capacity, pool.free_capacity, pool.allocated_capacity) == (10 * MiB, 9 * MiB, MiB)


@pytest.mark.parametrize("options", [{"capacity": -1}, {"capacity": "big"}, {"colour": "red"}])
def test_bad_options_rejected(options: dict[str, object]) -> None:
    with pytest.raises(exceptions.ConfigError, match="MemoryBlockBackend"):
        MemoryBlockBackend(options)


def test_password_is_hidden() -> None:
    backend = MemoryBlockBackend({"password": "hunter2"})
    assert "hunter2" not in repr(backend)
    assert "***" in repr(backend)


def test_destroy_refused_while_snapshots_exist() -> None:
    backend = MemoryBlockBackend()
    volume = backend.create_volume(MiB)
    snapshot = backend.create_snapshot(volume.id)
    with pytest.raises(exceptions.Conflict, match=snapshot.id):
        backend.destroy_volume(volume.id)
    backend.delete_snapshot(snapshot.id)
    backend.destroy_volume(volume.id)
    assert backend.list_volumes() == []
