"""The loopback directory's layout: which names are volumes, and the snapshot files under ``.snapshots/``.

::

    <name>                      a volume: every regular file whose name does not start with '.' and is a
                                usable volume name (:func:`validate_name`; others are ignored and logged)
    .staged-<name>              a staged volume (being restored), published by a link to <name>
    .snapshots/<id>             a snapshot image (reflink clone or sparse copy of its volume, or a hard
                                link to an earlier snapshot's image when the volume did not change since)
    .snapshots/<id>.json        its sidecar: {"volume_id", "size", "created_at", "method", "tags",
                                "image_stat"} (the volume image's stat when copied, or null:
                                :class:`strongroom.block.loopback.changes.ImageStat`)
    .snapshots/.partial-<id>    an image being made (never listed)
    .snapshots/.tmp-<uuid>      a sidecar being written (never listed)

Whoever makes a hidden file (a staged volume, a partial image, a sidecar being written) holds an
exclusive ``flock`` on it until it is published or removed; :func:`remove_if_abandoned` removes such
a file only when it can take that lock, that is when its maker (in any process) is gone.  A restore
overwriting a published volume holds the same lock on it (:func:`hold_for_overwrite`) while it writes.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import json
import os
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from strongroom import exceptions, validation
from strongroom.block.base import BlockWriter, HoldingWriter
from strongroom.block.names import StagedNames

SNAPSHOT_DIR = ".snapshots"
MAX_NAME_BYTES = 200
STAGED_PREFIX = ".staged-"
#: Prefixes of the hidden files under ``.snapshots`` a maker holds locked while it writes them.
PARTIAL_PREFIX = ".partial-"
TMP_PREFIX = ".tmp-"


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
    unprintable = validation.problem(name, validation.Rule.SEGMENT)  # no newline, ESC, bidi override...
    if unprintable is not None:
        raise exceptions.InvalidInput(reason=f"volume name {name!r} {unprintable}")
    return name


NAMES = StagedNames(STAGED_PREFIX, validate_name)
#: Whether a value could name a volume or snapshot file (so joining it to a directory stays inside).
is_safe_id = NAMES.is_valid
#: The id (and file name) of the staged volume that will be published as a name.
staged_id = NAMES.staged_id
name_of_staged = NAMES.name_of_staged


#: Times :func:`create_locked` makes its file again after a collector removed it before it was locked.
CREATE_ATTEMPTS = 10


def create_locked(path: str) -> int:
    """A new file at ``path`` (``FileExistsError`` if there is one), open for writing and locked by its maker.

    Between the file's creation and its lock, a collector in another process may take it for an
    abandoned one (:func:`remove_if_abandoned`: no lock held) and unlink it.  So once locked, the maker
    checks that ``path`` is still its file, and makes it again if not: from that check on, no collector
    can lock it.
    """
    for _ in range(CREATE_ATTEMPTS):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        if _locked_as(fd, path):
            return fd
    raise OSError(errno.EAGAIN, f"{path} was removed by a collector {CREATE_ATTEMPTS} times as it was made")


def _locked_as(fd: int, path: str) -> bool:
    """Lock ``fd`` (waiting for its holder); True if ``path`` still names that file then, else close ``fd``:
    a collector unlinked it while the maker waited."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.path.samestat(os.fstat(fd), os.lstat(path)):
            return True
    except FileNotFoundError:
        pass  # unlinked by a collector while we waited for the lock
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return False


#: errnos of ``link`` meaning "no second name for this file here": the caller copies instead.
_NO_LINK = {errno.EMLINK, errno.EPERM, errno.EXDEV, errno.EOPNOTSUPP, errno.ENOENT}


def link_locked(source: str, path: str) -> int | None:
    """A new name ``path`` (``FileExistsError`` if taken) for the existing file ``source``, open read-only
    and locked by its maker as :func:`create_locked` leaves a new file; None when ``source`` is gone or
    cannot be linked.  The lock is on the inode both names share: a collector takes neither for abandoned
    while it is held, and another maker linking the same file waits for it."""
    for _ in range(CREATE_ATTEMPTS):
        try:
            os.link(source, path, follow_symlinks=False)
        except OSError as err:
            if err.errno in _NO_LINK:
                return None
            raise
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue  # unlinked by a collector before we opened it
        if _locked_as(fd, path):
            return fd
    raise OSError(errno.EAGAIN, f"{path} was removed by a collector {CREATE_ATTEMPTS} times as it was made")


def hold_for_overwrite(path: str, volume_id: str) -> int:
    """A descriptor of the published volume file ``path`` holding its exclusive ``flock`` (what a restore
    overwriting it holds while it writes).  A published file has no maker's lock: this lock is taken by
    overwriters alone.  ``VolumeNotFound`` if there is no such file, ``VolumeInUse`` if another holder, in
    any process, has it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise exceptions.VolumeNotFound(volume_id=volume_id) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise exceptions.VolumeInUse(volume_id=volume_id, reason="another restore is writing it") from None
        raise
    return fd


def overwriter_holding(path: str, volume_id: str, open_writer: Callable[[], BlockWriter]) -> BlockWriter:
    """``open_writer()`` for the volume file ``path``, holding its overwrite lock until the writer is closed."""
    held = hold_for_overwrite(path, volume_id)
    try:
        writer = open_writer()
    except BaseException:
        os.close(held)
        raise
    return HoldingWriter(writer, functools.partial(os.close, held))


def remove_if_abandoned(path: str, still_orphan: Callable[[], bool] = lambda: True) -> bool:
    """Remove ``path`` if no process holds its maker's lock (and ``still_orphan()`` holds under the lock)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False  # its maker is alive
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.lstat(path))
        except FileNotFoundError:
            return False
        if not same or not still_orphan():
            return False
        os.unlink(path)
        return True
    finally:
        os.close(fd)


class SnapshotFiles:
    """The ``.snapshots`` directory: a snapshot exists when both its image and its sidecar do."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def image(self, snapshot_id: str) -> str:
        return os.path.join(self.directory, snapshot_id)

    def partial(self, snapshot_id: str) -> str:
        """Where the image is made before :meth:`publish` renames it into place."""
        return os.path.join(self.directory, f".partial-{snapshot_id}")

    def _sidecar(self, snapshot_id: str) -> str:
        return os.path.join(self.directory, snapshot_id + ".json")

    def read(self, snapshot_id: str) -> dict[str, Any] | None:
        """The sidecar of an existing snapshot, or None (unsafe id, no image, unreadable sidecar)."""
        if not is_safe_id(snapshot_id):
            return None
        try:
            with open(self._sidecar(snapshot_id), encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(info, dict) or not os.path.isfile(self.image(snapshot_id)):
            return None
        return info

    def all(self) -> dict[str, dict[str, Any]]:
        """Every existing snapshot's sidecar by snapshot id."""
        found: dict[str, dict[str, Any]] = {}
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return found
        for name in names:
            if name.startswith(".") or not name.endswith(".json"):
                continue
            snapshot_id = name[: -len(".json")]
            info = self.read(snapshot_id)
            if info is not None:
                found[snapshot_id] = info
        return found

    def publish(self, snapshot_id: str, info: Mapping[str, Any]) -> None:
        """Image into place first, then the sidecar (atomically): the snapshot is listed only when whole."""
        os.rename(self.partial(snapshot_id), self.image(snapshot_id))
        _write_json_atomically(self._sidecar(snapshot_id), info)

    def leftovers(self) -> list[str]:
        """Remove abandoned partial images, sidecars being written and images without a sidecar."""
        removed: list[str] = []
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return removed
        for name in names:
            path = os.path.join(self.directory, name)
            if name.startswith((PARTIAL_PREFIX, TMP_PREFIX)):
                gone = remove_if_abandoned(path)
            elif not name.startswith(".") and not name.endswith(".json"):
                sidecar = self._sidecar(name)
                if os.path.exists(sidecar):
                    continue
                gone = remove_if_abandoned(path, functools.partial(_missing, sidecar))
            else:
                continue
            if gone:
                removed.append(path)
        return removed

    def delete(self, snapshot_id: str) -> None:
        """Idempotent.  Sidecar first: a snapshot without its sidecar is no longer listed."""
        if not is_safe_id(snapshot_id):
            return
        unlink_quietly(self._sidecar(snapshot_id))
        unlink_quietly(self.image(snapshot_id))


def _missing(path: str) -> bool:
    return not os.path.exists(path)


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _write_json_atomically(path: str, value: Mapping[str, Any]) -> None:
    tmp = f"{os.path.dirname(path)}/{TMP_PREFIX}{uuid.uuid4()}"
    with open(create_locked(tmp), "w", encoding="utf-8") as f:
        json.dump(value, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
        os.rename(tmp, path)  # still locked: a collector never takes it for an abandoned one
