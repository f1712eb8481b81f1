"""The block backend conformance suite on every shipped backend, and on the flaky wrapper around them.

The loopback backend runs twice: in ``tmp_path`` (whatever filesystem that is;
on ext4 or tmpfs snapshots are sparse copies) and, when running as root with
``mkfs.xfs`` or ``mkfs.btrfs`` installed (Debian ``xfsprogs`` / ``btrfs-progs``),
on a loop-mounted reflink-capable filesystem where snapshots must be reflinks.
With ``CI=true`` that second run fails instead of skipping when it cannot run.

The flaky wrapper (``strongroom.testing.flaky_block``) runs the suite with a zero
fault rate on every method: a wrapper that injects nothing must be a backend.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from strongroom.block.base import BlockBackend
from strongroom.block.loopback import METHOD_REFLINK, LoopbackBackend
from strongroom.block.memory import MemoryBlockBackend
from strongroom.testing.block import BlockBackendConformance, MiB, pattern
from strongroom.testing.flaky_block import Fault, FaultKind, FlakyBlockBackend
from tests.servers.reflinkfs import reflink_filesystem


class TestMemoryBlockBackend(BlockBackendConformance):
    secret_option = "password"
    tracks_changes = True
    extends = True

    def make_backend(self, tmp_path: pathlib.Path) -> BlockBackend:
        return MemoryBlockBackend()


class TestLoopbackBackend(BlockBackendConformance):
    persistent = True
    extends = True  # tracks_changes stays False: on ext4 or tmpfs it answers only for an unchanged image

    def make_backend(self, tmp_path: pathlib.Path) -> BlockBackend:
        return LoopbackBackend({"path": str(tmp_path / "images")})


# -- the flaky wrapper, injecting nothing ----------------------------------------------------------


class ZeroRateFlaky(BlockBackendConformance):
    """Every call passes through a zero-rate fault of each kind, and none is injected."""

    faults = (Fault(rate=0.0), Fault(kind=FaultKind.PERMANENT, rate=0.0),
              Fault(kind=FaultKind.DELAY, delay=60.0, rate=0.0))

    def make_inner(self, tmp_path: pathlib.Path, extra_options: dict[str, Any]) -> BlockBackend:
        raise NotImplementedError

    def _wrap(self, inner: BlockBackend) -> FlakyBlockBackend:
        backend = FlakyBlockBackend(inner, self.faults, seed=1, sleep=_no_sleep)
        self.made.append(backend)
        return backend

    def make_backend(self, tmp_path: pathlib.Path) -> BlockBackend:
        return self._wrap(self.make_inner(tmp_path, {}))

    def make_backend_with(self, tmp_path: pathlib.Path, extra_options: dict[str, Any]) -> BlockBackend:
        return self._wrap(self.make_inner(tmp_path, extra_options))

    @pytest.fixture(autouse=True)
    def _nothing_injected(self) -> Iterator[None]:
        self.made: list[FlakyBlockBackend] = []
        yield
        for backend in self.made:
            assert backend.injected_total == 0, backend.injections
            assert sum(backend.calls.values()) > 0


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"a zero-rate delay fault slept {seconds} s")


class TestFlakyMemoryBlockBackend(ZeroRateFlaky):
    secret_option = "password"
    tracks_changes = True
    extends = True

    def make_inner(self, tmp_path: pathlib.Path, extra_options: dict[str, Any]) -> BlockBackend:
        return MemoryBlockBackend(extra_options)


class TestFlakyLoopbackBackend(ZeroRateFlaky):
    extends = True

    def make_inner(self, tmp_path: pathlib.Path, extra_options: dict[str, Any]) -> BlockBackend:
        return LoopbackBackend({"path": str(tmp_path / "images"), **extra_options})


# -- the loopback backend on a loop-mounted reflink filesystem -------------------------------------


@pytest.fixture(scope="module")
def reflink_mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """A freshly made XFS (reflink=1) or btrfs filesystem, loop-mounted; always unmounted and detached."""
    with reflink_filesystem(tmp_path_factory.mktemp("reflinkfs"), 512 * MiB) as mountpoint:
        yield mountpoint


class TestLoopbackBackendOnReflinkFilesystem(BlockBackendConformance):
    persistent = True
    tracks_changes = True  # FIEMAP: extents still shared with the base snapshot are unchanged
    extends = True

    @pytest.fixture(autouse=True)
    def _mount(self, reflink_mount: pathlib.Path) -> None:
        self.mount = reflink_mount

    def make_backend(self, tmp_path: pathlib.Path) -> BlockBackend:
        # One directory per test on the shared filesystem.
        return LoopbackBackend({"path": str(self.mount / tmp_path.name)})

    def test_snapshots_are_reflinks(self, tmp_path: pathlib.Path) -> None:
        backend = LoopbackBackend({"path": str(self.mount / tmp_path.name)})
        volume = backend.create_volume(64 * MiB, name="reflinked")
        data = os.urandom(32 * MiB)
        with backend.writing_volume(volume.id) as writer:
            writer.write(0, data)
        os.sync()
        used_before = _used_bytes(self.mount)

        snapshot = backend.create_snapshot(volume.id)
        os.sync()
        used_after = _used_bytes(self.mount)

        assert backend.snapshot_method(snapshot.id) == METHOD_REFLINK
        assert backend.describe()["snapshot_methods"] == {METHOD_REFLINK: 1}
        # A copy would have cost 32 MiB; a reflink shares the blocks.
        assert used_after - used_before < 4 * MiB, (used_before, used_after)
        # Still point in time: overwriting the volume does not change the clone.
        with backend.writing_volume(volume.id) as writer:
            writer.write(0, pattern(MiB))
        with backend.reading_snapshot(snapshot.id) as reader:
            assert reader.read(0, MiB) == data[:MiB]
        backend.delete_snapshot(snapshot.id)
        backend.destroy_volume(volume.id)


def _used_bytes(path: pathlib.Path) -> int:
    vfs = os.statvfs(path)
    return (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize
