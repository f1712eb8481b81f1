"""The loopback block backend: raw sparse image files in one directory (the layout is in ``layout``)."""

from __future__ import annotations

import datetime as _dt
import errno
import logging
import os
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

from strongroom import exceptions
from strongroom.block.base import (
    BackendStats,
    BlockBackend,
    BlockReader,
    BlockWriter,
    Extent,
    PoolStats,
    Snapshot,
    Volume,
    check_new_size,
    check_placement,
    check_size,
    check_tags,
)
from strongroom.block.loopback.changes import ImageStat, differing_extents, stat_if_unchanged, unchanged_by_stat
from strongroom.block.loopback.clone import METHOD_HARD_LINK, METHOD_REFLINK, METHOD_SPARSE_COPY, clone_or_copy
from strongroom.block.loopback.handles import LoopbackReader, LoopbackWriter, VolumeLock
from strongroom.block.loopback.layout import (
    SNAPSHOT_DIR,
    STAGED_PREFIX,
    SnapshotFiles,
    create_locked,
    hold_for_overwrite,
    is_safe_id,
    link_locked,
    name_of_staged,
    overwriter_holding,
    remove_if_abandoned,
    staged_id,
    unlink_quietly,
    validate_name,
)

LOG = logging.getLogger("strongroom.block.loopback")  # the backend's one logger, as before it was a package


class LoopbackBackend(BlockBackend):
    """Raw sparse image files in a directory; snapshots by reflink or sparse copy."""

    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {
                "type": "string",
                "minLength": 1,
                "description": "Directory of raw image files (created if missing).",
            },
        },
        "required": ["path"],
        "additionalProperties": False,
    }
    kind: ClassVar[str] = "loopback"

    def __init__(self, options: Mapping[str, Any] | None = None, *,
                 clock: Callable[[], int] = time.time_ns) -> None:
        """``clock``: the wall clock in ns since the epoch, the one file timestamps follow (injected by tests
        of the racy-timestamp rule of :mod:`strongroom.block.loopback.changes`)."""
        super().__init__(options)
        self._clock = clock
        self.path = os.path.abspath(os.path.expanduser(str(self.options["path"])))
        self._snapshots = SnapshotFiles(os.path.join(self.path, SNAPSHOT_DIR))
        try:
            os.makedirs(self._snapshots.directory, exist_ok=True)
        except OSError as err:
            raise exceptions.ConfigError(
                reason=f"loopback block backend: cannot create directory {self.path}: {err.strerror}"
            ) from err
        self._locks_guard = threading.Lock()
        self._locks: dict[str, VolumeLock] = {}
        #: Staged volumes this backend object made: the descriptor holding each one's maker lock.
        self._staged: dict[str, int] = {}

    def _lock_for(self, volume_id: str) -> VolumeLock:
        with self._locks_guard:
            return self._locks.setdefault(volume_id, VolumeLock())

    def describe(self) -> dict[str, Any]:
        """What the backend is and how it snapshots (never includes credentials)."""
        methods: dict[str, int] = {}
        for info in self._snapshots.all().values():
            method = str(info.get("method", "unknown"))
            methods[method] = methods.get(method, 0) + 1
        return {"backend": "loopback", "path": self.path, "snapshot_methods": methods}

    # -- volumes -----------------------------------------------------------

    def _volume_path(self, volume_id: str, staged: bool = False) -> str:
        """The image path of an existing volume (or, with ``staged``, of a staged one), or ``VolumeNotFound``."""
        if not is_safe_id(volume_id) and not (staged and name_of_staged(volume_id)):
            raise exceptions.VolumeNotFound(volume_id=volume_id)
        path = os.path.join(self.path, volume_id)
        try:
            st = os.lstat(path)
        except OSError:
            raise exceptions.VolumeNotFound(volume_id=volume_id) from None
        if not stat.S_ISREG(st.st_mode):
            raise exceptions.VolumeNotFound(volume_id=volume_id)
        return path

    def _volume_from_stat(self, file_name: str, st: os.stat_result) -> Volume:
        staged_name = name_of_staged(file_name)
        return Volume(
            id=file_name,
            name=staged_name or file_name,
            size=st.st_size,
            created_at=None,
            extra={
                "path": os.path.join(self.path, file_name),
                "allocated": st.st_blocks * 512,
                "modified_at": _dt.datetime.fromtimestamp(st.st_mtime, _dt.UTC).isoformat(),
            },
            staged=staged_name is not None,
        )

    def create_volume(self, size: int, name: str | None = None, *, staged: bool = False,
                      placement: Mapping[str, str] | None = None) -> Volume:
        check_size(size)
        check_placement(self, placement)
        name = validate_name(name) if name is not None else f"volume-{uuid.uuid4()}"
        file_name = staged_id(name) if staged else name
        taken = staged_id(name) if not staged else name
        if os.path.lexists(os.path.join(self.path, taken)):  # the name is reserved by its staged twin, or taken
            raise exceptions.VolumeExists(volume_id=name)
        path = os.path.join(self.path, file_name)
        try:
            fd = create_locked(path)
        except FileExistsError:
            raise exceptions.VolumeExists(volume_id=name) from None
        except OSError as err:
            raise exceptions.BlockError(reason=f"cannot create volume {name}: {err.strerror}") from err
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError as err:
            os.close(fd)
            os.unlink(path)
            reason = f"cannot size volume {name} to {size} bytes: {err.strerror}"
            raise exceptions.BlockError(reason=reason) from err
        if staged:
            with self._locks_guard:
                self._staged[file_name] = fd  # held until published or discarded
        else:
            os.close(fd)
        LOG.debug("created loopback %svolume %s (%d bytes)", "staged " if staged else "", name, size)
        return self._volume_from_stat(file_name, os.stat(path))

    def _release(self, volume_id: str) -> None:
        with self._locks_guard:
            fd = self._staged.pop(volume_id, None)
        if fd is not None:
            os.close(fd)

    def publish_volume(self, volume_id: str) -> Volume:
        name = name_of_staged(volume_id)
        if name is None:
            raise exceptions.VolumeNotFound(volume_id=volume_id)
        with self._lock_for(volume_id).exclusive():
            path = self._volume_path(volume_id, staged=True)
            final = os.path.join(self.path, name)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(path, final)  # atomic, and never replaces a volume that took the name meanwhile
            except FileExistsError:
                raise exceptions.VolumeExists(volume_id=name) from None
            except OSError as err:
                raise exceptions.BlockError(reason=f"cannot publish volume {name}: {err.strerror}") from err
            _fsync_directory(self.path)
            unlink_quietly(path)
            self._release(volume_id)
        LOG.debug("published loopback volume %s", name)
        return self._volume_from_stat(name, os.stat(final))

    def discard_volume(self, volume_id: str) -> None:
        if name_of_staged(volume_id) is None:
            return
        with self._lock_for(volume_id).exclusive():
            unlink_quietly(os.path.join(self.path, volume_id))
            self._release(volume_id)
        LOG.debug("discarded staged loopback volume %s", volume_id)

    def _scan(self, staged: bool) -> list[Volume]:
        volumes = []
        with os.scandir(self.path) as entries:
            for entry in entries:
                if entry.name.startswith(".") != staged or not entry.is_file(follow_symlinks=False):
                    continue
                if staged and not entry.name.startswith(STAGED_PREFIX):
                    continue  # another hidden file of the backend's own
                # A staged volume's id is the prefix and the name it will be published as.
                name = entry.name[len(STAGED_PREFIX):] if staged else entry.name
                if not is_safe_id(name):  # e.g. a newline or a bidi override: never shown nor logged raw
                    LOG.warning("loopback directory %s: ignoring file %r, whose name is not a usable volume name",
                                self.path, entry.name)
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # removed while listing
                    continue
                volumes.append(self._volume_from_stat(entry.name, st))
        return sorted(volumes, key=lambda v: v.id)

    def list_volumes(self) -> list[Volume]:
        return self._scan(staged=False)

    def list_staged_volumes(self) -> list[Volume]:
        return self._scan(staged=True)

    def reclaim_leftovers(self) -> list[str]:
        """Staged volumes whose maker (in any process) is gone, and the snapshot directory's leftovers."""
        removed = []
        for volume in self.list_staged_volumes():
            path = os.path.join(self.path, volume.id)
            if remove_if_abandoned(path):
                removed.append(path)
        removed += self._snapshots.leftovers()
        if removed:
            LOG.info("removed %d abandoned file(s) of loopback backend %s", len(removed), self.path)
        return removed

    def get_volume(self, volume_id: str) -> Volume:
        path = self._volume_path(volume_id)
        try:
            return self._volume_from_stat(volume_id, os.lstat(path))
        except FileNotFoundError:
            raise exceptions.VolumeNotFound(volume_id=volume_id) from None

    def destroy_volume(self, volume_id: str) -> None:
        with self._lock_for(volume_id).exclusive():
            path = self._volume_path(volume_id)
            snapshots = [s.id for s in self.list_snapshots(volume_id)]
            if snapshots:
                names = ", ".join(snapshots)
                raise exceptions.Conflict(
                    reason=f"volume {volume_id} still has snapshots ({names}); delete them first"
                )
            try:
                os.unlink(path)
            except FileNotFoundError:
                raise exceptions.VolumeNotFound(volume_id=volume_id) from None
        LOG.debug("destroyed loopback volume %s", volume_id)

    # -- snapshots ---------------------------------------------------------

    @staticmethod
    def _snapshot_from(snapshot_id: str, info: Mapping[str, Any]) -> Snapshot:
        created = info.get("created_at")
        return Snapshot(
            id=snapshot_id,
            volume_id=str(info.get("volume_id", "")),
            size=int(info.get("size", 0)),
            created_at=_dt.datetime.fromisoformat(created) if isinstance(created, str) else None,
            tags=dict(info.get("tags") or {}),
        )

    def create_snapshot(self, volume_id: str, tags: Mapping[str, str] | None = None) -> Snapshot:
        kept = check_tags(tags)
        snapshot_id = str(uuid.uuid4())
        partial = self._snapshots.partial(snapshot_id)
        with self._lock_for(volume_id).exclusive():
            src_path = self._volume_path(volume_id)
            created_at = _dt.datetime.now(_dt.UTC)
            src = os.open(src_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                # Written back first, its pages are clean: a program writing the image through a mapping
                # faults on its next write, which stamps the mtime (else a dirty page takes writes unseen).
                os.fsync(src)
                taken_ns = self._clock()  # before the image's stat and the copy: the racy-timestamp rule's clock
                before = os.fstat(src)
                size = before.st_size
                # Locked until published: a collector never takes the image for an abandoned one.  No copy
                # at all where an earlier copy holds the image as it is now (its stat says so).
                same = self._copy_of(volume_id, ImageStat.of(before, taken_ns))
                linked = None if same is None else link_locked(self._snapshots.image(same), partial)
                dst = create_locked(partial) if linked is None else linked
                try:
                    method = clone_or_copy(src, dst, size) if linked is None else METHOD_HARD_LINK
                    os.fsync(dst)
                    image_stat = stat_if_unchanged(before, os.fstat(src), taken_ns)
                    info = {
                        "volume_id": volume_id,
                        "size": size,
                        "created_at": created_at.isoformat(),
                        "method": method,
                        "tags": kept,
                        "image_stat": None if image_stat is None else image_stat.to_json(),
                    }
                    # Still under the volume's lock, so destroy_volume sees this snapshot or none of it.
                    self._snapshots.publish(snapshot_id, info)
                finally:
                    os.close(dst)
            except BaseException:
                unlink_quietly(partial)
                raise
            finally:
                os.close(src)
        LOG.debug("snapshot %s of volume %s taken by %s", snapshot_id, volume_id, method)
        return self._snapshot_from(snapshot_id, info)

    def _copy_of(self, volume_id: str, image: ImageStat) -> str | None:
        """The newest snapshot copied (not reflinked) from the volume's image in the very state it is in now,
        by the stat rule: its image can serve as the new snapshot's."""
        if not image.trusted:
            return None
        found, newest = None, ""
        for sid, info in self._snapshots.all().items():
            if info.get("volume_id") != volume_id or info.get("method") not in (METHOD_SPARSE_COPY, METHOD_HARD_LINK):
                continue
            if unchanged_by_stat(image, ImageStat.from_json(info.get("image_stat"))):
                created = str(info.get("created_at", ""))
                if found is None or created > newest:
                    found, newest = sid, created
        return found

    def snapshot_method(self, snapshot_id: str) -> str:
        """How the snapshot was taken: ``reflink``, ``sparse-copy`` or ``hard-link`` (to an earlier
        snapshot's sparse copy).  Raises ``SnapshotNotFound``."""
        info = self._snapshots.read(snapshot_id)
        if info is None:
            raise exceptions.SnapshotNotFound(snapshot_id=snapshot_id)
        return str(info.get("method", "unknown"))

    def list_snapshots(self, volume_id: str | None = None) -> list[Snapshot]:
        snapshots = [
            self._snapshot_from(sid, info)
            for sid, info in self._snapshots.all().items()
            if volume_id is None or info.get("volume_id") == volume_id
        ]
        return sorted(snapshots, key=lambda s: s.id)

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._snapshots.delete(snapshot_id)

    def changed_extents(self, snapshot_id: str, base_snapshot_id: str) -> Iterator[Extent] | None:
        """Nothing when the image's recorded stat proves it unchanged; where the two images do not share
        physical blocks when both are reflinks; else None (the rules: :mod:`strongroom.block.loopback.changes`)."""
        new, base = (self._sidecar_of(sid) for sid in (snapshot_id, base_snapshot_id))
        if new.get("volume_id") != base.get("volume_id"):
            return None
        if snapshot_id == base_snapshot_id or unchanged_by_stat(
                ImageStat.from_json(new.get("image_stat")), ImageStat.from_json(base.get("image_stat"))):
            LOG.debug("snapshot %s: volume image unchanged since snapshot %s", snapshot_id, base_snapshot_id)
            return iter(())
        if new.get("method") == base.get("method") == METHOD_REFLINK:
            found = self._unshared_extents(snapshot_id, base_snapshot_id)
            if found is not None:
                LOG.debug("snapshot %s: %d bytes in %d extents not shared with snapshot %s", snapshot_id,
                          sum(e.length for e in found), len(found), base_snapshot_id)
                return iter(found)
        return None

    def _sidecar_of(self, snapshot_id: str) -> dict[str, Any]:
        info = self._snapshots.read(snapshot_id)
        if info is None:
            raise exceptions.SnapshotNotFound(snapshot_id=snapshot_id)
        return info

    def _unshared_extents(self, snapshot_id: str, base_snapshot_id: str) -> list[Extent] | None:
        """FIEMAP of both images (kept open: a base deleted meanwhile still answers), or None where the
        filesystem cannot map them or they are not on one filesystem."""
        fds: list[int] = []
        try:
            for sid in (snapshot_id, base_snapshot_id):
                try:
                    fds.append(os.open(self._snapshots.image(sid), os.O_RDONLY | os.O_CLOEXEC))
                except FileNotFoundError:
                    raise exceptions.SnapshotNotFound(snapshot_id=sid) from None
            new, base = (os.fstat(fd) for fd in fds)
            if new.st_dev != base.st_dev:
                return None
            try:
                return differing_extents(fds[0], new.st_size, fds[1], base.st_size)
            except OSError as err:
                if err.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.ENOSYS):
                    LOG.debug("FIEMAP not possible on %s (%s)", self.path, os.strerror(err.errno or 0))
                    return None
                raise exceptions.BlockError(
                    reason=f"cannot map the extents of snapshot {snapshot_id}: {err.strerror}") from err
        finally:
            for fd in fds:
                os.close(fd)

    # -- data --------------------------------------------------------------

    def open_snapshot(self, snapshot_id: str) -> BlockReader:
        if self._snapshots.read(snapshot_id) is None:
            raise exceptions.SnapshotNotFound(snapshot_id=snapshot_id)
        try:
            return LoopbackReader(self._snapshots.image(snapshot_id), f"snapshot {snapshot_id}")
        except FileNotFoundError:
            raise exceptions.SnapshotNotFound(snapshot_id=snapshot_id) from None

    def open_volume_reader(self, volume_id: str) -> BlockReader:
        try:
            return LoopbackReader(self._volume_path(volume_id, staged=True), f"volume {volume_id}")
        except FileNotFoundError:
            raise exceptions.VolumeNotFound(volume_id=volume_id) from None

    def open_volume_writer(self, volume_id: str) -> BlockWriter:
        try:
            return LoopbackWriter(self._volume_path(volume_id, staged=True), volume_id, self._lock_for(volume_id))
        except FileNotFoundError:
            raise exceptions.VolumeNotFound(volume_id=volume_id) from None

    def check_overwrite(self, volume_id: str) -> Volume:
        volume = self.get_volume(volume_id)
        os.close(hold_for_overwrite(self._volume_path(volume_id), volume_id))
        return volume

    def open_volume_overwriter(self, volume_id: str) -> BlockWriter:
        path = self._volume_path(volume_id)
        return overwriter_holding(path, volume_id, lambda: LoopbackWriter(path, volume_id, self._lock_for(volume_id)))

    def extend_volume(self, volume_id: str, size: int) -> Volume:
        """``ftruncate`` under the volume's lock (writers, snapshots) and its overwrite ``flock`` (restores)."""
        with self._lock_for(volume_id).exclusive():
            path = self._volume_path(volume_id)
            size = check_new_size(self.get_volume(volume_id), size)
            held = hold_for_overwrite(path, volume_id)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
                try:
                    os.ftruncate(fd, size)
                    os.fsync(fd)
                except OSError as err:
                    raise exceptions.BlockError(
                        reason=f"cannot extend volume {volume_id} to {size} bytes: {err.strerror}") from err
                finally:
                    os.close(fd)
            finally:
                os.close(held)
        LOG.debug("extended loopback volume %s to %d bytes", volume_id, size)
        return self.get_volume(volume_id)

    # -- capacity ----------------------------------------------------------

    def close(self) -> None:
        """Release the maker locks of staged volumes not yet published (they stay for recovery to discard)."""
        with self._locks_guard:
            held, self._staged = list(self._staged.values()), {}
        for fd in held:
            os.close(fd)

    def stats(self) -> BackendStats:
        vfs = os.statvfs(self.path)
        allocated = 0
        seen: set[tuple[int, int]] = set()  # hard-linked snapshot images count once
        for directory in (self.path, self._snapshots.directory):
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name.startswith(".") and directory == self.path and name_of_staged(entry.name) is None:
                    continue
                try:
                    if entry.is_file(follow_symlinks=False) and not entry.name.endswith(".json"):
                        st = entry.stat(follow_symlinks=False)
                        if (st.st_dev, st.st_ino) not in seen:
                            seen.add((st.st_dev, st.st_ino))
                            allocated += st.st_blocks * 512
                except FileNotFoundError:
                    continue
        pool = PoolStats(
            name=self.path,
            total_capacity=vfs.f_blocks * vfs.f_frsize,
            free_capacity=vfs.f_bavail * vfs.f_frsize,
            allocated_capacity=allocated,
        )
        return BackendStats(backend="loopback", pools=(pool,))


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
