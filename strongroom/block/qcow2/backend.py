"""The qcow2 block backend: a directory of qcow2 images served by one qemu-storage-daemon, read over NBD."""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import functools
import logging
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from strongroom import exceptions
from strongroom.block.base import (
    BackendStats,
    BlockBackend,
    BlockReader,
    BlockWriter,
    PoolStats,
    Snapshot,
    Volume,
    check_placement,
    check_size,
    check_tags,
)
from strongroom.block.loopback.layout import (
    create_locked,
    hold_for_overwrite,
    overwriter_holding,
    remove_if_abandoned,
)
from strongroom.block.qcow2.daemon import Daemon, instance_alive
from strongroom.block.qcow2.handles import NbdReader, NbdWriter, libnbd
from strongroom.block.qcow2.layout import (
    SECTOR,
    Directory,
    is_snapshot_id,
    is_volume_name,
    name_of_staged,
    node_name,
    staged_id,
    validate_name,
    virtual_size,
)
from strongroom.block.qcow2.qmp import QmpError

LOG = logging.getLogger("strongroom.block.qcow2")

DEFAULT_TIMEOUT = 30.0

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "minLength": 1, "description": "The directory of the qcow2 images."},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600,
                    "description": "Seconds the daemon may take to start or to answer one QMP command."},
        "qemu_storage_daemon": {"type": "string", "minLength": 1,
                                "description": "Path of the qemu-storage-daemon binary (default: from PATH)."},
        "qemu_img": {"type": "string", "minLength": 1,
                     "description": "Path of the qemu-img binary (default: from PATH)."},
    },
    "required": ["path"],
    "additionalProperties": False,
}


class Qcow2Backend(BlockBackend):
    """qcow2 images of one directory; snapshots are fleecing views of the live images (``layout``)."""

    options_schema: ClassVar[dict[str, Any]] = OPTIONS_SCHEMA
    secret_options: ClassVar[frozenset[str]] = frozenset()
    kind: ClassVar[str] = "qcow2"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.dir = Directory(str(self.options["path"]))
        self.what = f"qcow2 block backend at {self.dir.path}"
        self.timeout = float(self.options.get("timeout", DEFAULT_TIMEOUT))
        self.qemu_img = str(self.options.get("qemu_img", "qemu-img"))
        self.daemon = Daemon(self.dir.state, self.what, self.timeout, self.options.get("qemu_storage_daemon"))
        self.daemon.on_start.append(self._forget_nodes)
        self._lock = threading.RLock()
        #: Volume id -> node name of the images attached to the running daemon (each exported writable).
        self._attached: dict[str, str] = {}
        #: Snapshot id -> (node name, backup job id) of the fleecing views the running daemon serves.
        self._views: dict[str, tuple[str, str]] = {}
        #: Staged volume id -> the fd of its file, whose flock tells other processes its maker is alive.
        self._staged: dict[str, int] = {}
        #: The fd of ``daemon.lock`` while this object runs a daemon: one daemon per directory.
        self._dir_lock: int | None = None

    def describe(self) -> dict[str, Any]:
        return {"backend": "qcow2", "path": self.dir.path, "daemon_pid": self.daemon.pid}

    # -- the daemon's nodes --------------------------------------------------------------------------

    def _forget_nodes(self) -> None:
        self._attached.clear()
        self._views.clear()

    def _qmp(self, command: str, arguments: dict[str, Any] | None = None, doing: str = "") -> Any:
        self._hold_directory()
        try:
            return self.daemon.execute(command, arguments)
        except QmpError as err:
            raise exceptions.BlockError(reason=f"{self.what}: {doing or command}: {err.desc}") from err

    def _hold_directory(self) -> None:
        """Take ``daemon.lock`` before starting a daemon: another backend (in any process) serving the same
        directory would fight this one's daemon over the images' locks."""
        if self._dir_lock is not None:
            return
        os.makedirs(self.dir.snapshots, exist_ok=True)
        fd = os.open(os.path.join(self.dir.state, "daemon.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise exceptions.BlockUnavailable(
                    backend=self.what, reason="another Strongroom backend already serves this directory "
                    "through its own qemu-storage-daemon") from None
            raise
        self._dir_lock = fd

    def _attach(self, volume_id: str) -> str:
        """The node (and export) name of ``volume_id``'s image in the running daemon, attaching it first."""
        with self._lock:
            self._hold_directory()
            self.daemon.ensure()  # a new daemon (the last one died) forgets every attached node first
            node = self._attached.get(volume_id)
            if node is not None:
                return node
            node = node_name("v", volume_id)
            self._qmp("blockdev-add", {"driver": "qcow2", "node-name": node, "discard": "unmap",
                                       "file": {"driver": "file", "filename": self.dir.image(volume_id)}},
                      doing=f"opening image {volume_id}")
            try:
                # Exported under its volume id: a tool (or a VM) may write to the live image through it.
                self._qmp("block-export-add", {"type": "nbd", "id": node, "node-name": node, "name": volume_id,
                                               "writable": True}, doing=f"exporting image {volume_id}")
            except exceptions.BlockError:
                with contextlib.suppress(exceptions.BlockError):
                    self._qmp("blockdev-del", {"node-name": node})
                raise
            self._attached[volume_id] = node
            return node

    def _detach(self, volume_id: str) -> None:
        with self._lock:
            node = self._attached.pop(volume_id, None)
            if node is None or not self.daemon.alive():
                return
            self._remove_export(node)
            self._qmp("blockdev-del", {"node-name": node}, doing=f"closing image {volume_id}")

    def _remove_export(self, node: str) -> None:
        with contextlib.suppress(exceptions.BlockError):
            self._qmp("block-export-del", {"id": node, "mode": "hard"})
        deadline = time.monotonic() + self.timeout
        while any(e.get("id") == node for e in self._qmp("query-block-exports") or []):
            if time.monotonic() > deadline:
                raise exceptions.BlockUnavailable(backend=self.what, reason=f"export {node} is not going away")
            time.sleep(0.005)

    # -- volumes -------------------------------------------------------------------------------------

    def _volume(self, volume_id: str, staged: bool = False) -> Volume:
        path = self.dir.image(volume_id)
        size = virtual_size(path)
        if size is None:
            raise exceptions.VolumeNotFound(volume_id=volume_id)
        try:
            created = _dt.datetime.fromtimestamp(os.stat(path).st_mtime, _dt.UTC)
        except OSError:
            created = None
        return Volume(id=volume_id, name=name_of_staged(volume_id) or volume_id, size=size, created_at=created,
                      extra={"path": path}, staged=staged)

    def _published(self, volume_id: Any) -> str:
        if not is_volume_name(volume_id) or not os.path.isfile(self.dir.image(volume_id)):
            raise exceptions.VolumeNotFound(volume_id=volume_id)
        return str(volume_id)

    def _any(self, volume_id: Any) -> str:
        if (is_volume_name(volume_id) or name_of_staged(volume_id)) and os.path.isfile(self.dir.image(volume_id)):
            return str(volume_id)
        raise exceptions.VolumeNotFound(volume_id=volume_id)

    def create_volume(self, size: int, name: str | None = None, *, staged: bool = False,
                      placement: Mapping[str, str] | None = None) -> Volume:
        check_size(size)
        check_placement(self, placement)
        if size % SECTOR:
            raise exceptions.InvalidInput(reason=f"a qcow2 volume's size must be a multiple of {SECTOR} bytes, "
                                          f"not {size}")
        name = validate_name(name) if name is not None else f"volume-{uuid.uuid4()}"
        volume_id = staged_id(name) if staged else name
        os.makedirs(self.dir.path, exist_ok=True)
        with self._lock:
            for taken in (name, staged_id(name)):  # taken, or reserved by its staged twin
                if os.path.lexists(self.dir.image(taken)):
                    raise exceptions.VolumeExists(volume_id=name)
            path = self.dir.image(volume_id)
            try:
                fd = create_locked(path)
            except FileExistsError:
                raise exceptions.VolumeExists(volume_id=name) from None
            try:
                self._qemu_img("create", "-q", "-f", "qcow2", path, str(size))
            except BaseException:
                os.unlink(path)
                os.close(fd)
                raise
            if staged:
                self._staged[volume_id] = fd
            else:
                os.close(fd)
        LOG.debug("%s: created %simage %s (%d bytes)", self.what, "staged " if staged else "", volume_id, size)
        return self._volume(volume_id, staged=staged)

    def _qemu_img(self, *args: str) -> None:
        try:
            subprocess.run([self.qemu_img, *args], check=True, capture_output=True, timeout=self.timeout)
        except FileNotFoundError as err:
            raise exceptions.ConfigError(
                reason=f"{self.what}: qemu-img is missing: install the Debian package qemu-utils") from err
        except subprocess.CalledProcessError as err:
            raise exceptions.BlockError(
                reason=f"{self.what}: qemu-img {args[0]}: {err.stderr.decode('utf-8', 'replace').strip()}") from err
        except subprocess.TimeoutExpired as err:
            raise exceptions.BlockUnavailable(backend=self.what, reason=f"qemu-img {args[0]} timed out") from err

    def publish_volume(self, volume_id: str) -> Volume:
        name = name_of_staged(volume_id)
        if name is None or not os.path.isfile(self.dir.image(volume_id)):
            raise exceptions.VolumeNotFound(volume_id=volume_id)
        with self._lock:
            self._detach(volume_id)  # the daemon flushes and closes it: every write is on disk
            try:
                os.link(self.dir.image(volume_id), self.dir.image(name))  # atomic, refused if taken
            except FileExistsError:
                raise exceptions.VolumeExists(volume_id=name) from None
            os.unlink(self.dir.image(volume_id))
            self._release(volume_id)
        _fsync_dir(self.dir.path)
        LOG.debug("%s: published image %s", self.what, name)
        return self._volume(name)

    def _release(self, volume_id: str) -> None:
        fd = self._staged.pop(volume_id, None)
        if fd is not None:
            os.close(fd)

    def discard_volume(self, volume_id: str) -> None:
        if name_of_staged(volume_id) is None:
            return
        with self._lock:
            self._detach(volume_id)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.dir.image(volume_id))
            self._release(volume_id)

    def list_staged_volumes(self) -> list[Volume]:
        return self._list(staged=True)

    def list_volumes(self) -> list[Volume]:
        return self._list(staged=False)

    def _list(self, staged: bool) -> list[Volume]:
        found = []
        for volume_id in self.dir.volume_ids():
            if (name_of_staged(volume_id) is not None) != staged or (not staged and not is_volume_name(volume_id)):
                continue
            with contextlib.suppress(exceptions.VolumeNotFound):  # removed meanwhile, or no qcow2 image
                found.append(self._volume(volume_id, staged=staged))
        return found

    def get_volume(self, volume_id: str) -> Volume:
        return self._volume(self._published(volume_id))

    def destroy_volume(self, volume_id: str) -> None:
        volume_id = self._published(volume_id)
        with self._lock:
            snaps = [s.id for s in self.list_snapshots(volume_id)]
            if snaps:
                raise exceptions.Conflict(
                    reason=f"volume {volume_id} still has snapshots ({', '.join(snaps)}); delete them first")
            self._detach(volume_id)
            try:
                os.unlink(self.dir.image(volume_id))
            except FileNotFoundError:
                raise exceptions.VolumeNotFound(volume_id=volume_id) from None
        LOG.debug("%s: destroyed image %s", self.what, volume_id)

    # -- snapshots -----------------------------------------------------------------------------------

    def create_snapshot(self, volume_id: str, tags: Mapping[str, str] | None = None) -> Snapshot:
        kept = check_tags(tags)
        volume = self.get_volume(volume_id)
        snapshot_id = str(uuid.uuid4())
        node, job = node_name("s", snapshot_id), "j" + node_name("s", snapshot_id)[1:]
        overlay = self.dir.overlay(snapshot_id)
        with self._lock:
            live = self._attach(volume.id)
            os.makedirs(self.dir.snapshots, exist_ok=True)
            fd = create_locked(overlay)  # held until the sidecar is written: never taken for a leftover
            try:
                self._qemu_img("create", "-q", "-f", "qcow2", overlay, str(volume.size))
                self._qmp("blockdev-add", {"driver": "qcow2", "node-name": node, "backing": live,
                                           "file": {"driver": "file", "filename": overlay}},
                          doing=f"opening the fleecing overlay of snapshot {snapshot_id}")
                try:
                    # One transaction: later actions (a dirty bitmap switched at the same instant) join it.
                    self._hold_directory()
                    self.daemon.transaction([("blockdev-backup", {"device": live, "target": node,
                                                                  "sync": "none", "job-id": job})])
                    self._qmp("block-export-add", {"type": "nbd", "id": node, "node-name": node, "name": node,
                                                   "writable": False},
                              doing=f"exporting snapshot {snapshot_id}")
                    created_at = _dt.datetime.now(_dt.UTC)
                    self.dir.write_sidecar(snapshot_id, {
                        "volume_id": volume.id, "size": volume.size, "created_at": created_at.isoformat(),
                        "tags": kept, "daemon": self.daemon.instance})
                except BaseException:
                    self._end_view(node, job)
                    raise
                self._views[snapshot_id] = (node, job)
            except QmpError as err:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(overlay)
                raise exceptions.BlockError(reason=f"{self.what}: snapshot of {volume.id}: {err.desc}") from err
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(overlay)
                raise
            finally:
                os.close(fd)
        LOG.debug("%s: snapshot %s of %s taken", self.what, snapshot_id, volume.id)
        return Snapshot(id=snapshot_id, volume_id=volume.id, size=volume.size, created_at=created_at, tags=kept)

    def _end_view(self, node: str, job: str) -> None:
        """Stop serving a fleecing view: its export, its copy-before-write job, its node."""
        if not self.daemon.alive():
            return
        with contextlib.suppress(exceptions.BlockError):
            self._remove_export(node)
        with contextlib.suppress(exceptions.BlockError):
            self._qmp("block-job-cancel", {"device": job, "force": True})
        deadline = time.monotonic() + self.timeout
        while any(j.get("device") == job for j in self._qmp("query-block-jobs") or []):
            if time.monotonic() > deadline:
                raise exceptions.BlockUnavailable(backend=self.what, reason=f"backup job {job} does not end")
            time.sleep(0.005)
        with contextlib.suppress(exceptions.BlockError):
            self._qmp("blockdev-del", {"node-name": node})

    def _snapshot(self, snapshot_id: str, info: Mapping[str, Any]) -> Snapshot | None:
        tags = info.get("tags")
        created = info.get("created_at")
        if not isinstance(info.get("volume_id"), str) or not isinstance(info.get("size"), int):
            return None
        return Snapshot(id=snapshot_id, volume_id=info["volume_id"], size=info["size"],
                        created_at=_dt.datetime.fromisoformat(created) if isinstance(created, str) else None,
                        tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {})

    def list_snapshots(self, volume_id: str | None = None) -> list[Snapshot]:
        found = []
        for snapshot_id, info in sorted(self.dir.sidecars().items()):
            snapshot = self._snapshot(snapshot_id, info)
            if snapshot is not None and (volume_id is None or snapshot.volume_id == volume_id):
                found.append(snapshot)
        return found

    def delete_snapshot(self, snapshot_id: str) -> None:
        if not is_snapshot_id(snapshot_id):
            return
        with self._lock:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.dir.sidecar(snapshot_id))  # first: no longer listed
            view = self._views.pop(snapshot_id, None)
            if view is not None:
                self._end_view(*view)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.dir.overlay(snapshot_id))
        LOG.debug("%s: snapshot %s deleted", self.what, snapshot_id)

    def reclaim_leftovers(self) -> list[str]:
        """Overlays without a sidecar (a snapshot call died before its end) and staged images whose maker
        is gone; a snapshot call or a restore in progress, in any process, holds its file's ``flock``."""
        removed = []
        try:
            names = sorted(os.listdir(self.dir.snapshots))
        except FileNotFoundError:
            names = []
        for name in names:
            path = os.path.join(self.dir.snapshots, name)
            sidecar = self.dir.sidecar(name[: -len(".qcow2")])
            if name.endswith(".qcow2") and not os.path.exists(sidecar):
                if remove_if_abandoned(path, functools.partial(_missing, sidecar)):
                    removed.append(path)
            elif ".json.tmp-" in name and remove_if_abandoned(path):
                removed.append(path)
        for volume in self.list_staged_volumes():
            if volume.id in self._staged:
                continue
            if remove_if_abandoned(self.dir.image(volume.id)):
                removed.append(self.dir.image(volume.id))
        return removed

    # -- data ----------------------------------------------------------------------------------------

    def open_snapshot(self, snapshot_id: str) -> BlockReader:
        info = self.dir.read_sidecar(snapshot_id)
        if info is None:
            raise exceptions.SnapshotNotFound(snapshot_id=snapshot_id)
        with self._lock:
            view = self._views.get(snapshot_id)
            alive = self.daemon.alive()
        if view is None or not alive:
            where = "is another process's" if instance_alive(info.get("daemon")) else "has stopped"
            raise exceptions.BlockError(
                reason=f"{self.what}: snapshot {snapshot_id} of image {info.get('volume_id')} can no longer be "
                f"read: the qemu-storage-daemon that held its point-in-time view {where}; take a new snapshot")
        libnbd()
        return NbdReader(self.daemon.nbd_socket, view[0], self.what,
                         f"snapshot {snapshot_id} of image {info.get('volume_id')}")

    def open_volume_reader(self, volume_id: str) -> BlockReader:
        return self._connect(NbdReader, self._any(volume_id))

    def open_volume_writer(self, volume_id: str) -> BlockWriter:
        return self._connect(NbdWriter, self._any(volume_id))

    def _connect(self, kind: type[NbdReader] | type[NbdWriter], volume_id: str) -> Any:
        """An NBD connection to the live image's export.  A daemon that died since the last call may still
        look alive and refuse it: then, once it is seen gone, a new daemon serves the image (once)."""
        libnbd()
        for attempt in (1, 2):
            self._attach(volume_id)
            try:
                return kind(self.daemon.nbd_socket, volume_id, self.what, f"image {volume_id}")
            except exceptions.BlockUnavailable:
                if attempt == 2 or not self.daemon.died():
                    raise
        raise AssertionError("unreachable")

    def check_overwrite(self, volume_id: str) -> Volume:
        volume = self.get_volume(volume_id)
        os.close(hold_for_overwrite(self.dir.image(self._published(volume_id)), volume_id))
        return volume

    def open_volume_overwriter(self, volume_id: str) -> BlockWriter:
        """Holds the image's overwrite lock (an ``flock`` of its file, which qemu's own locks leave alone)."""
        return overwriter_holding(self.dir.image(self._published(volume_id)), volume_id,
                                  lambda: self.open_volume_writer(volume_id))

    # -- capacity ------------------------------------------------------------------------------------

    def stats(self) -> BackendStats:
        os.makedirs(self.dir.path, exist_ok=True)
        fs = os.statvfs(self.dir.path)
        allocated = 0
        for directory in (self.dir.path, self.dir.snapshots):
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(directory):
                    if entry.name.endswith(".qcow2") and entry.is_file(follow_symlinks=False):
                        allocated += entry.stat(follow_symlinks=False).st_blocks * 512
        return BackendStats(backend="qcow2", pools=(PoolStats(
            name=self.dir.path, total_capacity=fs.f_blocks * fs.f_frsize, free_capacity=fs.f_bavail * fs.f_frsize,
            allocated_capacity=allocated),))

    def close(self) -> None:
        """Stop the daemon (every snapshot it served becomes unreadable) and release the directory."""
        with self._lock:
            self.daemon.stop()
            self._forget_nodes()
            for volume_id in list(self._staged):
                self._release(volume_id)
            if self._dir_lock is not None:
                os.close(self._dir_lock)
                self._dir_lock = None


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _missing(path: str) -> bool:
    return not os.path.exists(path)
