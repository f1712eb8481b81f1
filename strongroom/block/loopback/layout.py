"""The loopback directory's layout: which names are volumes, and the snapshot files under ``.snapshots/``.

::

    <name>                      a volume: every regular file whose name does not start with '.' and is a
                                usable volume name (:func:`validate_name`; others are ignored and logged)
    .snapshots/<id>             a snapshot image (reflink clone or sparse copy of its volume)
    .snapshots/<id>.json        its sidecar: {"volume_id", "size", "created_at", "method"}
    .snapshots/.partial-<id>    an image being made (never listed)
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from typing import Any

from strongroom import exceptions, validation

SNAPSHOT_DIR = ".snapshots"
MAX_NAME_BYTES = 200


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


def is_safe_id(value: Any) -> bool:
    """Whether ``value`` could name a volume or snapshot file (so joining it to a directory stays inside)."""
    try:
        validate_name(value)
    except exceptions.InvalidInput:
        return False
    return True


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

    def delete(self, snapshot_id: str) -> None:
        """Idempotent.  Sidecar first: a snapshot without its sidecar is no longer listed."""
        if not is_safe_id(snapshot_id):
            return
        unlink_quietly(self._sidecar(snapshot_id))
        unlink_quietly(self.image(snapshot_id))


def unlink_quietly(path: str) -> None:
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
