"""Loopback specifics the generic conformance suite does not cover."""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import pathlib
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from strongroom import exceptions
from strongroom.block.base import BlockReader, Extent
from strongroom.block.loopback import (
    METHOD_SPARSE_COPY,
    SNAPSHOT_DIR,
    LoopbackBackend,
    changes,
    data_extents,
    fiemap,
    sparse_copy,
)
from strongroom.block.loopback.changes import FINE_MARGIN_NS, RACY_MARGIN_NS, ImageStat
from strongroom.testing.block import MiB, covered, pattern
from tests.servers.reflinkfs import reflink_filesystem


@pytest.fixture
def images(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "images"


@pytest.fixture
def backend(images: pathlib.Path) -> LoopbackBackend:
    return LoopbackBackend({"path": str(images)})


@contextlib.contextmanager
def volume_reader(backend: LoopbackBackend, volume_id: str) -> Iterator[BlockReader]:
    reader = backend.open_volume_reader(volume_id)
    try:
        yield reader
    finally:
        reader.close()


def sparse_file(path: pathlib.Path, size: int, writes: list[tuple[int, bytes]]) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in writes:
            f.seek(offset)
            f.write(data)


def allocated(path: pathlib.Path) -> int:
    return os.stat(path).st_blocks * 512


# -- options ----------------------------------------------------------------------------------------


def test_directory_is_created(images: pathlib.Path) -> None:
    LoopbackBackend({"path": str(images / "nested")})
    assert (images / "nested").is_dir()


def test_path_is_required() -> None:
    with pytest.raises(exceptions.ConfigError, match="'path' is a required property"):
        LoopbackBackend({})


def test_unknown_option_is_rejected(images: pathlib.Path) -> None:
    with pytest.raises(exceptions.ConfigError, match="pasword"):
        LoopbackBackend({"path": str(images), "pasword": "x"})


def test_options_schema_forbids_extra_keys() -> None:
    assert LoopbackBackend.options_schema["additionalProperties"] is False
    assert LoopbackBackend.options_schema["required"] == ["path"]


# -- volumes are the files in the directory ---------------------------------------------------------


def test_dropped_raw_image_appears_as_volume(
    backend: LoopbackBackend, images: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    source = tmp_path / "disk.raw"
    sparse_file(source, 3 * MiB, [(MiB + 5, b"boot sector, sort of")])
    shutil.copy(source, images / "vm-disk.raw")

    [volume] = backend.list_volumes()
    assert (volume.id, volume.name, volume.size) == ("vm-disk.raw", "vm-disk.raw", 3 * MiB)
    assert backend.get_volume("vm-disk.raw").size == 3 * MiB
    with volume_reader(backend, "vm-disk.raw") as reader:
        assert reader.read(MiB + 5, 20) == b"boot sector, sort of"
        assert covered(list(reader.allocated_extents()), MiB + 5, 20)


def test_hidden_files_directories_and_symlinks_are_not_volumes(
    backend: LoopbackBackend, images: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    (images / ".hidden.raw").write_bytes(b"x" * 4096)
    (images / "subdir").mkdir()
    (images / "subdir" / "inner.raw").write_bytes(b"x" * 4096)
    outside = tmp_path / "outside.raw"
    outside.write_bytes(b"y" * 4096)
    (images / "link.raw").symlink_to(outside)
    volume = backend.create_volume(MiB, name="real")
    backend.create_snapshot(volume.id)

    assert [v.id for v in backend.list_volumes()] == ["real"]
    for hidden in (".hidden.raw", "subdir", "link.raw", SNAPSHOT_DIR, "subdir/inner.raw", "../outside.raw"):
        with pytest.raises(exceptions.VolumeNotFound):
            backend.get_volume(hidden)
        with pytest.raises(exceptions.VolumeNotFound):
            backend.open_volume_writer(hidden)


def test_create_volume_makes_a_sparse_file(backend: LoopbackBackend, images: pathlib.Path) -> None:
    volume = backend.create_volume(256 * MiB, name="big.img")
    path = images / "big.img"
    assert path.stat().st_size == 256 * MiB
    assert allocated(path) < MiB
    assert volume.extra["path"] == str(path)


def test_generated_names(backend: LoopbackBackend) -> None:
    volume = backend.create_volume(MiB)
    assert volume.id == volume.name
    assert volume.id.startswith("volume-")


def test_existing_file_name_conflicts(backend: LoopbackBackend, images: pathlib.Path) -> None:
    (images / "taken.raw").write_bytes(b"data")
    with pytest.raises(exceptions.VolumeExists, match="taken.raw"):
        backend.create_volume(MiB, name="taken.raw")
    assert (images / "taken.raw").read_bytes() == b"data"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "must be a non-empty string"),
        ("a/b", "'a/b' must not contain '/'"),
        ("../escape", "must not contain '/'"),
        (".hidden", "'.hidden' must not start with '.'"),
        ("..", "'..' must not start with '.'"),
        ("nul\0byte", "must not contain a NUL character"),
        ("x" * 201, "is 201 bytes long; at most 200 are allowed"),
        ("é" * 101, "is 202 bytes long; at most 200 are allowed"),
    ],
)
def test_name_validation(backend: LoopbackBackend, images: pathlib.Path, name: str, message: str) -> None:
    with pytest.raises(exceptions.InvalidInput) as info:
        backend.create_volume(MiB, name=name)
    assert message in str(info.value)
    assert str(info.value).startswith("Invalid input: volume name ")
    assert backend.list_volumes() == []


@pytest.mark.parametrize("name", ["a\nb", "x\nERROR forged", "a\x1b[31m", "a\x7fb", "a\x85b", "txt\u202egpj.exe",
                                  "a\u2066b"])
def test_unprintable_names_are_refused(backend: LoopbackBackend, name: str) -> None:
    with pytest.raises(exceptions.InvalidInput) as info:
        backend.create_volume(MiB, name=name)
    assert "control or bidirectional-override characters" in str(info.value)
    assert name not in str(info.value)  # shown escaped
    assert backend.list_volumes() == []


def test_files_with_unprintable_names_are_not_volumes(backend: LoopbackBackend, images: pathlib.Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A file copied in with a newline in its name is never listed (nor shown raw in the log)."""
    (images / "evil\nERROR forged").write_bytes(b"x")
    (images / "fine.img").write_bytes(b"x")
    assert [v.id for v in backend.list_volumes()] == ["fine.img"]
    assert "ignoring file 'evil\\nERROR forged'" in caplog.text
    assert "\nERROR forged" not in caplog.text
    with pytest.raises(exceptions.VolumeNotFound):
        backend.get_volume("evil\nERROR forged")


def test_longest_allowed_name(backend: LoopbackBackend) -> None:
    assert backend.create_volume(MiB, name="x" * 200).id == "x" * 200


# -- snapshots --------------------------------------------------------------------------------------


def test_snapshot_files_and_sidecar(backend: LoopbackBackend, images: pathlib.Path) -> None:
    volume = backend.create_volume(MiB, name="disk")
    snapshot = backend.create_snapshot(volume.id)
    image = images / SNAPSHOT_DIR / snapshot.id
    sidecar = json.loads((images / SNAPSHOT_DIR / f"{snapshot.id}.json").read_text())
    assert image.stat().st_size == MiB
    assert sidecar["volume_id"] == "disk"
    assert sidecar["size"] == MiB
    assert sidecar["method"] in ("reflink", "sparse-copy")
    assert snapshot.created_at is not None
    assert sidecar["created_at"] == snapshot.created_at.isoformat()
    assert backend.snapshot_method(snapshot.id) == sidecar["method"]
    # A second backend object on the same directory sees it (state is on disk only).
    again = LoopbackBackend({"path": str(images)})
    assert again.list_snapshots("disk") == [snapshot]

    backend.delete_snapshot(snapshot.id)
    assert not image.exists()
    assert list((images / SNAPSHOT_DIR).iterdir()) == []
    with pytest.raises(exceptions.SnapshotNotFound):
        backend.snapshot_method(snapshot.id)


def test_sparse_copy_keeps_holes(tmp_path: pathlib.Path) -> None:
    size = 64 * MiB
    src_path, dst_path = tmp_path / "src", tmp_path / "dst"
    writes = [(0, pattern(4096, 1)), (10 * MiB + 3, pattern(70_000, 2)), (size - 100, pattern(100, 3))]
    sparse_file(src_path, size, writes)
    src = os.open(src_path, os.O_RDONLY)
    dst = os.open(dst_path, os.O_WRONLY | os.O_CREAT)
    try:
        sparse_copy(src, dst, size)
    finally:
        os.close(src)
        os.close(dst)
    assert dst_path.stat().st_size == size
    assert allocated(dst_path) <= allocated(src_path)
    assert allocated(dst_path) < MiB
    assert dst_path.read_bytes() == src_path.read_bytes()


def test_sparse_copy_skips_zero_data(tmp_path: pathlib.Path) -> None:
    """Zeros written explicitly (allocated in the source) do not allocate in the copy."""
    src_path, dst_path = tmp_path / "src", tmp_path / "dst"
    sparse_file(src_path, 8 * MiB, [(0, bytes(4 * MiB)), (5 * MiB, b"x")])
    src = os.open(src_path, os.O_RDONLY)
    dst = os.open(dst_path, os.O_WRONLY | os.O_CREAT)
    try:
        sparse_copy(src, dst, 8 * MiB)
    finally:
        os.close(src)
        os.close(dst)
    assert allocated(src_path) >= 4 * MiB
    assert allocated(dst_path) <= 2 * MiB
    assert dst_path.read_bytes() == src_path.read_bytes()


def test_snapshot_of_sparse_volume_keeps_holes(backend: LoopbackBackend, images: pathlib.Path) -> None:
    volume = backend.create_volume(128 * MiB, name="sparse")
    with backend.writing_volume(volume.id) as writer:
        writer.write(7 * MiB, pattern(8192))
    snapshot = backend.create_snapshot(volume.id)
    image = images / SNAPSHOT_DIR / snapshot.id
    assert image.stat().st_size == 128 * MiB
    if backend.snapshot_method(snapshot.id) == METHOD_SPARSE_COPY:
        assert allocated(image) <= allocated(images / "sparse")
    assert allocated(image) < 2 * MiB


def test_data_extents_are_merged_and_ascending(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "f"
    sparse_file(path, 32 * MiB, [(20 * MiB, b"b" * 10), (MiB, b"a" * 10), (MiB + 10, b"c" * 10)])
    fd = os.open(path, os.O_RDONLY)
    try:
        extents = list(data_extents(fd, 32 * MiB))
    finally:
        os.close(fd)
    assert extents == sorted(extents)
    assert covered(extents, MiB, 20)
    assert covered(extents, 20 * MiB, 10)
    assert sum(e.length for e in extents) < 4 * MiB
    assert all(a.end < b.offset for a, b in zip(extents, extents[1:], strict=False))


def test_destroy_refused_while_snapshots_exist(backend: LoopbackBackend, images: pathlib.Path) -> None:
    volume = backend.create_volume(MiB, name="busy")
    first = backend.create_snapshot(volume.id)
    second = backend.create_snapshot(volume.id)
    with pytest.raises(exceptions.Conflict) as info:
        backend.destroy_volume("busy")
    assert "busy" in str(info.value)
    assert first.id in str(info.value) and second.id in str(info.value)
    assert (images / "busy").exists()
    backend.delete_snapshot(first.id)
    backend.delete_snapshot(second.id)
    backend.destroy_volume("busy")
    assert not (images / "busy").exists()


def test_stats_count_volumes_and_snapshots(backend: LoopbackBackend, images: pathlib.Path) -> None:
    empty = backend.stats().pools[0].allocated_capacity
    volume = backend.create_volume(4 * MiB, name="data")
    with backend.writing_volume(volume.id) as writer:
        writer.write(0, pattern(2 * MiB))
    backend.create_snapshot(volume.id)
    [pool] = backend.stats().pools
    assert pool.name == str(images)
    assert pool.allocated_capacity - empty >= 2 * MiB  # at least the volume's data
    assert pool.total_capacity >= pool.free_capacity >= 0


def test_writes_from_several_threads_and_snapshots_are_consistent(backend: LoopbackBackend) -> None:
    volume = backend.create_volume(4 * MiB, name="busy")
    barrier = threading.Barrier(5)
    snapshots = []

    def writer(i: int) -> None:
        barrier.wait()
        with backend.writing_volume(volume.id) as w:
            for j in range(16):
                w.write(i * MiB + j * 4096, pattern(4096, seed=i + 1))

    def snapshotter() -> None:
        barrier.wait()
        for _ in range(4):
            snapshots.append(backend.create_snapshot(volume.id))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=snapshotter))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(snapshots) == 4
    with volume_reader(backend, volume.id) as reader:
        for i in range(4):
            assert reader.read(i * MiB, 16 * 4096) == pattern(4096, seed=i + 1) * 16
    for snap in snapshots:
        with backend.reading_snapshot(snap.id) as reader:
            for i in range(4):
                page = reader.read(i * MiB, 4096)
                # Each 4 KiB write is whole in a snapshot or absent, never torn.
                assert page in (bytes(4096), pattern(4096, seed=i + 1))


def test_writes_of_one_volume_run_side_by_side_and_a_snapshot_waits_for_them(
        backend: LoopbackBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restore's threads write one volume at once (they write disjoint ranges); a snapshot's copy waits
    for the writes in flight and no write starts while it runs."""
    from strongroom.block.loopback import handles

    volume = backend.create_volume(4 * MiB, name="restored")
    inside, most, release = [0], [0], threading.Event()
    guard = threading.Lock()
    real = handles.pwritev_all

    def slow_pwritev(fd: int, pieces: Any, offset: int) -> None:
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        assert release.wait(10)
        real(fd, pieces, offset)
        with guard:
            inside[0] -= 1

    monkeypatch.setattr(handles, "pwritev_all", slow_pwritev)
    with backend.writing_volume(volume.id) as w:
        writers = [threading.Thread(target=w.write_pieces, args=(i * MiB, [pattern(4096, seed=i + 1)]))
                   for i in range(2)]
        for t in writers:
            t.start()
        deadline = time.monotonic() + 10
        while most[0] < 2:
            assert time.monotonic() < deadline, "the second write waited for the first"
            time.sleep(0.001)
        taken: list[Any] = []
        snapshotter = threading.Thread(target=lambda: taken.append(backend.create_snapshot(volume.id)))
        snapshotter.start()
        snapshotter.join(0.2)
        assert not taken, "the snapshot did not wait for the writes in flight"
        release.set()
        for t in [*writers, snapshotter]:
            t.join(10)
    [snapshot] = taken
    with backend.reading_snapshot(snapshot.id) as reader:
        assert [reader.read(i * MiB, 4096) for i in range(2)] == [pattern(4096, seed=i + 1) for i in range(2)]


def test_repr_shows_path_only(images: pathlib.Path) -> None:
    backend = LoopbackBackend({"path": str(images)})
    assert repr(backend) == f"LoopbackBackend({{'path': '{images}'}})"


# -- what a killed process leaves ---------------------------------------------------------------------


def _held(path: pathlib.Path) -> int:
    """A file made the way the backend makes its hidden files, by a maker that is still alive."""
    from strongroom.block.loopback.layout import create_locked

    return create_locked(str(path))


def test_reclaim_leftovers_removes_what_dead_makers_left(images: pathlib.Path, backend: LoopbackBackend) -> None:
    volume = backend.create_volume(MiB, name="src.img")
    kept = backend.create_snapshot(volume.id, {"strongroom.checkpoint": "c1"})
    snapshots = images / SNAPSHOT_DIR
    # Dead makers: nobody holds these files' locks.
    (snapshots / ".partial-11111111-1111-4111-8111-111111111111").write_bytes(b"x" * 65536)
    (snapshots / ".tmp-22222222-2222-4222-8222-222222222222").write_text("{")
    (snapshots / "33333333-3333-4333-8333-333333333333").write_bytes(b"image whose sidecar never came")
    dead = LoopbackBackend({"path": str(images)})
    dead.create_volume(MiB, name="restored.img", staged=True)
    dead.close()  # its process is gone: the maker lock goes with it
    # Live makers: this very process holds them.
    live_partial = _held(snapshots / ".partial-44444444-4444-4444-8444-444444444444")
    live_image = _held(snapshots / "55555555-5555-4555-8555-555555555555")
    staged = backend.create_volume(MiB, name="in-progress.img", staged=True)
    try:
        removed = backend.reclaim_leftovers()
        assert sorted(os.path.basename(p) for p in removed) == [
            ".partial-11111111-1111-4111-8111-111111111111", ".staged-restored.img",
            ".tmp-22222222-2222-4222-8222-222222222222", "33333333-3333-4333-8333-333333333333"]
        left = sorted(os.listdir(snapshots))
        assert left == sorted([".partial-44444444-4444-4444-8444-444444444444",
                               "55555555-5555-4555-8555-555555555555", kept.id, kept.id + ".json"])
        assert [v.id for v in backend.list_staged_volumes()] == [staged.id]
        assert backend.reclaim_leftovers() == []
    finally:
        os.close(live_partial)
        os.close(live_image)


def test_publish_never_replaces_a_volume_that_took_the_name(images: pathlib.Path,
                                                              backend: LoopbackBackend) -> None:
    staged = backend.create_volume(MiB, name="taken.img", staged=True)
    assert staged.id == ".staged-taken.img"
    assert sorted(os.listdir(images)) == sorted([SNAPSHOT_DIR, staged.id])
    (images / "taken.img").write_bytes(b"an operator's image")  # copied in meanwhile
    with pytest.raises(exceptions.VolumeExists):
        backend.publish_volume(staged.id)
    assert (images / "taken.img").read_bytes() == b"an operator's image"
    backend.discard_volume(staged.id)
    assert sorted(os.listdir(images)) == [SNAPSHOT_DIR, "taken.img"]


def test_a_staged_volume_is_a_hidden_file_until_published(images: pathlib.Path, backend: LoopbackBackend) -> None:
    staged = backend.create_volume(2 * MiB, name="back.img", staged=True)
    with backend.writing_volume(staged.id) as writer:
        writer.write(MiB, pattern(4096))
    assert "back.img" not in os.listdir(images)
    published = backend.publish_volume(staged.id)
    assert published.id == "back.img" and sorted(os.listdir(images)) == [SNAPSHOT_DIR, "back.img"]
    assert (images / "back.img").read_bytes()[MiB:MiB + 4096] == pattern(4096)


def test_a_file_a_collector_removes_before_its_maker_locks_it_is_made_again(
        images: pathlib.Path, backend: LoopbackBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """A collector in another process (another open file here: flock is per open file) sees the new file
    unlocked, takes it for abandoned and unlinks it; its maker, locked at last, must not go on writing
    into a file no name leads to (a snapshot's sidecar then failed to publish in a two-worker run)."""
    from strongroom.block.loopback import layout

    path = str(images / SNAPSHOT_DIR / ".tmp-66666666-6666-4666-8666-666666666666")
    real_flock = layout.fcntl.flock
    collected = []

    def flock(fd: int, operation: int) -> None:
        if operation == layout.fcntl.LOCK_EX and not collected:  # the maker, between create and lock
            collected.append(layout.remove_if_abandoned(path))
        real_flock(fd, operation)

    monkeypatch.setattr(layout.fcntl, "flock", flock)
    fd = layout.create_locked(path)
    monkeypatch.setattr(layout.fcntl, "flock", real_flock)
    try:
        assert collected == [True]  # the collector did remove the first one
        assert os.path.samestat(os.fstat(fd), os.lstat(path))  # the maker holds the file the name leads to
        assert layout.remove_if_abandoned(path) is False  # and no collector can take it now
    finally:
        os.close(fd)


# -- changed-block tracking: the image's stat ----------------------------------------------------------


def _clock_after_last_write(path: pathlib.Path, seconds: float) -> Callable[[], int]:
    """A wall clock standing ``seconds`` after the file's last mtime/ctime stamp."""
    st = os.stat(path)
    return lambda: max(st.st_mtime_ns, st.st_ctime_ns) + int(seconds * 1e9)


def _written_volume(backend: LoopbackBackend, name: str = "disk") -> str:
    volume = backend.create_volume(4 * MiB, name=name)
    with backend.writing_volume(volume.id) as writer:
        writer.write(MiB, pattern(MiB))
    return volume.id


def test_an_image_unchanged_since_the_base_has_no_changed_extents(images: pathlib.Path) -> None:
    volume = _written_volume(LoopbackBackend({"path": str(images)}))
    backend = LoopbackBackend({"path": str(images)}, clock=_clock_after_last_write(images / volume, 60))
    base = backend.create_snapshot(volume)
    new = backend.create_snapshot(volume)
    sidecar = json.loads((images / SNAPSHOT_DIR / f"{base.id}.json").read_text())
    st = os.stat(images / volume)
    assert sidecar["image_stat"] == {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size,
                                     "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
                                     "taken_ns": backend._clock()}
    assert backend.snapshot_method(base.id) == METHOD_SPARSE_COPY  # tmp_path is no reflink filesystem
    assert list(backend.changed_extents(new.id, base.id) or [None]) == []
    assert list(backend.changed_extents(base.id, new.id) or [None]) == []

    # One byte written: the stat differs, and a sparse copy cannot say where.
    with backend.writing_volume(volume) as writer:
        writer.write(3 * MiB, b"!")
    later = LoopbackBackend({"path": str(images)}, clock=_clock_after_last_write(images / volume, 60))
    changed = later.create_snapshot(volume)
    assert later.changed_extents(changed.id, base.id) is None


def test_an_image_replaced_by_another_file_is_not_unchanged(images: pathlib.Path) -> None:
    """Same size, same content even, but another inode (an operator copied a disk in): cannot tell."""
    volume = _written_volume(LoopbackBackend({"path": str(images)}))
    backend = LoopbackBackend({"path": str(images)}, clock=_clock_after_last_write(images / volume, 60))
    base = backend.create_snapshot(volume)
    copy = images / ".copy"
    shutil.copy2(images / volume, copy)  # copy2 keeps the mtime; the ctime and inode are new
    os.rename(copy, images / volume)
    backend = LoopbackBackend({"path": str(images)}, clock=_clock_after_last_write(images / volume, 60))
    new = backend.create_snapshot(volume)
    assert backend.changed_extents(new.id, base.id) is None


def test_a_racily_stamped_image_is_not_taken_as_unchanged(images: pathlib.Path) -> None:
    """The kernel stamps mtime and ctime with a coarse clock: a write in the same tick as the last one,
    right after a snapshot, may leave both as they were.  So a stat taken less than FINE_MARGIN_NS after
    the last stamp (this filesystem's stamps have a sub-second part) proves nothing, even when no write came
    (which the backend cannot know)."""
    volume = _written_volume(LoopbackBackend({"path": str(images)}))
    assert os.stat(images / volume).st_ctime_ns % 1_000_000_000, "the test needs a filesystem with fine stamps"
    racy = LoopbackBackend({"path": str(images)}, clock=_clock_after_last_write(images / volume, 0.05))
    base = racy.create_snapshot(volume)
    new = racy.create_snapshot(volume)
    assert racy.changed_extents(new.id, base.id) is None
    # A base taken in the racy window stays untrusted, whenever the new snapshot is taken.
    settled = LoopbackBackend({"path": str(images)}, clock=_clock_after_last_write(images / volume, 60))
    assert settled.changed_extents(settled.create_snapshot(volume).id, base.id) is None
    # Taken once the margin has passed, the same images' stats are trusted.
    just_past = LoopbackBackend({"path": str(images)},
                                clock=_clock_after_last_write(images / volume, FINE_MARGIN_NS / 1e9))
    first, second = just_past.create_snapshot(volume), just_past.create_snapshot(volume)
    assert list(just_past.changed_extents(second.id, first.id) or [None]) == []


def test_whole_second_stamps_need_the_whole_margin() -> None:
    """A filesystem that stamps whole seconds (FAT, ext4 with 128-byte inodes) gives a later write in the same
    second the same stamp: its stat is trusted only RACY_MARGIN_NS after it; a sub-second stamp much sooner."""
    second = 1_000_000_000
    coarse = dict(dev=1, ino=2, size=3, mtime_ns=50 * second, ctime_ns=50 * second)
    assert not ImageStat(**coarse, taken_ns=50 * second + second).trusted
    assert ImageStat(**coarse, taken_ns=50 * second + RACY_MARGIN_NS).trusted
    fine = {**coarse, "ctime_ns": 50 * second + 123}
    assert not ImageStat(**fine, taken_ns=50 * second + FINE_MARGIN_NS - 1000).trusted
    assert ImageStat(**fine, taken_ns=50 * second + 123 + FINE_MARGIN_NS).trusted


def test_an_image_written_during_the_copy_records_no_stat(images: pathlib.Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A program writing the image file directly (not fenced by the backend's lock) during a sparse copy:
    the snapshot may hold half of it, so its stat must never later prove the image unchanged."""
    from strongroom.block.loopback import backend as backend_module

    volume = _written_volume(LoopbackBackend({"path": str(images)}))
    real = backend_module.clone_or_copy

    def copy_while_written(src: int, dst: int, size: int) -> str:
        method = real(src, dst, size)
        with open(images / volume, "r+b") as f:  # a write after the copy began, in the same clock tick
            f.seek(2 * MiB)
            f.write(b"late")
        st = os.stat(images / volume)
        os.utime(images / volume, ns=(st.st_atime_ns, before.st_mtime_ns))
        return method

    before = os.stat(images / volume)
    monkeypatch.setattr(backend_module, "clone_or_copy", copy_while_written)
    backend = LoopbackBackend({"path": str(images)}, clock=_clock_after_last_write(images / volume, 60))
    torn = backend.create_snapshot(volume)
    monkeypatch.setattr(backend_module, "clone_or_copy", real)
    sidecar = json.loads((images / SNAPSHOT_DIR / f"{torn.id}.json").read_text())
    assert sidecar["image_stat"] is None
    after = backend.create_snapshot(volume)
    assert backend.changed_extents(after.id, torn.id) is None


def test_a_snapshot_of_an_unchanged_image_links_the_earlier_copy(images: pathlib.Path) -> None:
    """No copy (seconds for a multi-GiB image on ext4) when the stat says the image is as an earlier
    sparse copy holds it; each snapshot still deletable on its own, and a later write copies again."""
    volume = _written_volume(LoopbackBackend({"path": str(images)}))
    backend = LoopbackBackend({"path": str(images)}, clock=_clock_after_last_write(images / volume, 60))
    base = backend.create_snapshot(volume)
    allocated_before = backend.stats().pools[0].allocated_capacity
    new = backend.create_snapshot(volume)
    assert (backend.snapshot_method(base.id), backend.snapshot_method(new.id)) == (METHOD_SPARSE_COPY, "hard-link")
    assert os.path.samefile(images / SNAPSHOT_DIR / base.id, images / SNAPSHOT_DIR / new.id)
    assert backend.stats().pools[0].allocated_capacity == allocated_before  # the image's blocks once
    assert backend.describe()["snapshot_methods"] == {METHOD_SPARSE_COPY: 1, "hard-link": 1}
    backend.delete_snapshot(base.id)
    with backend.reading_snapshot(new.id) as reader:
        assert reader.read(MiB, MiB) == pattern(MiB)
    linked_again = backend.create_snapshot(volume)  # from the link, the newest copy of that state
    assert os.path.samefile(images / SNAPSHOT_DIR / new.id, images / SNAPSHOT_DIR / linked_again.id)

    with backend.writing_volume(volume) as writer:
        writer.write(MiB, b"new")
    later = LoopbackBackend({"path": str(images)}, clock=_clock_after_last_write(images / volume, 60))
    copied = later.create_snapshot(volume)
    assert later.snapshot_method(copied.id) == METHOD_SPARSE_COPY
    with later.reading_snapshot(copied.id) as reader, later.reading_snapshot(new.id) as old:
        assert (reader.read(MiB, 3), old.read(MiB, 3)) == (b"new", pattern(MiB)[:3])
    # Taken in the racy window, a snapshot copies even an unchanged image.
    racy = LoopbackBackend({"path": str(images)}, clock=_clock_after_last_write(images / volume, 0.05))
    assert racy.snapshot_method(racy.create_snapshot(volume).id) == METHOD_SPARSE_COPY


def test_a_link_a_dead_maker_left_is_reclaimed_and_the_linked_snapshot_kept(images: pathlib.Path) -> None:
    volume = _written_volume(LoopbackBackend({"path": str(images)}))
    backend = LoopbackBackend({"path": str(images)}, clock=_clock_after_last_write(images / volume, 60))
    base = backend.create_snapshot(volume)
    partial = images / SNAPSHOT_DIR / ".partial-77777777-7777-4777-8777-777777777777"
    os.link(images / SNAPSHOT_DIR / base.id, partial)  # killed between the link and the sidecar
    assert backend.reclaim_leftovers() == [str(partial)]
    assert backend.list_snapshots(volume) == [base]
    with backend.reading_snapshot(base.id) as reader:
        assert reader.read(MiB, MiB) == pattern(MiB)


def test_snapshots_of_other_volumes_or_a_missing_one(backend: LoopbackBackend) -> None:
    one, two = _written_volume(backend, "one"), _written_volume(backend, "two")
    a, b = backend.create_snapshot(one), backend.create_snapshot(two)
    assert backend.changed_extents(a.id, b.id) is None
    backend.delete_snapshot(b.id)
    with pytest.raises(exceptions.SnapshotNotFound, match=b.id):
        backend.changed_extents(a.id, b.id)
    assert list(backend.changed_extents(a.id, a.id) or [None]) == []


# -- changed-block tracking: FIEMAP on a reflink filesystem ---------------------------------------------


@pytest.fixture(scope="module")
def reflink_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    with reflink_filesystem(tmp_path_factory.mktemp("reflinkfs"), 320 * MiB) as mountpoint:
        yield mountpoint


def test_fiemap_reports_exactly_the_blocks_written_since_the_base(reflink_dir: pathlib.Path,
                                                                   tmp_path: pathlib.Path) -> None:
    backend = LoopbackBackend({"path": str(reflink_dir / tmp_path.name)})
    volume = backend.create_volume(64 * MiB, name="vm.img")
    with backend.writing_volume(volume.id) as writer:
        writer.write(0, pattern(32 * MiB))  # the first half holds data, the second is a hole
    base = backend.create_snapshot(volume.id)
    block = os.statvfs(reflink_dir).f_bsize
    with backend.writing_volume(volume.id) as writer:
        writer.write(5 * MiB + 100, pattern(block, seed=2))  # across two blocks
        writer.write(20 * MiB, pattern(3, seed=3))  # one byte of a block in the middle of an extent
        writer.write(40 * MiB, pattern(block, seed=4))  # data where the base has a hole
    new = backend.create_snapshot(volume.id)
    assert backend.snapshot_method(new.id) == backend.snapshot_method(base.id) == "reflink"

    found = backend.changed_extents(new.id, base.id)
    assert found is not None
    assert list(found) == [Extent(5 * MiB, 2 * block), Extent(20 * MiB, block), Extent(40 * MiB, block)]
    # Every other byte is the base's: the partial overwrite left the rest of its extent shared.
    with backend.reading_snapshot(new.id) as reader:
        assert reader.read(0, 5 * MiB) == pattern(32 * MiB)[:5 * MiB]

    # Nothing written since: nothing reported, though the image's stat is racy (just written).
    again = backend.create_snapshot(volume.id)
    assert list(backend.changed_extents(again.id, new.id) or [None]) == []
    # Several snapshots back, the ones between deleted: the union.
    backend.delete_snapshot(new.id)
    assert list(backend.changed_extents(again.id, base.id) or []) == [
        Extent(5 * MiB, 2 * block), Extent(20 * MiB, block), Extent(40 * MiB, block)]


def test_fiemap_reports_a_grown_tail_and_a_discarded_extent(reflink_dir: pathlib.Path,
                                                             tmp_path: pathlib.Path) -> None:
    backend = LoopbackBackend({"path": str(reflink_dir / tmp_path.name)})
    volume = backend.create_volume(8 * MiB, name="grown.img")
    with backend.writing_volume(volume.id) as writer:
        writer.write(0, pattern(4 * MiB))
    base = backend.create_snapshot(volume.id)
    image = reflink_dir / tmp_path.name / "grown.img"
    with open(image, "r+b") as f:  # an operator's truncate-and-regrow: the first MiB's blocks are freed
        f.truncate(0)
        f.truncate(8 * MiB)
        f.seek(MiB)
        f.write(pattern(3 * MiB)[MiB:])
    os.utime(image, ns=(0, 0))  # old timestamps, so only FIEMAP can tell
    grown = backend.extend_volume(volume.id, 10 * MiB)
    new = backend.create_snapshot(volume.id)
    found = list(backend.changed_extents(new.id, base.id) or [Extent(0, grown.size)])
    assert found == [Extent(0, 4 * MiB), Extent(8 * MiB, 2 * MiB)]


@pytest.mark.parametrize("flag", [fiemap.FIEMAP_EXTENT_UNKNOWN, fiemap.FIEMAP_EXTENT_DELALLOC,
                                  fiemap.FIEMAP_EXTENT_ENCODED, fiemap.FIEMAP_EXTENT_DATA_INLINE,
                                  fiemap.FIEMAP_EXTENT_NOT_ALIGNED])
def test_fiemap_flags_that_hide_the_address_count_as_changed(flag: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both files claim the same physical address, but the flag says it does not name the bytes alone."""
    def maps(flags: int) -> dict[int, list[fiemap.Mapping]]:
        return {1: [fiemap.Mapping(0, 8192, 4096, 0), fiemap.Mapping(4096, 12288, 4096, flags)],
                2: [fiemap.Mapping(0, 8192, 8192, fiemap.FIEMAP_EXTENT_LAST)]}

    for flags, changed, grown in ((0, [], [Extent(8192, 4096)]),
                                  (flag, [Extent(4096, 4096)], [Extent(4096, 8192)])):
        monkeypatch.setattr(fiemap, "mappings", lambda fd, size, m=maps(flags): iter(m[fd]))
        assert changes.differing_extents(1, 12288, 2, 12288) == changed, flags  # the last block a hole in both
        # Past the base's end (a grown volume) everything is changed, holes too.
        assert changes.differing_extents(1, 12288, 2, 8192) == grown, flags


# -- growth -----------------------------------------------------------------------------------------------


def test_extend_is_refused_while_a_restore_overwrites_the_volume(backend: LoopbackBackend,
                                                                  images: pathlib.Path) -> None:
    volume = _written_volume(backend)
    snapshot = backend.create_snapshot(volume)
    writer = backend.open_volume_overwriter(volume)
    try:
        with pytest.raises(exceptions.VolumeInUse, match=volume):
            backend.extend_volume(volume, 8 * MiB)
        assert (images / volume).stat().st_size == 4 * MiB
    finally:
        writer.close()
    assert backend.extend_volume(volume, 8 * MiB).size == 8 * MiB
    assert (images / volume).stat().st_size == 8 * MiB
    assert (images / SNAPSHOT_DIR / snapshot.id).stat().st_size == 4 * MiB
    staged = backend.create_volume(MiB, name="restoring", staged=True)
    with pytest.raises(exceptions.VolumeNotFound):
        backend.extend_volume(staged.id, 2 * MiB)


def test_a_write_through_a_mapping_after_a_snapshot_is_seen(images: pathlib.Path) -> None:
    """A program writing the image through ``mmap``: a page it already dirtied takes further writes
    without a fault, so without a new mtime, unless the snapshot wrote it back first."""
    volume = _written_volume(LoopbackBackend({"path": str(images)}))
    with open(images / volume, "r+b") as f, mmap.mmap(f.fileno(), 4 * MiB) as mapped:
        mapped[MiB:MiB + 5] = b"first"
        os.utime(images / volume, ns=(0, 0))  # an old mtime: only a new stamp can tell the next write
        backend = LoopbackBackend({"path": str(images)}, clock=_clock_after_last_write(images / volume, 60))
        base = backend.create_snapshot(volume)
        mapped[MiB:MiB + 6] = b"second"  # the same page
        new = backend.create_snapshot(volume)
        with backend.reading_snapshot(new.id) as reader:
            assert reader.read(MiB, 6) == b"second"
        assert backend.changed_extents(new.id, base.id) is None
