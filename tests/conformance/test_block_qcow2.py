"""The block backend conformance suite on the qcow2 backend with a real qemu-storage-daemon, and what
only a fleecing view has to prove: the snapshot is the image at its instant while a writer keeps going."""

from __future__ import annotations

import json
import os
import pathlib
import random
import signal
import subprocess
import threading
import time

import pytest

from strongroom import exceptions
from strongroom.block.base import BlockBackend, Extent
from strongroom.block.qcow2 import Qcow2Backend
from strongroom.testing.block import BlockBackendConformance, MiB, OwnBackend, pattern, read_all
from tests.servers.qemu import require_qemu


class Qcow2TestBase:
    @pytest.fixture(autouse=True)
    def _qemu(self) -> None:
        require_qemu()

    def make_backend(self, tmp_path: pathlib.Path) -> BlockBackend:
        return Qcow2Backend({"path": str(tmp_path / "images"), "timeout": 10})


class TestQcow2Backend(Qcow2TestBase, BlockBackendConformance):
    persistent = True
    tracks_changes = True
    extends = True


# -- what only a fleecing view has ---------------------------------------------------------------


class TestQcow2Snapshots(Qcow2TestBase, OwnBackend):
    def test_snapshot_is_the_instant_while_a_writer_keeps_writing(self, backend: Qcow2Backend) -> None:
        """A writer rewrites random blocks of the live image all along; the snapshot, read as a protect
        reads it (allocated extents, then data) while the writer goes on, is the image at its instant."""
        size = 32 * MiB
        volume = backend.create_volume(size)
        with backend.writing_volume(volume.id) as writer:
            writer.write(0, pattern(8 * MiB, seed=1))
            writer.write(20 * MiB, pattern(4 * MiB, seed=2))
        gate = threading.Lock()
        stop = threading.Event()
        written_after: list[int] = []
        errors: list[BaseException] = []
        taken = threading.Event()

        def keep_writing() -> None:
            rng = random.Random(7)
            try:
                with backend.writing_volume(volume.id) as writer:
                    while not stop.is_set():
                        offset = rng.randrange(0, size // 4096) * 4096
                        with gate:
                            writer.write(offset, os.urandom(4096 * rng.randint(1, 16))[: size - offset])
                            if taken.is_set():
                                written_after.append(offset)
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

        thread = threading.Thread(target=keep_writing)
        thread.start()
        try:
            time.sleep(0.2)
            with gate:  # the writer is between two writes: what the image holds now is the expected view
                with backend.open_volume_reader(volume.id) as reader:
                    expected = read_all(reader)
                snapshot = backend.create_snapshot(volume.id)
                taken.set()
            with backend.reading_snapshot(snapshot.id) as reader:
                extents = list(reader.allocated_extents())
                got = bytearray(size)
                for extent in extents:
                    for pos in range(extent.offset, extent.end, MiB):
                        length = min(MiB, extent.end - pos)
                        got[pos : pos + length] = reader.read(pos, length)
                        time.sleep(0.002)  # a slow reader: the writer overtakes it many times
        finally:
            stop.set()
            thread.join(timeout=30)
        assert not errors, errors
        assert len(written_after) > 50, "the writer should have kept writing while the snapshot was read"
        assert bytes(got) == expected, "the snapshot is not the image at the snapshot instant"
        with backend.open_volume_reader(volume.id) as reader:
            assert read_all(reader) != expected, "the live image should have moved on"
        backend.delete_snapshot(snapshot.id)
        backend.destroy_volume(volume.id)

    def test_restore_stays_thin(self, backend: Qcow2Backend, tmp_path: pathlib.Path) -> None:
        size = 256 * MiB
        source = backend.create_volume(size, name="source")
        with backend.writing_volume(source.id) as writer:
            writer.write(MiB, pattern(2 * MiB, seed=3))
            writer.write(200 * MiB, b"text " * 1000)
        snapshot = backend.create_snapshot(source.id)
        staged = backend.create_volume(size, name="restored", staged=True)
        with backend.reading_snapshot(snapshot.id) as reader, backend.writing_volume(staged.id) as writer:
            for extent in reader.allocated_extents():
                writer.write(extent.offset, reader.read(extent.offset, extent.length))
            # A restore over old data writes its zero runs too: they must not cost space either.
            writer.write(100 * MiB, bytes(8 * MiB))
        restored = backend.publish_volume(staged.id)
        with backend.open_volume_reader(restored.id) as reader:
            allocated = sum(e.length for e in reader.allocated_extents())
            assert reader.read(MiB, 2 * MiB) == pattern(2 * MiB, seed=3)
            assert reader.read(100 * MiB, 4096) == bytes(4096)
        assert allocated <= 4 * MiB, allocated
        on_disk = os.stat(tmp_path / "images" / "restored.qcow2").st_blocks * 512
        assert on_disk <= 8 * MiB, f"a restored image with 2 MiB of data takes {on_disk} bytes"
        backend.delete_snapshot(snapshot.id)

    def test_killed_daemon_is_restarted_and_its_views_refused(self, backend: Qcow2Backend) -> None:
        volume = backend.create_volume(4 * MiB)
        with backend.writing_volume(volume.id) as writer:
            writer.write(0, pattern(MiB))
        snapshot = backend.create_snapshot(volume.id, {"strongroom.checkpoint": "c-1"})
        reader = backend.open_snapshot(snapshot.id)
        first = backend.daemon.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(exceptions.BlockUnavailable) as info:
            reader.read(0, MiB)
        assert time.monotonic() - started < 5
        assert "qcow2 block backend" in str(info.value) and snapshot.id in str(info.value)
        reader.close()
        # The image is served again by a new daemon, with what it held; the snapshot is still listed with
        # its tags (so its taker deletes it) but its view died with the daemon: opening it says so.
        with backend.open_volume_reader(volume.id) as live:
            assert live.read(0, MiB) == pattern(MiB)
        assert backend.daemon.pid not in (None, first)
        assert [dict(s.tags) for s in backend.list_snapshots()] == [{"strongroom.checkpoint": "c-1"}]
        with pytest.raises(exceptions.BlockError, match="qcow2 block backend.*has stopped"):
            backend.open_snapshot(snapshot.id)
        backend.delete_snapshot(snapshot.id)
        assert backend.list_snapshots() == []
        backend.destroy_volume(volume.id)

    def test_leftover_overlay_is_reclaimed_once_its_maker_is_gone(self, backend: Qcow2Backend) -> None:
        volume = backend.create_volume(MiB)
        snapshot = backend.create_snapshot(volume.id)
        orphan = backend.dir.overlay("00000000-0000-4000-8000-000000000001")
        pathlib.Path(orphan).write_bytes(b"half made")
        assert backend.reclaim_leftovers() == [orphan]
        assert [s.id for s in backend.list_snapshots()] == [snapshot.id]
        backend.delete_snapshot(snapshot.id)

    def test_a_second_backend_on_the_directory_is_refused(self, backend: Qcow2Backend,
                                                          tmp_path: pathlib.Path) -> None:
        volume = backend.create_volume(MiB)
        backend.open_volume_reader(volume.id).close()
        other = Qcow2Backend({"path": str(tmp_path / "images")})
        try:
            assert [v.id for v in other.list_volumes()] == [volume.id]  # listing needs no daemon
            with pytest.raises(exceptions.BlockUnavailable, match="already serves this directory"):
                other.open_volume_reader(volume.id)
        finally:
            other.close()


# -- changed-block tracking and growth: what only dirty bitmaps and fleecing views have to prove -----------


def _strongroom_bitmaps(image: pathlib.Path) -> list[str]:
    """The dirty bitmaps qemu stored in a qcow2 image that no daemon holds (``qemu-img info``)."""
    out = subprocess.run(["qemu-img", "info", "--output=json", str(image)], check=True, capture_output=True)
    bitmaps = json.loads(out.stdout).get("format-specific", {}).get("data", {}).get("bitmaps", [])
    return sorted(b["name"] for b in bitmaps if b["name"].startswith("strongroom."))


def _covers(extents: list[Extent], offset: int, length: int) -> bool:
    return any(e.offset <= offset and offset + length <= e.end for e in extents)


class TestQcow2Tracking(Qcow2TestBase, OwnBackend):
    @staticmethod
    def _write(backend: Qcow2Backend, volume_id: str, offset: int, data: bytes) -> None:
        with backend.writing_volume(volume_id) as writer:
            writer.write(offset, data)
            writer.flush()

    def test_a_killed_daemon_leaves_no_answer_and_the_next_snapshot_starts_again(self, backend: Qcow2Backend) -> None:
        volume = backend.create_volume(4 * MiB)
        a = backend.create_snapshot(volume.id)
        self._write(backend, volume.id, MiB, b"x" * 4096)
        b = backend.create_snapshot(volume.id)
        assert list(backend.changed_extents(b.id, a.id) or []) == [Extent(MiB, 64 << 10)]
        pid = backend.daemon.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        backend.daemon.died(grace=5)
        # The image's bitmaps were in use when the daemon died: qemu reads them back inconsistent.
        assert backend.changed_extents(b.id, a.id) is None
        c = backend.create_snapshot(volume.id)
        self._write(backend, volume.id, 3 * MiB, b"y")
        d = backend.create_snapshot(volume.id)
        assert list(backend.changed_extents(d.id, c.id) or []) == [Extent(3 * MiB, 64 << 10)]
        assert backend.changed_extents(c.id, a.id) is None and backend.changed_extents(d.id, b.id) is None
        for snap in (a, b, c, d):
            backend.delete_snapshot(snap.id)

    def test_deleted_snapshots_merge_their_intervals_and_leave_no_bitmap(self, backend: Qcow2Backend,
                                                                        tmp_path: pathlib.Path) -> None:
        volume = backend.create_volume(8 * MiB, name="merged")
        base = backend.create_snapshot(volume.id)
        self._write(backend, volume.id, 0, b"1")
        middle = backend.create_snapshot(volume.id)
        self._write(backend, volume.id, 2 * MiB, b"2")
        newest = backend.create_snapshot(volume.id)
        backend.delete_snapshot(middle.id)  # between two kept ones
        self._write(backend, volume.id, 4 * MiB, b"3")
        backend.delete_snapshot(newest.id)  # the one recording: its interval goes on in the base's
        self._write(backend, volume.id, 6 * MiB, b"4")
        new = backend.create_snapshot(volume.id)
        extents = list(backend.changed_extents(new.id, base.id) or [])
        assert all(_covers(extents, offset, 1) for offset in (0, 2 * MiB, 4 * MiB, 6 * MiB)), extents
        assert sum(e.length for e in extents) == 4 * (64 << 10), extents
        backend.close()
        image = tmp_path / "images" / "merged.qcow2"
        assert sorted(name.rsplit(".", 1)[-1] for name in _strongroom_bitmaps(image)) == sorted([base.id, new.id])
        backend.delete_snapshot(base.id)
        backend.delete_snapshot(new.id)  # the last: no bitmap is left behind
        backend.close()
        assert _strongroom_bitmaps(image) == []

    def test_a_view_is_not_served_again_over_an_image_written_while_no_daemon_ran(
            self, backend: Qcow2Backend, tmp_path: pathlib.Path) -> None:
        volume = backend.create_volume(4 * MiB, name="offline")
        self._write(backend, volume.id, 0, pattern(MiB, seed=4))
        base = backend.create_snapshot(volume.id)
        backend.close()
        image = tmp_path / "images" / "offline.qcow2"
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x55 2M 4k", str(image)], check=True,
                       capture_output=True)
        with pytest.raises(exceptions.BlockError, match="can no longer be read"):
            backend.open_snapshot(base.id)
        # Any qemu that opens the image records its writes in the enabled persistent bitmap.
        new = backend.create_snapshot(volume.id)
        extents = list(backend.changed_extents(new.id, base.id) or [])
        assert extents == [Extent(2 * MiB, 64 << 10)], extents
        with backend.reading_snapshot(new.id) as reader:
            assert reader.read(0, MiB) == pattern(MiB, seed=4) and reader.read(2 * MiB, 4096) == b"\x55" * 4096
        backend.delete_snapshot(base.id)
        backend.delete_snapshot(new.id)

    def test_growth_is_refused_while_a_client_is_connected_and_keeps_views_whole(self, backend: Qcow2Backend) -> None:
        volume = backend.create_volume(4 * MiB)
        self._write(backend, volume.id, 0, pattern(4 * MiB, seed=5))
        snapshot = backend.create_snapshot(volume.id)
        for hold in (lambda: backend.open_volume_reader(volume.id), lambda: backend.open_snapshot(snapshot.id),
                     lambda: backend.open_volume_overwriter(volume.id)):
            handle = hold()
            try:
                with pytest.raises(exceptions.VolumeInUse) as info:
                    backend.extend_volume(volume.id, 8 * MiB)
                assert volume.id in str(info.value)
            finally:
                handle.close()
            assert backend.get_volume(volume.id).size == 4 * MiB
        grown = backend.extend_volume(volume.id, 8 * MiB)
        assert grown.size == 8 * MiB
        self._write(backend, volume.id, 0, b"\0" * MiB)  # after the growth: the view must still hold the old
        self._write(backend, volume.id, 6 * MiB, b"tail")
        with backend.reading_snapshot(snapshot.id) as reader:
            assert reader.size == 4 * MiB and read_all(reader) == pattern(4 * MiB, seed=5)
        new = backend.create_snapshot(volume.id)
        extents = list(backend.changed_extents(new.id, snapshot.id) or [])
        assert _covers(extents, 0, MiB) and _covers(extents, 4 * MiB, 4 * MiB), extents
        backend.delete_snapshot(snapshot.id)
        backend.delete_snapshot(new.id)
        assert not [n for n in os.listdir(backend.dir.snapshots) if n.endswith(".qcow2")], "overlays left behind"

    def test_a_kept_snapshot_is_its_instant_across_restarts_and_rewrites(self, backend: Qcow2Backend) -> None:
        """Each restart serves the view over a new overlay: a block rewritten after every restart must
        still read as it was at the snapshot's instant (a job copying into an old overlay again would
        replace what it saved with a later version)."""
        volume = backend.create_volume(4 * MiB)
        self._write(backend, volume.id, 0, pattern(4 * MiB, seed=6))
        snapshot = backend.create_snapshot(volume.id)
        for round_ in range(3):
            self._write(backend, volume.id, 0, pattern(MiB, seed=10 + round_))  # the same blocks each time
            self._write(backend, volume.id, (1 + round_) * MiB + 4096, b"r" * 70000)
            backend.close()
            with backend.reading_snapshot(snapshot.id) as reader:
                assert read_all(reader) == pattern(4 * MiB, seed=6), f"after restart {round_ + 1}"
        with backend.open_volume_reader(volume.id) as live:
            assert live.read(0, MiB) == pattern(MiB, seed=12)
        # The overlays the restarts added are the snapshot's, not leftovers; one it does not list is.
        stray = backend.dir.overlay(snapshot.id)[: -len(".qcow2")] + ".9.qcow2"
        pathlib.Path(stray).write_bytes(b"half made")
        assert backend.reclaim_leftovers() == [stray]
        with backend.reading_snapshot(snapshot.id) as reader:
            assert read_all(reader) == pattern(4 * MiB, seed=6)
        new = backend.create_snapshot(volume.id)
        extents = list(backend.changed_extents(new.id, snapshot.id) or [])
        assert _covers(extents, 0, MiB) and all(_covers(extents, m * MiB + 4096, 70000) for m in (1, 2, 3))
        assert sum(e.length for e in extents) <= MiB + 3 * (3 * 64 << 10), extents
        backend.delete_snapshot(snapshot.id)
        backend.delete_snapshot(new.id)
        assert not [n for n in os.listdir(backend.dir.snapshots) if n.endswith(".qcow2")], "overlays left behind"

    def test_a_version_2_image_is_protected_without_tracking(self, backend: Qcow2Backend,
                                                             tmp_path: pathlib.Path) -> None:
        image = tmp_path / "images" / "old.qcow2"
        image.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", str(image), str(4 * MiB)],
                       check=True)
        self._write(backend, "old", 0, b"v2")
        base = backend.create_snapshot("old")
        self._write(backend, "old", MiB, b"later")
        new = backend.create_snapshot("old")
        assert backend.changed_extents(new.id, base.id) is None  # qcow2 v2 stores no persistent bitmap
        with backend.reading_snapshot(base.id) as reader:
            assert reader.read(0, 2) == b"v2" and reader.read(MiB, 5) == bytes(5)
        backend.delete_snapshot(base.id)
        backend.delete_snapshot(new.id)
