"""What the qcow2 backend keeps in its image directory, the names it gives the daemon's nodes, and the
``qemu-img`` runs that create images.

::

    <name>.qcow2                                  a volume: every qcow2 image whose name (less ``.qcow2``)
                                                  is a usable volume name; its id is that name
    .strongroom-staged-<name>.qcow2               a staged volume (being restored), linked to <name>.qcow2
                                                  on publish; its maker holds a ``flock`` on it until then
    .strongroom/daemon.json, daemon.lock, .log    the running qemu-storage-daemon (:mod:`.daemon`)
    .strongroom/snapshots/<uuid>.qcow2            a snapshot's fleecing overlay: what the live image had
                                                  where it was written since (copy-before-write)
    .strongroom/snapshots/<uuid>.<n>.qcow2        the overlay its view gained at its n-th restart (below)
    .strongroom/snapshots/<uuid>.json             its sidecar {"volume_id", "size", "created_at", "tags",
                                                  "daemon", "seq", "overlays", "resume"}: written last, so
                                                  a snapshot is listed whole

An overlay holds only the blocks overwritten since its snapshot; the rest of the frozen view is the live
image itself, through the daemon that runs the copy-before-write job.  So a snapshot is readable only
while the daemon instance its sidecar names (``daemon``) runs; after that it is still listed with its
tags, so that its taker (or garbage collection) finds and deletes it, but opening it is refused.  An
overlay without its sidecar is what a snapshot call that died half way left: its maker holds a ``flock``
on it while it works, and ``reclaim_leftovers`` removes it once nobody does.

A view is restarted (its copy-before-write job stopped and started again) when the daemon is stopped
cleanly and started again, and when its volume grows (qemu resizes no image that backs another).  A new
job must not copy into the overlay again (that would overwrite the blocks it saved with newer data), so
it copies into a new empty overlay ``<uuid>.<n>.qcow2`` placed *below* the others: the view reads the
oldest overlay first, then the next, then the live image.  ``overlays`` lists them, top first.  ``seq``
orders the volume's snapshots (and names its dirty bitmap: :mod:`.tracking`); ``resume`` is what
``close()`` saw of the image and the newest overlay once the daemon stopped cleanly: a view is restarted
only if both are still so (nothing wrote to the image in between).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import uuid
from collections.abc import Mapping
from typing import Any

from strongroom import exceptions
from strongroom.block.loopback.layout import validate_name as _validate_file_name
from strongroom.block.names import StagedNames

SUFFIX = ".qcow2"
STAGED_PREFIX = ".strongroom-staged-"
STATE_DIR = ".strongroom"
SNAPSHOT_DIR = "snapshots"
#: qcow2's header: magic, version, backing file offset and size, cluster bits, then the virtual size.
HEADER = struct.Struct(">4sIQIIQ")
MAGIC = b"QFI\xfb"
#: A qcow2 image's virtual size is a whole number of sectors.
SECTOR = 512


def validate_name(name: Any) -> str:
    """``name`` if ``<name>.qcow2`` is a safe file name (and its staged twin too), else ``InvalidInput``."""
    name = _validate_file_name(name)
    if len((STAGED_PREFIX + name + SUFFIX).encode("utf-8")) > 255:
        raise exceptions.InvalidInput(reason=f"volume name {name!r} is too long for an image file name")
    return name


NAMES = StagedNames(STAGED_PREFIX, validate_name)
is_volume_name = NAMES.is_valid
staged_id = NAMES.staged_id
name_of_staged = NAMES.name_of_staged


def is_snapshot_id(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def node_name(kind: str, ident: str) -> str:
    """A QMP node (and export) name for a volume (``v``) or snapshot (``s``) id: node names are limited
    to 31 characters of ``[A-Za-z0-9_.-]``, which volume names are not."""
    return kind + hashlib.sha256(ident.encode("utf-8")).hexdigest()[:24]


def _header(path: str) -> tuple[int, int] | None:
    """(version, virtual size) from a qcow2 image's header, or None if ``path`` is no qcow2 image."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER.size)
    except OSError:
        return None
    if len(head) < HEADER.size:
        return None
    magic, version, _boff, _bsize, _bits, size = HEADER.unpack(head)
    return (int(version), int(size)) if magic == MAGIC else None


def virtual_size(path: str) -> int | None:
    """The virtual size in a qcow2 image's header, or None if ``path`` is no qcow2 image.  Read from the
    file, so listing volumes needs no daemon (and works while one has them open)."""
    header = _header(path)
    return header[1] if header else None


def holds_bitmaps(path: str) -> bool:
    """Can the image store persistent dirty bitmaps?  Only qcow2 version 3 (``compat=1.1``, qemu-img's
    default since qemu 1.7) can; a version 2 image is protected without changed-block tracking."""
    header = _header(path)
    return header is not None and header[0] >= 3


class QemuImg:
    """Runs ``qemu-img`` (``create`` of images and overlays); its failures become the backend's errors."""

    def __init__(self, binary: str, what: str, timeout: float) -> None:
        self.binary = binary
        self.what = what
        self.timeout = timeout

    def __call__(self, *args: str) -> None:
        try:
            subprocess.run([self.binary, *args], check=True, capture_output=True, timeout=self.timeout)
        except FileNotFoundError as err:
            raise exceptions.ConfigError(
                reason=f"{self.what}: qemu-img is missing: install the Debian package qemu-utils") from err
        except subprocess.CalledProcessError as err:
            raise exceptions.BlockError(
                reason=f"{self.what}: qemu-img {args[0]}: {err.stderr.decode('utf-8', 'replace').strip()}") from err
        except subprocess.TimeoutExpired as err:
            raise exceptions.BlockUnavailable(backend=self.what, reason=f"qemu-img {args[0]} timed out") from err


class Directory:
    """Paths in one image directory."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.state = os.path.join(self.path, STATE_DIR)
        self.snapshots = os.path.join(self.state, SNAPSHOT_DIR)

    def image(self, volume_id: str) -> str:
        return os.path.join(self.path, volume_id + SUFFIX)

    def volume_ids(self) -> list[str]:
        """Ids of published (``staged=False``) or staged images in the directory, sorted."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        return sorted(n[: -len(SUFFIX)] for n in names if n.endswith(SUFFIX) and len(n) > len(SUFFIX))

    def overlay(self, snapshot_id: str) -> str:
        return os.path.join(self.snapshots, snapshot_id + SUFFIX)

    @staticmethod
    def overlay_files(snapshot_id: str, info: Mapping[str, Any]) -> list[str]:
        """The file names (in :attr:`snapshots`) of a snapshot's overlays, the view's top first: its own
        ``<uuid>.qcow2``, then ``<uuid>.<n>.qcow2`` for each restart of its view (``overlays``)."""
        files = info.get("overlays")
        if isinstance(files, list) and files and all(isinstance(f, str) and f.startswith(snapshot_id + ".")
                                                     and "/" not in f for f in files):
            return list(files)
        return [snapshot_id + SUFFIX]

    def lists_overlay(self, name: str) -> bool:
        """Is overlay file ``name`` one of its snapshot's (a sidecar that cannot be read keeps all)?"""
        snapshot_id = name.split(".", 1)[0]
        if not os.path.exists(self.sidecar(snapshot_id)):
            return False
        info = self.read_sidecar(snapshot_id)
        return info is None or name in self.overlay_files(snapshot_id, info)

    def sidecar(self, snapshot_id: str) -> str:
        return os.path.join(self.snapshots, snapshot_id + ".json")

    def read_sidecar(self, snapshot_id: str) -> dict[str, Any] | None:
        if not is_snapshot_id(snapshot_id):
            return None
        try:
            with open(self.sidecar(snapshot_id), encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def sidecars(self) -> dict[str, dict[str, Any]]:
        found = {}
        try:
            names = os.listdir(self.snapshots)
        except FileNotFoundError:
            return {}
        for name in names:
            if name.endswith(".json"):
                info = self.read_sidecar(name[: -len(".json")])
                if info is not None:
                    found[name[: -len(".json")]] = info
        return found

    def write_sidecar(self, snapshot_id: str, info: Mapping[str, Any]) -> None:
        """Atomically (a temporary file renamed into place, after an fsync): listed whole or not at all."""
        path = self.sidecar(snapshot_id)
        tmp = f"{path}.tmp-{uuid.uuid4()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(dict(info), f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
