"""What the running daemon serves for one qcow2 backend: its images and the snapshots' fleecing views.

An image is attached (its qcow2 node, and above it a ``raw`` pass-through node that carries its writable
NBD export) when first used.  A snapshot's view is a chain of overlay nodes over the image's node with a
copy-before-write job into the lowest, its top exported read-only.  :class:`Nodes` starts, restacks and
ends views, and holds what makes one survive a clean daemon restart and a growth of its image: at
``record_resume`` (after a clean stop) each view's sidecar notes the image and the newest overlay as the
daemon left them; the image's next attach serves the views whose files are still so again, each over a
new empty overlay below its others (:mod:`.layout` says why below).  Everything here runs under
:attr:`Nodes.lock`, which the backend shares.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from strongroom import exceptions
from strongroom.block.loopback.layout import create_locked
from strongroom.block.qcow2.daemon import Daemon
from strongroom.block.qcow2.layout import Directory, QemuImg, is_volume_name, node_name, virtual_size
from strongroom.block.qcow2.qmp import QmpError

LOG = logging.getLogger("strongroom.block.qcow2")


@dataclass(frozen=True)
class View:
    """A fleecing view the running daemon serves: its overlay nodes (the exported top first; the last is
    the backup job's target, backed by the live node) and its copy-before-write job."""

    nodes: tuple[str, ...]
    job: str


def top(node: str) -> str:
    """The name of the pass-through node above image node ``node`` that its writable export uses."""
    return "w" + node[1:]


def file_state(path: str) -> list[int] | None:
    """What shows a file was written since: inode, size, mtime and ctime (ns)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class Nodes:
    """The images attached to the backend's daemon and the fleecing views it serves."""

    def __init__(self, directory: Directory, daemon: Daemon, what: str, timeout: float, qemu_img: QemuImg) -> None:
        self.dir = directory
        self.daemon = daemon
        self.what = what
        self.timeout = timeout
        self.qemu_img = qemu_img
        self.lock = threading.RLock()
        #: Volume id -> node name of the images attached to the running daemon (each exported writable).
        self.attached: dict[str, str] = {}
        #: Snapshot id -> the fleecing view the running daemon serves.
        self.views: dict[str, View] = {}
        #: The fd of ``daemon.lock`` while this object runs a daemon: one daemon per directory.
        self._dir_lock: int | None = None
        daemon.on_start.append(self.forget)

    def forget(self) -> None:
        self.attached.clear()
        self.views.clear()

    def qmp(self, command: str, arguments: dict[str, Any] | None = None, doing: str = "") -> Any:
        self.hold_directory()
        try:
            return self.daemon.execute(command, arguments)
        except QmpError as err:
            raise exceptions.BlockError(reason=f"{self.what}: {doing or command}: {err.desc}") from err

    def hold_directory(self) -> None:
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

    def release_directory(self) -> None:
        if self._dir_lock is not None:
            os.close(self._dir_lock)
            self._dir_lock = None

    # -- images ----------------------------------------------------------------------------------------

    def attach(self, volume_id: str) -> str:
        """The node (and export) name of ``volume_id``'s image in the running daemon, attaching it first."""
        with self.lock:
            self.hold_directory()
            self.daemon.ensure()  # a new daemon (the last one died) forgets every attached node first
            node = self.attached.get(volume_id)
            if node is not None:
                return node
            node = node_name("v", volume_id)
            resumable = self._resumable(volume_id)  # before qemu opens (and so touches) the image
            self.qmp("blockdev-add", {"driver": "qcow2", "node-name": node, "discard": "unmap",
                                      "file": {"driver": "file", "filename": self.dir.image(volume_id)}},
                     doing=f"opening image {volume_id}")
            above = top(node)
            try:
                # A pass-through node above the image carries its export, so that it stays above the
                # copy-before-write filters that snapshot jobs put on the image (each export of the image
                # itself would have to go above them all).
                self.qmp("blockdev-add", {"driver": "raw", "node-name": above, "file": node, "discard": "unmap"},
                         doing=f"opening image {volume_id}")
                self._resume_views(volume_id, node, resumable)  # before anything can write to the image
                self.export_live(node, volume_id)
            except BaseException:
                for snapshot_id in [s for s in resumable if s in self.views]:
                    self.end_view(self.views.pop(snapshot_id))
                for added in (above, node):
                    with contextlib.suppress(exceptions.BlockError):
                        self.qmp("blockdev-del", {"node-name": added})
                raise
            self.attached[volume_id] = node
            return node

    def export_live(self, node: str, volume_id: str) -> None:
        # Exported under its volume id: a tool (or a VM) may write to the live image through it.
        self.qmp("block-export-add", {"type": "nbd", "id": top(node), "node-name": top(node),
                                      "name": volume_id, "writable": True}, doing=f"exporting image {volume_id}")

    def detach(self, volume_id: str) -> None:
        with self.lock:
            node = self.attached.pop(volume_id, None)
            if node is None or not self.daemon.alive():
                return
            self.remove_export(top(node))
            self.qmp("blockdev-del", {"node-name": top(node)}, doing=f"closing image {volume_id}")
            self.qmp("blockdev-del", {"node-name": node}, doing=f"closing image {volume_id}")

    def remove_export(self, node: str) -> None:
        with contextlib.suppress(exceptions.BlockError):
            self.qmp("block-export-del", {"id": node, "mode": "hard"})
        deadline = time.monotonic() + self.timeout
        while any(e.get("id") == node for e in self.qmp("query-block-exports") or []):
            if time.monotonic() > deadline:
                raise exceptions.BlockUnavailable(backend=self.what, reason=f"export {node} is not going away")
            time.sleep(0.005)

    def remove_export_if_idle(self, export: str, volume_id: str, what: str) -> None:
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
        self.remove_export(export)

    # -- views -----------------------------------------------------------------------------------------

    def start_view(self, snapshot_id: str, files: list[str], live: str,
                   actions: list[tuple[str, dict[str, Any]]]) -> View:
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
                self.qmp("blockdev-add", spec, doing=f"opening the fleecing overlay of snapshot {snapshot_id}")
                added.append(nodes[i])
            self.hold_directory()
            try:
                self.daemon.transaction([*actions, ("blockdev-backup", {"device": live, "target": nodes[-1],
                                                                        "sync": "none", "job-id": job})])
            except QmpError as err:
                raise exceptions.BlockError(
                    reason=f"{self.what}: snapshot {snapshot_id}: {err.desc}") from err
            started = True
            self.qmp("block-export-add", {"type": "nbd", "id": nodes[0], "node-name": nodes[0],
                                          "name": nodes[0], "writable": False},
                     doing=f"exporting snapshot {snapshot_id}")
        except BaseException:
            self.end_view(View(tuple(reversed(added)), job if started else ""))
            raise
        return View(nodes, job)

    def end_view(self, view: View) -> None:
        """Stop serving a fleecing view: its export, its copy-before-write job, its nodes (top first)."""
        if not self.daemon.alive() or not view.nodes:
            return
        with contextlib.suppress(exceptions.BlockError):
            self.remove_export(view.nodes[0])
        if view.job:
            with contextlib.suppress(exceptions.BlockError):
                self.qmp("block-job-cancel", {"device": view.job, "force": True})
            deadline = time.monotonic() + self.timeout
            while any(j.get("device") == view.job for j in self.qmp("query-block-jobs") or []):
                if time.monotonic() > deadline:
                    raise exceptions.BlockUnavailable(backend=self.what,
                                                      reason=f"backup job {view.job} does not end")
                time.sleep(0.005)
        for node in view.nodes:
            with contextlib.suppress(exceptions.BlockError):
                self.qmp("blockdev-del", {"node-name": node})

    def restack(self, snapshot_id: str, info: Mapping[str, Any], live: str, size: int) -> None:
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
                self.qemu_img("create", "-q", "-f", "qcow2", path, str(size))
                view = self.start_view(snapshot_id, [*files, new], live, [])
            except BaseException:
                os.unlink(path)
                raise
            updated = {k: v for k, v in info.items() if k != "resume"}
            updated.update(overlays=[*files, new], daemon=self.daemon.instance)
            try:
                self.dir.write_sidecar(snapshot_id, updated)
            except BaseException:
                self.end_view(view)
                os.unlink(path)
                raise
            self.views[snapshot_id] = view
        finally:
            os.close(fd)

    def grow(self, volume_id: str, live: str, size: int, views: Mapping[str, View]) -> None:
        """``block_resize`` of image node ``live``, its ``views`` unexported and ended first (qemu resizes
        no image that backs another; ``VolumeInUse`` if a client reads one), then restacked."""
        unexported: list[tuple[str, View]] = []
        try:
            for snapshot_id, view in views.items():
                self.remove_export_if_idle(view.nodes[0], volume_id, f"snapshot {snapshot_id}")
                unexported.append((snapshot_id, view))
        except BaseException:
            for snapshot_id, view in unexported:
                self.qmp("block-export-add", {"type": "nbd", "id": view.nodes[0], "node-name": view.nodes[0],
                                              "name": view.nodes[0], "writable": False},
                         doing=f"exporting snapshot {snapshot_id}")
            raise
        for snapshot_id, view in views.items():
            self.views.pop(snapshot_id, None)
            self.end_view(view)
        try:
            self.qmp("block_resize", {"node-name": live, "size": size}, doing=f"growing image {volume_id}")
        finally:
            for snapshot_id in views:
                info = self.dir.read_sidecar(snapshot_id)
                if info is None:
                    continue
                try:
                    self.restack(snapshot_id, info, live, virtual_size(self.dir.image(volume_id)) or size)
                except (exceptions.BlockError, OSError) as err:
                    LOG.warning("%s: snapshot %s of image %s can no longer be read after its growth: %s",
                                self.what, snapshot_id, volume_id, err)

    # -- across a clean restart ------------------------------------------------------------------------

    def record_resume(self, snapshot_ids: list[str]) -> None:
        """After a clean stop of the daemon that served them: each view's sidecar records the image and
        the newest overlay as the daemon left them (``resume``)."""
        for snapshot_id in snapshot_ids:
            info = self.dir.read_sidecar(snapshot_id)
            if info is None or not is_volume_name(info.get("volume_id")):
                continue
            newest = os.path.join(self.dir.snapshots, self.dir.overlay_files(snapshot_id, info)[-1])
            info.update(daemon=None, resume={"image": file_state(self.dir.image(info["volume_id"])),
                                             "overlay": file_state(newest)})
            self.dir.write_sidecar(snapshot_id, info)

    def _resumable(self, volume_id: str) -> dict[str, dict[str, Any]]:
        """Sidecars of ``volume_id``'s snapshots whose views a clean stop left whole (``resume``): the image
        and the newest overlay are as the stopped daemon left them."""
        found = {}
        image = file_state(self.dir.image(volume_id))
        for snapshot_id, info in self.dir.sidecars().items():
            resume = info.get("resume")
            if info.get("volume_id") != volume_id or not isinstance(resume, dict) or snapshot_id in self.views:
                continue
            newest = self.dir.overlay_files(snapshot_id, info)[-1]
            if resume.get("image") == image and resume.get("overlay") == file_state(
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
                self.restack(snapshot_id, info, live, size)
            except (exceptions.BlockError, OSError) as err:
                LOG.warning("%s: snapshot %s of image %s cannot be served again: %s", self.what, snapshot_id,
                            volume_id, err)
