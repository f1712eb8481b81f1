"""The loopback block backend: raw sparse image files in one directory.

Layout of ``path``::

    <name>                      a volume: every regular file whose name does not start with '.'
    .snapshots/<id>             a snapshot image (reflink clone or sparse copy of its volume)
    .snapshots/<id>.json        its sidecar: {"volume_id", "size", "created_at", "method"}

A volume's id and name are its file name, its size the file size, so a raw
image copied into the directory is a volume.  Symbolic links and anything in
sub-directories are ignored.

Snapshots are taken with the ``FICLONE`` ioctl where the filesystem can share
blocks (XFS with reflink, btrfs, bcachefs, ...).  Elsewhere they are copies of
the data extents only (found with ``SEEK_DATA``/``SEEK_HOLE``, all-zero chunks
skipped), truncated to size, so holes stay holes.  The sidecar records which
method was used (``method``: ``reflink`` or ``sparse-copy``).

A snapshot is point in time with respect to writers opened through this
backend object (they hold the volume's lock during each write, the snapshot
holds it while cloning/copying).  A program writing the image file directly
is not fenced; a reflink is atomic, a sparse copy is not.

As in Cinder, a volume that still has snapshots cannot be destroyed:
``destroy_volume`` raises ``Conflict`` naming them.

``stats()`` reports one pool (the directory) with the filesystem's capacity
from ``statvfs``; ``allocated_capacity`` is the sum of the blocks allocated to
volumes and snapshots, so blocks shared by reflinks are counted once per file.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import stat
import threading
import uuid
from collections.abc import Iterator, Mapping
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
)
from strongroom.block.memory import check_range, check_size

LOG = logging.getLogger(__name__)

SNAPSHOT_DIR = ".snapshots"
MAX_NAME_BYTES = 200
#: ``_IOW(0x94, 9, int)`` from linux/fs.h; ``fcntl.FICLONE`` exists only from Python 3.12.
FICLONE = getattr(fcntl, "FICLONE", 0x40049409)
COPY_CHUNK = 1 << 20
METHOD_REFLINK = "reflink"
METHOD_SPARSE_COPY = "sparse-copy"

# errnos meaning "this filesystem (or pair of files) cannot clone": fall back to copying.
_NO_CLONE = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EPERM}


def validate_name(name: Any) -> str:
    """``name`` if it is a safe file name for a volume, else ``InvalidInput`` naming it."""
    if not isinstance(name, str) or not name:
        raise exceptions.InvalidInput(reason=f"volume name {name!r} must be a non-empty string")
    if "/" in name:
        raise exceptions.InvalidInput(reason=f"volume name {name!r} must not contain '/'")
    if name.startswith("."):
        raise exceptions.InvalidInput(reason=f"volume name {name!r} must not start with '.'")
    if "\0" in name:
        raise exceptions.InvalidInput(reason=f"volume name {name!r} must not contain a NUL character")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError as err:
        raise exceptions.InvalidInput(reason=f"volume name {name!r} is not valid UTF-8") from err
    if len(encoded) > MAX_NAME_BYTES:
        raise exceptions.InvalidInput(
            reason=f"volume name {name!r} is {len(encoded)} bytes long; at most {MAX_NAME_BYTES} are allowed"
        )
    return name


def _is_safe_id(value: Any) -> bool:
    try:
        validate_name(value)
    except exceptions.InvalidInput:
        return False
    return True


def data_extents(fd: int, size: int) -> Iterator[Extent]:
    """Ascending, merged data ranges of ``fd`` within ``[0, size)`` using ``SEEK_DATA``/``SEEK_HOLE``.

    Falls back to one extent for the whole file where the filesystem cannot tell.
    """
    if size <= 0:
        return
    pos = 0
    pending: Extent | None = None
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:  # no data after pos
                break
            if pos == 0 and err.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield Extent(0, size)
                return
            raise
        if start >= size:
            break
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        if end <= start:  # cannot happen on a sane filesystem; avoid looping forever
            end = size
        if pending is not None and pending.end >= start:
            pending = Extent(pending.offset, max(pending.end, end) - pending.offset)
        else:
            if pending is not None:
                yield pending
            pending = Extent(start, end - start)
        pos = end
    if pending is not None:
        yield pending


def _pread_exact(fd: int, offset: int, length: int) -> bytes:
    parts: list[bytes] = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            break
        parts.append(chunk)
        offset += len(chunk)
        length -= len(chunk)
    return b"".join(parts)


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def sparse_copy(src_fd: int, dst_fd: int, size: int) -> None:
    """Copy ``size`` bytes, writing only the data extents' non-zero chunks, then truncate to size.

    Holes in the source (and all-zero chunks of its data extents) stay holes in the destination.
    """
    zero = bytes(COPY_CHUNK)
    for extent in data_extents(src_fd, size):
        pos = extent.offset
        while pos < extent.end:
            chunk = _pread_exact(src_fd, pos, min(COPY_CHUNK, extent.end - pos))
            if not chunk:
                break
            if chunk != zero[: len(chunk)]:
                _pwrite_all(dst_fd, chunk, pos)
            pos += len(chunk)
    os.ftruncate(dst_fd, size)


def clone_or_copy(src_fd: int, dst_fd: int, size: int) -> str:
    """Reflink ``src_fd`` into ``dst_fd`` if the filesystem can, else :func:`sparse_copy`.

    Returns the method used: :data:`METHOD_REFLINK` or :data:`METHOD_SPARSE_COPY`.
    """
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError as err:
        if err.errno not in _NO_CLONE:
            raise
        LOG.debug("FICLONE not possible (%s); falling back to a sparse copy", os.strerror(err.errno or 0))
        os.ftruncate(dst_fd, 0)
        sparse_copy(src_fd, dst_fd, size)
        return METHOD_SPARSE_COPY
    return METHOD_REFLINK


class LoopbackReader(BlockReader):
    """``pread`` on a descriptor kept open for the reader's life."""

    def __init__(self, path: str, what: str) -> None:
        self._fd: int | None = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.size = os.fstat(self._fd).st_size
        self._what = what

    def _check_open(self) -> int:
        if self._fd is None:
            raise exceptions.BlockError(reason=f"reader of {self._what} is closed")
        return self._fd

    def allocated_extents(self) -> Iterator[Extent]:
        fd = self._check_open()
        return iter(list(data_extents(fd, self.size)))

    def read(self, offset: int, length: int) -> bytes:
        fd = self._check_open()
        if offset < 0 or length < 0:
            raise exceptions.InvalidInput(
                reason=f"read of {self._what}: offset {offset} and length {length} must not be negative"
            )
        length = max(min(length, self.size - offset), 0)
        data = _pread_exact(fd, offset, length)
        if len(data) < length:  # the file shrank under us; what is missing reads as zeros
            data += bytes(length - len(data))
        return data

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            self.close()


class LoopbackWriter(BlockWriter):
    """``pwrite`` within the file's size; ``flush`` is ``fsync``."""

    def __init__(self, path: str, volume_id: str, lock: threading.Lock) -> None:
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        self.size = os.fstat(self._fd).st_size
        self._volume_id = volume_id
        self._lock = lock

    def _check_open(self) -> int:
        if self._fd is None:
            raise exceptions.BlockError(reason=f"writer of volume {self._volume_id} is closed")
        return self._fd

    def write(self, offset: int, data: bytes) -> None:
        fd = self._check_open()
        check_range(self.size, offset, len(data), f"volume {self._volume_id}")
        with self._lock:
            _pwrite_all(fd, data, offset)

    def flush(self) -> None:
        os.fsync(self._check_open())

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:  # dropped without close(): release the descriptor, skip the fsync
            os.close(fd)
            self._fd = None


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

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.path = os.path.abspath(os.path.expanduser(str(self.options["path"])))
        self._snap_dir = os.path.join(self.path, SNAPSHOT_DIR)
        try:
            os.makedirs(self._snap_dir, exist_ok=True)
        except OSError as err:
            raise exceptions.ConfigError(
                reason=f"loopback block backend: cannot create directory {self.path}: {err.strerror}"
            ) from err
        self._locks_guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def _lock_for(self, volume_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(volume_id, threading.Lock())

    def describe(self) -> dict[str, Any]:
        """What the backend is and how it snapshots (never includes credentials)."""
        methods: dict[str, int] = {}
        for info in self._sidecars().values():
            method = str(info.get("method", "unknown"))
            methods[method] = methods.get(method, 0) + 1
        return {"backend": "loopback", "path": self.path, "snapshot_methods": methods}

    # -- volumes -----------------------------------------------------------

    def _volume_path(self, volume_id: str) -> str:
        """The image path of an existing volume, or ``VolumeNotFound``."""
        if not _is_safe_id(volume_id):
            raise exceptions.VolumeNotFound(volume_id=volume_id)
        path = os.path.join(self.path, volume_id)
        try:
            st = os.lstat(path)
        except OSError:
            raise exceptions.VolumeNotFound(volume_id=volume_id) from None
        if not stat.S_ISREG(st.st_mode):
            raise exceptions.VolumeNotFound(volume_id=volume_id)
        return path

    def _volume_from_stat(self, name: str, st: os.stat_result) -> Volume:
        return Volume(
            id=name,
            name=name,
            size=st.st_size,
            created_at=None,
            extra={
                "path": os.path.join(self.path, name),
                "allocated": st.st_blocks * 512,
                "modified_at": _dt.datetime.fromtimestamp(st.st_mtime, _dt.UTC).isoformat(),
            },
        )

    def create_volume(self, size: int, name: str | None = None) -> Volume:
        check_size(size)
        name = validate_name(name) if name is not None else f"volume-{uuid.uuid4()}"
        path = os.path.join(self.path, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
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
        os.close(fd)
        LOG.debug("created loopback volume %s (%d bytes)", name, size)
        return self._volume_from_stat(name, os.stat(path))

    def list_volumes(self) -> list[Volume]:
        volumes = []
        with os.scandir(self.path) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # removed while listing
                    continue
                volumes.append(self._volume_from_stat(entry.name, st))
        return sorted(volumes, key=lambda v: v.id)

    def get_volume(self, volume_id: str) -> Volume:
        path = self._volume_path(volume_id)
        try:
            return self._volume_from_stat(volume_id, os.lstat(path))
        except FileNotFoundError:
            raise exceptions.VolumeNotFound(volume_id=volume_id) from None

    def destroy_volume(self, volume_id: str) -> None:
        with self._lock_for(volume_id):
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

    def _sidecars(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        try:
            names = os.listdir(self._snap_dir)
        except FileNotFoundError:
            return found
        for name in names:
            if name.startswith(".") or not name.endswith(".json"):
                continue
            snapshot_id = name[: -len(".json")]
            info = self._read_sidecar(snapshot_id)
            if info is not None:
                found[snapshot_id] = info
        return found

    def _read_sidecar(self, snapshot_id: str) -> dict[str, Any] | None:
        if not _is_safe_id(snapshot_id):
            return None
        try:
            with open(os.path.join(self._snap_dir, snapshot_id + ".json"), encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(info, dict) or not os.path.isfile(os.path.join(self._snap_dir, snapshot_id)):
            return None
        return info

    @staticmethod
    def _snapshot_from(snapshot_id: str, info: Mapping[str, Any]) -> Snapshot:
        created = info.get("created_at")
        return Snapshot(
            id=snapshot_id,
            volume_id=str(info.get("volume_id", "")),
            size=int(info.get("size", 0)),
            created_at=_dt.datetime.fromisoformat(created) if isinstance(created, str) else None,
        )

    def create_snapshot(self, volume_id: str) -> Snapshot:
        snapshot_id = str(uuid.uuid4())
        image = os.path.join(self._snap_dir, snapshot_id)
        partial = os.path.join(self._snap_dir, f".partial-{snapshot_id}")
        with self._lock_for(volume_id):
            src_path = self._volume_path(volume_id)
            created_at = _dt.datetime.now(_dt.UTC)
            src = os.open(src_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                size = os.fstat(src).st_size
                dst = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                try:
                    method = clone_or_copy(src, dst, size)
                    os.fsync(dst)
                finally:
                    os.close(dst)
            except BaseException:
                _unlink_quietly(partial)
                raise
            finally:
                os.close(src)
            # Still under the volume's lock, so destroy_volume sees this snapshot or none of it.
            os.rename(partial, image)
            info = {
                "volume_id": volume_id,
                "size": size,
                "created_at": created_at.isoformat(),
                "method": method,
            }
            _write_json_atomically(os.path.join(self._snap_dir, snapshot_id + ".json"), info)
        LOG.debug("snapshot %s of volume %s taken by %s", snapshot_id, volume_id, method)
        return self._snapshot_from(snapshot_id, info)

    def snapshot_method(self, snapshot_id: str) -> str:
        """How the snapshot was taken: ``reflink`` or ``sparse-copy``.  Raises ``SnapshotNotFound``."""
        info = self._read_sidecar(snapshot_id)
        if info is None:
            raise exceptions.SnapshotNotFound(snapshot_id=snapshot_id)
        return str(info.get("method", "unknown"))

    def list_snapshots(self, volume_id: str | None = None) -> list[Snapshot]:
        snapshots = [
            self._snapshot_from(sid, info)
            for sid, info in self._sidecars().items()
            if volume_id is None or info.get("volume_id") == volume_id
        ]
        return sorted(snapshots, key=lambda s: s.id)

    def delete_snapshot(self, snapshot_id: str) -> None:
        if not _is_safe_id(snapshot_id):
            return
        # Sidecar first: a snapshot without its sidecar is no longer listed.
        _unlink_quietly(os.path.join(self._snap_dir, snapshot_id + ".json"))
        _unlink_quietly(os.path.join(self._snap_dir, snapshot_id))

    # -- data --------------------------------------------------------------

    def open_snapshot(self, snapshot_id: str) -> BlockReader:
        if self._read_sidecar(snapshot_id) is None:
            raise exceptions.SnapshotNotFound(snapshot_id=snapshot_id)
        try:
            return LoopbackReader(os.path.join(self._snap_dir, snapshot_id), f"snapshot {snapshot_id}")
        except FileNotFoundError:
            raise exceptions.SnapshotNotFound(snapshot_id=snapshot_id) from None

    def open_volume_reader(self, volume_id: str) -> BlockReader:
        try:
            return LoopbackReader(self._volume_path(volume_id), f"volume {volume_id}")
        except FileNotFoundError:
            raise exceptions.VolumeNotFound(volume_id=volume_id) from None

    def open_volume_writer(self, volume_id: str) -> BlockWriter:
        try:
            return LoopbackWriter(self._volume_path(volume_id), volume_id, self._lock_for(volume_id))
        except FileNotFoundError:
            raise exceptions.VolumeNotFound(volume_id=volume_id) from None

    # -- capacity ----------------------------------------------------------

    def stats(self) -> BackendStats:
        vfs = os.statvfs(self.path)
        allocated = 0
        for directory in (self.path, self._snap_dir):
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name.startswith(".") and directory == self.path:
                    continue
                try:
                    if entry.is_file(follow_symlinks=False) and not entry.name.endswith(".json"):
                        allocated += entry.stat(follow_symlinks=False).st_blocks * 512
                except FileNotFoundError:
                    continue
        pool = PoolStats(
            name=self.path,
            total_capacity=vfs.f_blocks * vfs.f_frsize,
            free_capacity=vfs.f_bavail * vfs.f_frsize,
            allocated_capacity=allocated,
        )
        return BackendStats(backend="loopback", pools=(pool,))


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _write_json_atomically(path: str, value: Mapping[str, Any]) -> None:
    tmp = f"{os.path.dirname(path)}/.tmp-{uuid.uuid4()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
