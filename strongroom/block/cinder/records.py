"""What the cinder backend reads of Cinder's records, shared by all its parts: volumes and our snapshots as
one project sees them, their sizes in bytes, and the wait for a status.

What is ours, by Cinder metadata (``strongroom.*`` keys):

* a snapshot we took carries ``strongroom.snapshot`` and one ``strongroom.tag.<key>`` per tag; only
  those are listed, deleted and reclaimed, never the user's;
* a staged volume (a restore being written) is named ``.strongroom-staged-<name>`` and carries
  ``strongroom.staged`` (its maker) and ``strongroom.staged_at``; publishing renames it and drops both,
  so it is listed under its name only once whole;
* ``strongroom.size``: the size in bytes of a volume we made (or extended) to a size Cinder (which counts
  in GiB) cannot express; the volume reads and writes as that many bytes.  Our snapshots carry it too (the
  volume's size in bytes when the snapshot was taken), so a snapshot keeps its size when the volume grows.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from strongroom import exceptions
from strongroom.block.base import BlockBackend, Snapshot, Volume
from strongroom.block.cinder.api import CinderApi
from strongroom.block.cinder.options import CinderConfig

GiB = 1 << 30
SNAPSHOT_MARK = "strongroom.snapshot"
TAG_PREFIX = "strongroom.tag."
STAGED_MARK = "strongroom.staged"
STAGED_AT = "strongroom.staged_at"
SIZE_KEY = "strongroom.size"
STAGED_PREFIX = ".strongroom-staged-"
#: Cinder's limit on a metadata key and value.
MAX_METADATA = 255


class CinderRecords(BlockBackend):
    """The Cinder records of one project (:class:`~strongroom.block.cinder.backend.CinderBackend` sets the
    attributes below in its ``__init__``)."""

    config: CinderConfig
    api: CinderApi
    _clock: Callable[[], float]
    _sleep: Callable[[float], None]
    _lock: threading.Lock
    #: Who this process is in the ``strongroom.snapshot`` and ``strongroom.staged`` marks.
    _maker: str
    #: The project an admin's token reads on behalf of (Keystone; :meth:`for_project`), else None.
    _foreign: str | None = None

    def _own(self, project: Any) -> bool:
        """Whether a record of ``project`` (shown to admins only; None otherwise) is this project's.  For
        another project's view (:attr:`_foreign`) the record must name that project: a record without the
        attribute is one a non-admin sees, its own project's, so never the other project's."""
        if self._foreign:
            return project == self._foreign
        wanted = self.api.project_id
        return project is None or wanted is None or project == wanted

    def _check_writable(self, doing: str) -> None:
        """``Forbidden`` naming both projects when ``doing`` would make something in another project's view
        (:attr:`_foreign`): Cinder makes what a token creates in the token's project, so a volume or snapshot
        made here would land in the configured identity's project, not in the one asking."""
        if self._foreign:
            raise exceptions.Forbidden(
                reason=f"cinder block backend: {doing} for project {self._foreign}: the configured Keystone "
                f"identity ({self.api.identity}) acts in project {self.api.project_id}, where Cinder would make "
                "it; give that project a provider of its own identity, or act with the user's token "
                "(doc/block-cinder.md)")

    def _list_params(self) -> dict[str, Any]:
        return {"all_tenants": 1, "project_id": self._foreign} if self._foreign else {}

    def _listing(self, path: str, doing: str) -> Any:
        """``GET path`` as this project sees it.  Another project's listing takes Cinder's admin role: for an
        identity without it Cinder refuses the ``project_id`` filter (HTTP 400) or the call (403), which is
        ``Forbidden`` naming both projects and the role, not the requester's bad input."""
        try:
            return self.api.request("GET", path, doing, params=self._list_params())
        except (exceptions.InvalidInput, exceptions.BlockError) as err:
            if not self._foreign or isinstance(err, exceptions.BlockUnavailable):
                raise
            raise exceptions.Forbidden(
                reason=f"cinder block backend: {doing} of project {self._foreign} needs Cinder's admin role "
                f"for the configured identity ({self.api.identity}, acting in project {self.api.project_id}); "
                f"Cinder answered: {err}") from None

    def _raw_volumes(self) -> list[dict[str, Any]]:
        answer = self._listing("/volumes/detail", "listing volumes")
        return [v for v in answer.get("volumes", []) if v.get("status") not in ("deleting", "error_deleting")
                and self._own(v.get("os-vol-tenant-attr:tenant_id"))]

    def _raw_volume(self, volume_id: Any) -> dict[str, Any]:
        if not isinstance(volume_id, str) or not is_uuid(volume_id):
            raise exceptions.VolumeNotFound(volume_id=volume_id)
        answer = self.api.request("GET", f"/volumes/{volume_id}", f"reading volume {volume_id}",
                                  not_found=lambda: exceptions.VolumeNotFound(volume_id=volume_id))
        volume = dict(answer["volume"])
        if not self._own(volume.get("os-vol-tenant-attr:tenant_id")):  # an admin sees every project's
            raise exceptions.VolumeNotFound(volume_id=volume_id)
        if volume.get("status") in ("deleting", "error_deleting"):
            raise exceptions.VolumeNotFound(volume_id=volume_id)
        return volume

    @staticmethod
    def _volume(raw: Mapping[str, Any]) -> Volume:
        metadata = raw.get("metadata") or {}
        staged = STAGED_MARK in metadata
        name = str(raw.get("name") or raw["id"])
        if staged:
            name = name.removeprefix(STAGED_PREFIX)
        size = int(metadata.get(SIZE_KEY) or 0) or int(raw["size"]) * GiB
        created = raw.get("created_at")
        extra = {"status": raw.get("status"), "attachments": [
            {"server_id": a.get("server_id"), "device": a.get("device")} for a in raw.get("attachments") or []],
            "volume_type": raw.get("volume_type"), "availability_zone": raw.get("availability_zone"),
            "bootable": raw.get("bootable")}
        placement = {k: str(raw[k]) for k in ("volume_type", "availability_zone") if raw.get(k)}
        return Volume(id=str(raw["id"]), name=name, size=size, staged=staged, extra=extra, placement=placement,
                      created_at=_dt.datetime.fromisoformat(created).replace(tzinfo=_dt.UTC) if created else None)

    def _wait(self, path: str, key: str, what: str, wanted: str, volume: str) -> dict[str, Any]:
        """The record at ``path`` once its status is ``wanted``; ``BlockError`` naming ``volume`` on an
        error status or when ``status_timeout`` passes (then the record stays for reclaim)."""
        deadline = self._clock() + self.config.status_timeout
        delays = poll_delays()
        while True:
            record = dict(self.api.request("GET", path, f"reading {what}")[key])
            status = str(record.get("status"))
            if status == wanted:
                return record
            if status.startswith("error"):
                raise exceptions.BlockError(reason=f"{self.api.what}: {what} of volume {volume} is {status}")
            if self._clock() > deadline:
                raise exceptions.BlockError(
                    reason=f"{self.api.what}: {what} of volume {volume} is still {status} after "
                    f"{self.config.status_timeout:g} s")
            self._sleep(next(delays))

    def _wait_gone(self, path: str, what: str) -> None:
        deadline = self._clock() + self.config.status_timeout
        delays = poll_delays()
        while True:
            try:
                self.api.request("GET", path, f"reading {what}", not_found=lambda: exceptions.NotFound(
                    kind="Cinder resource", id=path))
            except exceptions.NotFound:
                return
            if self._clock() > deadline:
                raise exceptions.BlockError(reason=f"{self.api.what}: {what} was not deleted within "
                                            f"{self.config.status_timeout:g} s")
            self._sleep(next(delays))


    def _delete_volume(self, volume_id: str) -> None:
        with contextlib.suppress(exceptions.VolumeNotFound):
            self.api.request("DELETE", f"/volumes/{volume_id}", f"deleting volume {volume_id}",
                             not_found=lambda: exceptions.VolumeNotFound(volume_id=volume_id))
        self._wait_gone(f"/volumes/{volume_id}", f"volume {volume_id}")


    @staticmethod
    def _snapshot_size(raw: Mapping[str, Any], volume_size: int | None) -> int:
        """A snapshot's size in bytes: what it recorded; for one taken before snapshots recorded it, its
        Cinder size (whole GiB) capped at the volume's."""
        recorded = str((raw.get("metadata") or {}).get(SIZE_KEY) or "")
        if recorded.isdigit() and int(recorded) > 0:
            return int(recorded)
        size = int(raw.get("size") or 0) * GiB
        return min(size, volume_size) if volume_size is not None else size

    @classmethod
    def _snapshot(cls, raw: Mapping[str, Any], volume_size: int | None = None) -> Snapshot:
        metadata = raw.get("metadata") or {}
        created = raw.get("created_at")
        return Snapshot(id=str(raw["id"]), volume_id=str(raw["volume_id"]),
                        size=cls._snapshot_size(raw, volume_size),
                        created_at=_dt.datetime.fromisoformat(created).replace(tzinfo=_dt.UTC) if created else None,
                        tags={k[len(TAG_PREFIX):]: str(v) for k, v in metadata.items() if k.startswith(TAG_PREFIX)})

    def _ours(self) -> list[dict[str, Any]]:
        answer = self._listing("/snapshots/detail", "listing snapshots")
        return [s for s in answer.get("snapshots", []) if SNAPSHOT_MARK in (s.get("metadata") or {})
                and self._own(s.get("os-extended-snapshot-attributes:project_id"))]

    def _raw_snapshot(self, snapshot_id: Any) -> dict[str, Any] | None:
        """One of our snapshots, or None (missing, or the user's)."""
        if not isinstance(snapshot_id, str) or not is_uuid(snapshot_id):
            return None
        try:
            raw = self.api.request("GET", f"/snapshots/{snapshot_id}", f"reading snapshot {snapshot_id}",
                                   not_found=lambda: exceptions.SnapshotNotFound(snapshot_id=snapshot_id))
        except exceptions.SnapshotNotFound:
            return None
        snapshot = dict(raw["snapshot"])
        if not self._own(snapshot.get("os-extended-snapshot-attributes:project_id")):
            return None
        return snapshot if SNAPSHOT_MARK in (snapshot.get("metadata") or {}) else None


def poll_delays(first: float = 0.05, factor: float = 1.5, most: float = 2.0) -> Iterator[float]:
    """Seconds between two reads of a status: short at first (a snapshot of an RBD volume is ready in a
    fraction of a second, and a fixed 0.2 s poll was most of the wait), then growing, so that a long
    wait costs Cinder few requests."""
    delay = first
    while True:
        yield delay
        delay = min(delay * factor, most)


def when(text: Any, default: _dt.datetime) -> _dt.datetime:
    try:
        parsed = _dt.datetime.fromisoformat(str(text))
    except ValueError:
        return default
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.UTC)


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
