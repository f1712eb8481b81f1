"""The qcow2 block backend: a directory of qcow2 images served by one qemu-storage-daemon, read over NBD."""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import logging
import os
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
    check_new_size,
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
from strongroom.block.qcow2.changes import Changes
from strongroom.block.qcow2.daemon import Daemon, instance_alive
from strongroom.block.qcow2.handles import NbdReader, NbdWriter, libnbd
from strongroom.block.qcow2.layout import (
    SECTOR,
    Directory,
    QemuImg,
    is_snapshot_id,
    is_volume_name,
    name_of_staged,
    staged_id,
    validate_name,
    virtual_size,
)
from strongroom.block.qcow2.nodes import Nodes, top

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
        self._qemu_img = QemuImg(self.qemu_img, self.what, self.timeout)
        #: The images and views the daemon serves (``nodes``), their dirty bitmap chains (``changes``).
        self.nodes = Nodes(self.dir, self.daemon, self.what, self.timeout, self._qemu_img)
        self.changes = Changes(self.nodes)
        self._lock = self.nodes.lock
        #: Staged volume id -> the fd of its file, whose flock tells other processes its maker is alive.
        self._staged: dict[str, int] = {}

    def describe(self) -> dict[str, Any]:
        return {"backend": "qcow2", "path": self.dir.path, "daemon_pid": self.daemon.pid}

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

    def publish_volume(self, volume_id: str) -> Volume:
        name = name_of_staged(volume_id)
        if name is None or not os.path.isfile(self.dir.image(volume_id)):
            raise exceptions.VolumeNotFound(volume_id=volume_id)
        with self._lock:
            self.nodes.detach(volume_id)  # the daemon flushes and closes it: every write is on disk
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
            self.nodes.detach(volume_id)
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
            self.nodes.detach(volume_id)
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
        overlay = self.dir.overlay(snapshot_id)
        with self._lock:
            live = self.nodes.attach(volume.id)
            os.makedirs(self.dir.snapshots, exist_ok=True)
            fd = create_locked(overlay)  # held until the sidecar is written: never taken for a leftover
            try:
                self._qemu_img("create", "-q", "-f", "qcow2", overlay, str(volume.size))
                seq, switch = self.changes.next_interval(volume.id, live, snapshot_id)
                view = self.nodes.start_view(snapshot_id, [os.path.basename(overlay)], live, switch)
                try:
                    created_at = _dt.datetime.now(_dt.UTC)
                    self.dir.write_sidecar(snapshot_id, {
                        "volume_id": volume.id, "size": volume.size, "created_at": created_at.isoformat(),
                        "tags": kept, "daemon": self.daemon.instance, "seq": seq,
                        "overlays": [os.path.basename(overlay)]})
                except BaseException:
                    self.nodes.end_view(view)
                    raise
                self.nodes.views[snapshot_id] = view
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(overlay)
                raise
            finally:
                os.close(fd)
        LOG.debug("%s: snapshot %s of %s taken", self.what, snapshot_id, volume.id)
        return Snapshot(id=snapshot_id, volume_id=volume.id, size=volume.size, created_at=created_at, tags=kept)

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
            info = self.dir.read_sidecar(snapshot_id) or {}
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.dir.sidecar(snapshot_id))  # first: no longer listed
            view = self.nodes.views.pop(snapshot_id, None)
            if view is not None:
                self.nodes.end_view(view)
            for name in {*self.dir.overlay_files(snapshot_id, info), os.path.basename(self.dir.overlay(snapshot_id))}:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.dir.snapshots, name))
            volume_id = str(info.get("volume_id"))
            if type(info.get("seq")) is int and is_volume_name(volume_id) and \
                    os.path.isfile(self.dir.image(volume_id)):
                # Its interval joins the one before it: a base before it still sees every change.
                try:
                    self.changes.tidy(volume_id, self.nodes.attach(volume_id))
                except exceptions.BlockError as err:
                    LOG.warning("%s: the dirty bitmap of deleted snapshot %s of image %s stays until its next "
                                "snapshot: %s", self.what, snapshot_id, volume_id, err)
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
            if name.endswith(".qcow2") and not self.dir.lists_overlay(name):
                if remove_if_abandoned(path, functools.partial(lambda n: not self.dir.lists_overlay(n), name)):
                    removed.append(path)
            elif ".json.tmp-" in name and remove_if_abandoned(path):
                removed.append(path)
        for volume in self.list_staged_volumes():
            if volume.id in self._staged:
                continue
            if remove_if_abandoned(self.dir.image(volume.id)):
                removed.append(self.dir.image(volume.id))
        return removed

    # -- changed-block tracking (``changes``) and growth -------------------------------------------------

    def changed_extents(self, snapshot_id: str, base_snapshot_id: str) -> Iterator[Extent] | None:
        """The union of the dirty bitmaps of the intervals from the base's snapshot to this one (64 KiB
        blocks), plus the tail a growth added; None when a bitmap is missing or inconsistent."""
        return self.changes.changed_extents(snapshot_id, base_snapshot_id)

    def extend_volume(self, volume_id: str, size: int) -> Volume:
        """``block_resize`` of the live node.  qemu resizes no image that backs another, so the volume's
        fleecing views are stopped first and served again over new overlays (``layout``); the volume's
        NBD export is taken away meanwhile, so nothing writes to it while no copy-before-write job runs
        (``VolumeInUse`` if a client is connected to it or to one of its snapshots)."""
        volume = self.get_volume(volume_id)
        size = check_new_size(volume, size)
        if size % SECTOR:
            raise exceptions.InvalidInput(reason=f"a qcow2 volume's size must be a multiple of {SECTOR} bytes, "
                                          f"not {size}")
        if size == volume.size:
            return volume
        held = hold_for_overwrite(self.dir.image(volume.id), volume.id)  # no restore starts meanwhile
        try:
            with self._lock:
                live = self.nodes.attach(volume.id)
                views = {sid: view for sid, view in self.nodes.views.items()
                         if (self.dir.read_sidecar(sid) or {}).get("volume_id") == volume.id}
                self.nodes.remove_export_if_idle(top(live), volume.id, "image")
                try:
                    self.nodes.grow(volume.id, live, size, views)
                finally:
                    self.nodes.export_live(live, volume.id)
        finally:
            os.close(held)
        LOG.debug("%s: image %s grown to %d bytes", self.what, volume.id, size)
        return self._volume(volume.id)

    # -- data ----------------------------------------------------------------------------------------

    def open_snapshot(self, snapshot_id: str) -> BlockReader:
        info = self.dir.read_sidecar(snapshot_id)
        if info is None:
            raise exceptions.SnapshotNotFound(snapshot_id=snapshot_id)
        with self._lock:
            volume_id = str(info.get("volume_id"))
            if snapshot_id not in self.nodes.views and isinstance(info.get("resume"), dict) and \
                    is_volume_name(volume_id) and os.path.isfile(self.dir.image(volume_id)):
                self.nodes.attach(volume_id)  # the next daemon serves the view a clean stop left whole
            view = self.nodes.views.get(snapshot_id)
            alive = self.daemon.alive()
        if view is None or not alive:
            where = "is another process's" if instance_alive(info.get("daemon")) else "has stopped"
            raise exceptions.BlockError(
                reason=f"{self.what}: snapshot {snapshot_id} of image {info.get('volume_id')} can no longer be "
                f"read: the qemu-storage-daemon that held its point-in-time view {where}; take a new snapshot")
        libnbd()
        return NbdReader(self.daemon.nbd_socket, view.nodes[0], self.what,
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
            self.nodes.attach(volume_id)
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
        """Stop the daemon and release the directory.  If it closed its images cleanly, each snapshot view
        it served records the image and overlay as the daemon left them (``resume``): the next daemon serves
        the view again if they are still so, else it is unreadable from now on."""
        with self._lock:
            views = list(self.nodes.views) if self.daemon.alive() else []
            clean = self.daemon.stop()
            self.nodes.forget()
            self.nodes.record_resume(views if clean else [])
            for volume_id in list(self._staged):
                self._release(volume_id)
            self.nodes.release_directory()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


