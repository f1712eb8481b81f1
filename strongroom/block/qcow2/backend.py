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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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
    merge_extents,
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
    holds_bitmaps,
    is_snapshot_id,
    is_volume_name,
    name_of_staged,
    node_name,
    staged_id,
    validate_name,
    virtual_size,
)
from strongroom.block.qcow2.qmp import QmpError
from strongroom.block.qcow2.tracking import (
    GRANULARITY,
    Bitmap,
    bitmap_name,
    dirty_extents,
    intervals,
    parse_bitmaps,
    tidy_actions,
)

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


@dataclass(frozen=True)
class _View:
    """A fleecing view the running daemon serves: its overlay nodes (the exported top first; the last is
    the backup job's target, backed by the live node) and its copy-before-write job."""

    nodes: tuple[str, ...]
    job: str


def _top(node: str) -> str:
    """The name of the pass-through node above image node ``node`` that its writable export uses."""
    return "w" + node[1:]


def _stat(path: str) -> list[int] | None:
    """What shows a file was written since: inode, size, mtime and ctime (ns)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


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
        #: Snapshot id -> the fleecing view the running daemon serves.
        self._views: dict[str, _View] = {}
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
            resumable = self._resumable(volume_id)  # before qemu opens (and so touches) the image
            self._qmp("blockdev-add", {"driver": "qcow2", "node-name": node, "discard": "unmap",
                                       "file": {"driver": "file", "filename": self.dir.image(volume_id)}},
                      doing=f"opening image {volume_id}")
            top = _top(node)
            try:
                # A pass-through node above the image carries its export, so that it stays above the
                # copy-before-write filters that snapshot jobs put on the image (each export of the image
                # itself would have to go above them all).
                self._qmp("blockdev-add", {"driver": "raw", "node-name": top, "file": node, "discard": "unmap"},
                          doing=f"opening image {volume_id}")
                self._resume_views(volume_id, node, resumable)  # before anything can write to the image
                self._export_live(node, volume_id)
            except BaseException:
                for snapshot_id in [s for s in resumable if s in self._views]:
                    self._end_view(self._views.pop(snapshot_id))
                for added in (top, node):
                    with contextlib.suppress(exceptions.BlockError):
                        self._qmp("blockdev-del", {"node-name": added})
                raise
            self._attached[volume_id] = node
            return node

    def _export_live(self, node: str, volume_id: str) -> None:
        # Exported under its volume id: a tool (or a VM) may write to the live image through it.
        self._qmp("block-export-add", {"type": "nbd", "id": _top(node), "node-name": _top(node),
                                       "name": volume_id, "writable": True}, doing=f"exporting image {volume_id}")

    def _resumable(self, volume_id: str) -> dict[str, dict[str, Any]]:
        """Sidecars of ``volume_id``'s snapshots whose views a clean stop left whole (``resume``): the image
        and the newest overlay are as the stopped daemon left them."""
        found = {}
        image = _stat(self.dir.image(volume_id))
        for snapshot_id, info in self.dir.sidecars().items():
            resume = info.get("resume")
            if info.get("volume_id") != volume_id or not isinstance(resume, dict) or snapshot_id in self._views:
                continue
            newest = self.dir.overlay_files(snapshot_id, info)[-1]
            if resume.get("image") == image and resume.get("overlay") == _stat(
                    os.path.join(self.dir.snapshots, newest)):
                found[snapshot_id] = info
            else:
                LOG.warning("%s: snapshot %s of image %s cannot be served again: the image or its overlay "
                            "changed while no daemon held them", self.what, snapshot_id, volume_id)
                self.dir.write_sidecar(snapshot_id, {k: v for k, v in info.items() if k != "resume"})
        return found

    def _resume_views(self, volume_id: str, live: str, resumable: Mapping[str, dict[str, Any]]) -> None:
        size = virtual_size(self.dir.image(volume_id))
        assert size is not None
        for snapshot_id, info in resumable.items():
            try:
                self._restack(snapshot_id, info, live, size)
            except (exceptions.BlockError, OSError) as err:
                LOG.warning("%s: snapshot %s of image %s cannot be served again: %s", self.what, snapshot_id,
                            volume_id, err)

    def _restack(self, snapshot_id: str, info: Mapping[str, Any], live: str, size: int) -> None:
        """Serve snapshot ``snapshot_id``'s view again over a new empty overlay below its others (the
        copy-before-write job writes there, never over what the older overlays saved)."""
        files = self.dir.overlay_files(snapshot_id, info)
        n = len(files)
        while os.path.lexists(os.path.join(self.dir.snapshots, f"{snapshot_id}.{n}.qcow2")):
            n += 1  # a leftover of a restart that died half way (reclaim_leftovers removes it)
        new = f"{snapshot_id}.{n}.qcow2"
        path = os.path.join(self.dir.snapshots, new)
        try:
            fd = create_locked(path)  # held until the sidecar lists it: never taken for a leftover
        except OSError as err:
            raise exceptions.BlockError(reason=f"{self.what}: creating {path}: {err}") from err
        try:
            try:
                self._qemu_img("create", "-q", "-f", "qcow2", path, str(size))
                view = self._start_view(snapshot_id, [*files, new], live, [])
            except BaseException:
                os.unlink(path)
                raise
            updated = {k: v for k, v in info.items() if k != "resume"}
            updated.update(overlays=[*files, new], daemon=self.daemon.instance)
            try:
                self.dir.write_sidecar(snapshot_id, updated)
            except BaseException:
                self._end_view(view)
                os.unlink(path)
                raise
            self._views[snapshot_id] = view
        finally:
            os.close(fd)

    def _start_view(self, snapshot_id: str, files: list[str], live: str,
                    actions: list[tuple[str, dict[str, Any]]]) -> _View:
        """Open the overlays ``files`` (top first) as a chain over ``live``, start the copy-before-write job
        into the last one in one transaction with ``actions``, and export the top read-only."""
        nodes = tuple(node_name("s", snapshot_id if i == 0 else f"{snapshot_id}.{i}") for i in range(len(files)))
        job = "j" + nodes[-1][1:]
        added: list[str] = []
        started = False
        try:
            for i in reversed(range(len(files))):
                spec: dict[str, Any] = {
                    "driver": "qcow2", "node-name": nodes[i],
                    "file": {"driver": "file", "filename": os.path.join(self.dir.snapshots, files[i])},
                    "backing": live if i == len(files) - 1 else nodes[i + 1]}
                if i < len(files) - 1:
                    spec["read-only"] = True
                self._qmp("blockdev-add", spec, doing=f"opening the fleecing overlay of snapshot {snapshot_id}")
                added.append(nodes[i])
            self._hold_directory()
            try:
                self.daemon.transaction([*actions, ("blockdev-backup", {"device": live, "target": nodes[-1],
                                                                        "sync": "none", "job-id": job})])
            except QmpError as err:
                raise exceptions.BlockError(
                    reason=f"{self.what}: snapshot {snapshot_id}: {err.desc}") from err
            started = True
            self._qmp("block-export-add", {"type": "nbd", "id": nodes[0], "node-name": nodes[0],
                                           "name": nodes[0], "writable": False},
                      doing=f"exporting snapshot {snapshot_id}")
        except BaseException:
            self._end_view(_View(tuple(reversed(added)), job if started else ""))
            raise
        return _View(nodes, job)

    def _detach(self, volume_id: str) -> None:
        with self._lock:
            node = self._attached.pop(volume_id, None)
            if node is None or not self.daemon.alive():
                return
            self._remove_export(_top(node))
            self._qmp("blockdev-del", {"node-name": _top(node)}, doing=f"closing image {volume_id}")
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
        overlay = self.dir.overlay(snapshot_id)
        with self._lock:
            live = self._attach(volume.id)
            os.makedirs(self.dir.snapshots, exist_ok=True)
            fd = create_locked(overlay)  # held until the sidecar is written: never taken for a leftover
            try:
                self._qemu_img("create", "-q", "-f", "qcow2", overlay, str(volume.size))
                bitmaps = self._tidy(volume.id, live)
                seqs = [b.seq for b in bitmaps] + [i["seq"] for i in self._sidecars_of(volume.id).values()]
                seq = max([time.time_ns(), *(s + 1 for s in seqs)])
                # The interval that ends stops recording, the next starts, at the snapshot's instant.
                switch: list[tuple[str, dict[str, Any]]] = [
                    ("block-dirty-bitmap-disable", {"node": live, "name": b.name})
                    for b in bitmaps if b.recording]
                if holds_bitmaps(self.dir.image(volume.id)):
                    switch.append(("block-dirty-bitmap-add", {
                        "node": live, "name": bitmap_name(seq, snapshot_id), "persistent": True,
                        "granularity": GRANULARITY}))
                view = self._start_view(snapshot_id, [os.path.basename(overlay)], live, switch)
                try:
                    created_at = _dt.datetime.now(_dt.UTC)
                    self.dir.write_sidecar(snapshot_id, {
                        "volume_id": volume.id, "size": volume.size, "created_at": created_at.isoformat(),
                        "tags": kept, "daemon": self.daemon.instance, "seq": seq,
                        "overlays": [os.path.basename(overlay)]})
                except BaseException:
                    self._end_view(view)
                    raise
                self._views[snapshot_id] = view
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(overlay)
                raise
            finally:
                os.close(fd)
        LOG.debug("%s: snapshot %s of %s taken", self.what, snapshot_id, volume.id)
        return Snapshot(id=snapshot_id, volume_id=volume.id, size=volume.size, created_at=created_at, tags=kept)

    # -- changed-block tracking (``tracking``) ------------------------------------------------------------

    def _sidecars_of(self, volume_id: str) -> dict[str, dict[str, Any]]:
        """Sidecars of ``volume_id``'s snapshots that have a place in its bitmap chain (``seq``)."""
        return {sid: info for sid, info in self.dir.sidecars().items()
                if info.get("volume_id") == volume_id and type(info.get("seq")) is int}

    def _bitmaps(self, live: str) -> list[Bitmap]:
        for node in self._qmp("query-named-block-nodes", {"flat": True}) or []:
            if node.get("node-name") == live:
                return parse_bitmaps(node.get("dirty-bitmaps") or [])
        raise exceptions.BlockError(reason=f"{self.what}: node {live} is not open")

    def _tidy(self, volume_id: str, live: str) -> list[Bitmap]:
        """Merge the bitmaps of snapshots that are gone into their neighbours (drop an inconsistent chain);
        the chain's bitmaps after that.  A failure is logged: it costs space, never a wrong answer."""
        bitmaps = self._bitmaps(live)
        actions = tidy_actions(live, bitmaps, set(self._sidecars_of(volume_id)))
        if not actions:
            return bitmaps
        if any(b.inconsistent for b in bitmaps):
            LOG.warning("%s: the dirty bitmaps of image %s are inconsistent (its daemon did not close it): "
                        "changes since its snapshots cannot be told; the next snapshot starts a new chain",
                        self.what, volume_id)
        try:
            self.daemon.transaction(actions)
        except QmpError as err:
            LOG.warning("%s: could not tidy the dirty bitmaps of image %s: %s", self.what, volume_id, err.desc)
        return self._bitmaps(live)

    def changed_extents(self, snapshot_id: str, base_snapshot_id: str) -> Iterator[Extent] | None:
        """The union of the dirty bitmaps of the intervals from the base's snapshot to this one (64 KiB
        blocks), plus the tail a growth added; None when a bitmap is missing or inconsistent."""
        new, base = (self._sidecar_or_missing(sid) for sid in (snapshot_id, base_snapshot_id))
        if new["volume_id"] != base["volume_id"] or not isinstance(new.get("size"), int) or \
                not isinstance(base.get("size"), int):
            return None
        if snapshot_id == base_snapshot_id:
            return iter(())
        if type(new.get("seq")) is not int or type(base.get("seq")) is not int or base["size"] > new["size"]:
            return None
        volume_id = str(new["volume_id"])
        if not is_volume_name(volume_id) or not os.path.isfile(self.dir.image(volume_id)):
            return None
        with self._lock:
            live = self._attach(volume_id)
            kept = {sid: info["seq"] for sid, info in self._sidecars_of(volume_id).items()}
            chosen = intervals(self._bitmaps(live), (base["seq"], base_snapshot_id), (new["seq"], snapshot_id),
                               kept)
            if not chosen:
                return None
            extents = self._union(live, [b.name for b in chosen], new["size"])
        if new["size"] > base["size"]:  # grown since: the new tail is all new
            extents.append(Extent(base["size"], new["size"] - base["size"]))
        return iter(merge_extents(extents, new["size"]))

    def _sidecar_or_missing(self, snapshot_id: str) -> dict[str, Any]:
        info = self.dir.read_sidecar(snapshot_id)
        if info is None or not isinstance(info.get("volume_id"), str):
            raise exceptions.SnapshotNotFound(snapshot_id=snapshot_id)
        return info

    def _union(self, live: str, names: list[str], size: int) -> list[Extent]:
        """The dirty extents of the union of bitmaps ``names`` (merged into a temporary disabled bitmap,
        exported over a temporary read-only export of the live node) within ``[0, size)``."""
        temporary = f"strongroom-union-{uuid.uuid4().hex}"
        export = node_name("c", temporary)
        try:
            self.daemon.transaction([
                ("block-dirty-bitmap-add", {"node": live, "name": temporary, "disabled": True,
                                            "persistent": False, "granularity": GRANULARITY}),
                ("block-dirty-bitmap-merge", {"node": live, "target": temporary, "bitmaps": names})])
        except QmpError as err:
            raise exceptions.BlockError(reason=f"{self.what}: merging dirty bitmaps: {err.desc}") from err
        try:
            self._qmp("block-export-add", {"type": "nbd", "id": export, "node-name": live, "name": export,
                                           "writable": False, "bitmaps": [temporary]},
                      doing="exporting a dirty bitmap")
            try:
                return dirty_extents(self.daemon.nbd_socket, export, temporary, size, self.what)
            finally:
                self._remove_export(export)
        finally:
            with contextlib.suppress(exceptions.BlockError):
                self._qmp("block-dirty-bitmap-remove", {"node": live, "name": temporary})

    # -- growth ------------------------------------------------------------------------------------------

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
                live = self._attach(volume.id)
                views = {sid: view for sid, view in self._views.items()
                         if (self.dir.read_sidecar(sid) or {}).get("volume_id") == volume.id}
                self._remove_export_if_idle(_top(live), volume.id, "image")
                try:
                    self._grow(volume.id, live, size, views)
                finally:
                    self._export_live(live, volume.id)
        finally:
            os.close(held)
        LOG.debug("%s: image %s grown to %d bytes", self.what, volume.id, size)
        return self._volume(volume.id)

    def _grow(self, volume_id: str, live: str, size: int, views: Mapping[str, _View]) -> None:
        unexported: list[tuple[str, _View]] = []
        try:
            for snapshot_id, view in views.items():
                self._remove_export_if_idle(view.nodes[0], volume_id, f"snapshot {snapshot_id}")
                unexported.append((snapshot_id, view))
        except BaseException:
            for snapshot_id, view in unexported:
                self._qmp("block-export-add", {"type": "nbd", "id": view.nodes[0], "node-name": view.nodes[0],
                                               "name": view.nodes[0], "writable": False},
                          doing=f"exporting snapshot {snapshot_id}")
            raise
        for snapshot_id, view in views.items():
            self._views.pop(snapshot_id, None)
            self._end_view(view)
        try:
            self._qmp("block_resize", {"node-name": live, "size": size}, doing=f"growing image {volume_id}")
        finally:
            for snapshot_id in views:
                info = self.dir.read_sidecar(snapshot_id)
                if info is None:
                    continue
                try:
                    self._restack(snapshot_id, info, live, virtual_size(self.dir.image(volume_id)) or size)
                except (exceptions.BlockError, OSError) as err:
                    LOG.warning("%s: snapshot %s of image %s can no longer be read after its growth: %s",
                                self.what, snapshot_id, volume_id, err)

    def _remove_export_if_idle(self, export: str, volume_id: str, what: str) -> None:
        """Remove export ``export`` unless a client is connected to it (``VolumeInUse``).  A client that
        just disconnected may still be seen for a moment: asked again for up to a second."""
        deadline = time.monotonic() + min(1.0, self.timeout)
        while True:
            try:
                self.daemon.execute("block-export-del", {"id": export, "mode": "safe"})
                break
            except QmpError as err:
                if "in use" not in err.desc:
                    raise exceptions.BlockError(reason=f"{self.what}: removing the export of {what} of "
                                                f"{volume_id}: {err.desc}") from err
                if time.monotonic() > deadline:
                    raise exceptions.VolumeInUse(
                        volume_id=volume_id, reason=f"a client is connected to the NBD export of its {what}: "
                        f"{err.desc}") from err
                time.sleep(0.02)
        self._remove_export(export)

    def _end_view(self, view: _View) -> None:
        """Stop serving a fleecing view: its export, its copy-before-write job, its nodes (top first)."""
        if not self.daemon.alive() or not view.nodes:
            return
        with contextlib.suppress(exceptions.BlockError):
            self._remove_export(view.nodes[0])
        if view.job:
            with contextlib.suppress(exceptions.BlockError):
                self._qmp("block-job-cancel", {"device": view.job, "force": True})
            deadline = time.monotonic() + self.timeout
            while any(j.get("device") == view.job for j in self._qmp("query-block-jobs") or []):
                if time.monotonic() > deadline:
                    raise exceptions.BlockUnavailable(backend=self.what,
                                                      reason=f"backup job {view.job} does not end")
                time.sleep(0.005)
        for node in view.nodes:
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
            info = self.dir.read_sidecar(snapshot_id) or {}
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.dir.sidecar(snapshot_id))  # first: no longer listed
            view = self._views.pop(snapshot_id, None)
            if view is not None:
                self._end_view(view)
            for name in {*self.dir.overlay_files(snapshot_id, info), os.path.basename(self.dir.overlay(snapshot_id))}:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.dir.snapshots, name))
            volume_id = str(info.get("volume_id"))
            if type(info.get("seq")) is int and is_volume_name(volume_id) and \
                    os.path.isfile(self.dir.image(volume_id)):
                # Its interval joins the one before it: a base before it still sees every change.
                try:
                    self._tidy(volume_id, self._attach(volume_id))
                except exceptions.BlockError as err:
                    LOG.warning("%s: the dirty bitmap of deleted snapshot %s of image %s stays until its next "
                                "snapshot: %s", self.what, snapshot_id, volume_id, err)
        LOG.debug("%s: snapshot %s deleted", self.what, snapshot_id)

    def _listed(self, name: str) -> bool:
        """Is overlay file ``name`` one of its snapshot's (a sidecar that cannot be read keeps all)?"""
        snapshot_id = name.split(".", 1)[0]
        if not os.path.exists(self.dir.sidecar(snapshot_id)):
            return False
        info = self.dir.read_sidecar(snapshot_id)
        return info is None or name in self.dir.overlay_files(snapshot_id, info)

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
            if name.endswith(".qcow2") and not self._listed(name):
                if remove_if_abandoned(path, functools.partial(lambda n: not self._listed(n), name)):
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
            volume_id = str(info.get("volume_id"))
            if snapshot_id not in self._views and isinstance(info.get("resume"), dict) and \
                    is_volume_name(volume_id) and os.path.isfile(self.dir.image(volume_id)):
                self._attach(volume_id)  # the next daemon serves the view a clean stop left whole
            view = self._views.get(snapshot_id)
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
        """Stop the daemon and release the directory.  If it closed its images cleanly, each snapshot view
        it served records the image and overlay as the daemon left them (``resume``): the next daemon serves
        the view again if they are still so, else it is unreadable from now on."""
        with self._lock:
            views = list(self._views) if self.daemon.alive() else []
            clean = self.daemon.stop()
            self._forget_nodes()
            for snapshot_id in views if clean else []:
                info = self.dir.read_sidecar(snapshot_id)
                if info is None or not is_volume_name(info.get("volume_id")):
                    continue
                newest = os.path.join(self.dir.snapshots, self.dir.overlay_files(snapshot_id, info)[-1])
                info.update(daemon=None, resume={"image": _stat(self.dir.image(info["volume_id"])),
                                                 "overlay": _stat(newest)})
                self.dir.write_sidecar(snapshot_id, info)
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


