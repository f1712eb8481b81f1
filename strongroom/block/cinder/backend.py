"""The cinder block backend: the volumes of one project of an OpenStack cloud, through Cinder's API.

Cinder does what it owns (volumes, snapshots, their life cycle); Strongroom reads and writes the data
through librbd, where the volume's connection information says Cinder's RBD driver keeps it
(``driver_volume_type`` ``rbd``, ``data.name`` ``pool/volume-<id>``; a snapshot is the RBD snapshot
``snapshot-<id>`` of that image, as cinder-backup's Ceph driver reads it).  Any other driver type is
refused, naming it.

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
import functools
import logging
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
    check_name,
    check_new_size,
    check_placement,
    check_size,
    check_tags,
)
from strongroom.block.cinder.api import CinderApi
from strongroom.block.cinder.options import (
    OPTIONS_SCHEMA,
    SECRET_OPTIONS,
    check_options,
    cinder_config,
    rbd_options,
)

LOG = logging.getLogger("strongroom.block.cinder")

GiB = 1 << 30
SNAPSHOT_MARK = "strongroom.snapshot"
TAG_PREFIX = "strongroom.tag."
STAGED_MARK = "strongroom.staged"
STAGED_AT = "strongroom.staged_at"
SIZE_KEY = "strongroom.size"
STAGED_PREFIX = ".strongroom-staged-"
#: Cinder's limit on a metadata key and value.
MAX_METADATA = 255


class CinderBackend(BlockBackend):
    """Cinder volumes of one project; data through librbd (RBD-backed volumes only)."""

    options_schema: ClassVar[dict[str, Any]] = OPTIONS_SCHEMA
    secret_options: ClassVar[frozenset[str]] = SECRET_OPTIONS
    placement_keys: ClassVar[frozenset[str]] = frozenset({"volume_type", "availability_zone"})
    kind: ClassVar[str] = "cinder"

    def __init__(self, options: Mapping[str, Any] | None = None, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        check_options(dict(options or {}))  # before the base class, whose messages may quote a value
        super().__init__(options)
        self.config = cinder_config(self.options)
        self.api = CinderApi(self.config)
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._maker = str(uuid.uuid4())
        self._connections: dict[str, Any] = {}
        self._locations: dict[tuple[str, str], tuple[str, str]] = {}
        self._projects: dict[str, CinderBackend] = {}

    def describe(self) -> dict[str, Any]:
        """Where the volumes are (never includes credentials)."""
        return {"backend": "cinder", "endpoint": self.config.where, "project": self.api.project_id,
                "auth_type": self.config.auth_type}

    def for_project(self, project_id: str | None) -> CinderBackend:
        """This backend as ``project_id`` sees it: with noauth the token names the project; with Keystone the
        configured user's token is scoped to its own project, and another project's volumes are asked for
        with ``all_tenants`` (which takes an admin role)."""
        if not project_id or project_id == self.api.project_id:
            return self
        with self._lock:
            scoped = self._projects.get(project_id)
            if scoped is None:
                scoped = CinderBackend({**self.options, "project_id": project_id} if self.config.auth_type ==
                                       "noauth" else self.options, clock=self._clock, sleep=self._sleep)
                if self.config.auth_type != "noauth":
                    scoped._foreign = project_id
                self._projects[project_id] = scoped
            return scoped

    _foreign: str | None = None

    def _own(self, project: Any) -> bool:
        """Whether a record of ``project`` (shown to admins only; None otherwise) is this project's."""
        wanted = self._foreign or self.api.project_id
        return project is None or wanted is None or project == wanted

    # -- Cinder records -----------------------------------------------------------------------------

    def _list_params(self) -> dict[str, Any]:
        return {"all_tenants": 1, "project_id": self._foreign} if self._foreign else {}

    def _raw_volumes(self) -> list[dict[str, Any]]:
        answer = self.api.request("GET", "/volumes/detail", "listing volumes", params=self._list_params())
        return [v for v in answer.get("volumes", []) if v.get("status") not in ("deleting", "error_deleting")]

    def _raw_volume(self, volume_id: Any) -> dict[str, Any]:
        if not isinstance(volume_id, str) or not _is_uuid(volume_id):
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

    # -- volumes ------------------------------------------------------------------------------------

    def create_volume(self, size: int, name: str | None = None, *, staged: bool = False,
                      placement: Mapping[str, str] | None = None) -> Volume:
        check_size(size)
        where = check_placement(self, placement)
        if name is not None:
            check_name(name)
            if name.startswith(".") or len(name) > MAX_METADATA - len(STAGED_PREFIX):
                raise exceptions.InvalidInput(reason=f"volume name {name!r} must not start with '.' and must be "
                                              f"at most {MAX_METADATA - len(STAGED_PREFIX)} characters")
            taken = {self._volume(v).name for v in self._raw_volumes()}
            if name in taken:
                raise exceptions.VolumeExists(volume_id=name)
        metadata: dict[str, str] = {}
        if size % GiB:
            metadata[SIZE_KEY] = str(size)
        if staged:
            metadata[STAGED_MARK] = self._maker
            metadata[STAGED_AT] = _dt.datetime.now(_dt.UTC).isoformat()
        shown = name or f"strongroom-{uuid.uuid4().hex[:12]}"
        body: dict[str, Any] = {"size": -(-size // GiB), "name": STAGED_PREFIX + shown if staged else shown,
                                "metadata": metadata}
        kind = where.get("volume_type") or self.config.volume_type
        zone = where.get("availability_zone") or self.config.availability_zone
        if kind:
            body["volume_type"] = kind
        if zone:
            body["availability_zone"] = zone
        made = self.api.request("POST", "/volumes", f"creating volume {shown}", json={"volume": body})["volume"]
        try:
            raw = self._wait(f"/volumes/{made['id']}", "volume", f"new volume {shown}", "available", shown)
        except exceptions.BlockError:
            self._delete_volume(str(made["id"]))
            raise
        LOG.debug("created %svolume %s (%s, %d bytes) in %s", "staged " if staged else "", made["id"], shown,
                  size, self.api.what)
        return self._volume(raw)

    def publish_volume(self, volume_id: str) -> Volume:
        raw = self._staged(volume_id)
        if raw is None:
            raise exceptions.VolumeNotFound(volume_id=volume_id)
        name = self._volume(raw).name
        if name in {self._volume(v).name for v in self._raw_volumes() if v["id"] != volume_id}:
            raise exceptions.VolumeExists(volume_id=name)
        self.api.request("PUT", f"/volumes/{volume_id}", f"naming volume {volume_id} {name}",
                         json={"volume": {"name": name}})
        for key in (STAGED_AT, STAGED_MARK):  # the mark last: until it goes, the volume is not listed
            with contextlib.suppress(exceptions.NotFound):
                self.api.request("DELETE", f"/volumes/{volume_id}/metadata/{key}", f"publishing volume {name}",
                                 not_found=functools.partial(exceptions.NotFound, kind="metadata", id=key))
        return self._volume(self._raw_volume(volume_id))

    def _staged(self, volume_id: Any) -> dict[str, Any] | None:
        try:
            raw = self._raw_volume(volume_id)
        except exceptions.VolumeNotFound:
            return None
        return raw if STAGED_MARK in (raw.get("metadata") or {}) else None

    def discard_volume(self, volume_id: str) -> None:
        if self._staged(volume_id) is None:
            return
        self._delete_volume(volume_id)

    def _delete_volume(self, volume_id: str) -> None:
        with contextlib.suppress(exceptions.VolumeNotFound):
            self.api.request("DELETE", f"/volumes/{volume_id}", f"deleting volume {volume_id}",
                             not_found=lambda: exceptions.VolumeNotFound(volume_id=volume_id))
        self._wait_gone(f"/volumes/{volume_id}", f"volume {volume_id}")

    def list_staged_volumes(self) -> list[Volume]:
        return sorted((self._volume(v) for v in self._raw_volumes() if STAGED_MARK in (v.get("metadata") or {})),
                      key=lambda v: v.id)

    def list_volumes(self) -> list[Volume]:
        return sorted((self._volume(v) for v in self._raw_volumes()
                       if STAGED_MARK not in (v.get("metadata") or {})), key=lambda v: v.id)

    def get_volume(self, volume_id: str) -> Volume:
        volume = self._volume(self._raw_volume(volume_id))
        if volume.staged:
            raise exceptions.VolumeNotFound(volume_id=volume_id)
        return volume

    def destroy_volume(self, volume_id: str) -> None:
        self.get_volume(volume_id)
        snaps = self.api.request("GET", "/snapshots", f"listing the snapshots of volume {volume_id}",
                                 params={"volume_id": volume_id, **self._list_params()})["snapshots"]
        snaps = [s for s in snaps if s.get("volume_id") == volume_id]  # a cloud may not allow the filter
        if snaps:
            names = ", ".join(sorted(str(s["id"]) for s in snaps))
            raise exceptions.Conflict(reason=f"volume {volume_id} still has snapshots ({names}); delete them first")
        try:
            self._delete_volume(volume_id)
        except exceptions.InvalidInput as err:  # in use, or in a state Cinder refuses to delete
            raise exceptions.Conflict(reason=str(err)) from None

    # -- snapshots ----------------------------------------------------------------------------------

    def create_snapshot(self, volume_id: str, tags: Mapping[str, str] | None = None) -> Snapshot:
        kept = check_tags(tags)
        for key in kept:
            if len(TAG_PREFIX + key) > MAX_METADATA:
                raise exceptions.InvalidInput(
                    reason=f"snapshot tag {key!r}: at most {MAX_METADATA - len(TAG_PREFIX)} characters with Cinder")
        volume = self.get_volume(volume_id)
        metadata = {SNAPSHOT_MARK: self._maker, SIZE_KEY: str(volume.size),
                    **{TAG_PREFIX + k: v for k, v in kept.items()}}
        body = {"volume_id": volume.id, "force": True, "name": f"strongroom-{uuid.uuid4().hex[:12]}",
                "description": "taken by Strongroom for a checkpoint; deleted when it is done",
                "metadata": metadata}
        made = self.api.request("POST", "/snapshots", f"taking a snapshot of volume {volume.id}",
                                json={"snapshot": body})["snapshot"]
        try:
            raw = self._wait(f"/snapshots/{made['id']}", "snapshot", f"snapshot {made['id']}", "available",
                             f"{volume.name} ({volume.id})")
        except exceptions.BlockError:
            with contextlib.suppress(exceptions.StrongroomError):
                self.delete_snapshot(str(made["id"]))
            raise
        LOG.debug("snapshot %s of volume %s taken in %s", made["id"], volume.id, self.api.what)
        return self._snapshot(raw, volume.size)

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
        answer = self.api.request("GET", "/snapshots/detail", "listing snapshots", params=self._list_params())
        return [s for s in answer.get("snapshots", []) if SNAPSHOT_MARK in (s.get("metadata") or {})]

    def list_snapshots(self, volume_id: str | None = None) -> list[Snapshot]:
        sizes = {v["id"]: self._volume(v).size for v in self._raw_volumes()}
        found = [self._snapshot(s, sizes.get(s["volume_id"])) for s in self._ours()
                 if s.get("status") == "available" and (volume_id is None or s["volume_id"] == volume_id)]
        return sorted(found, key=lambda s: s.id)

    def _raw_snapshot(self, snapshot_id: Any) -> dict[str, Any] | None:
        """One of our snapshots, or None (missing, or the user's)."""
        if not isinstance(snapshot_id, str) or not _is_uuid(snapshot_id):
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

    def delete_snapshot(self, snapshot_id: str) -> None:
        if self._raw_snapshot(snapshot_id) is None:
            return  # gone, or not ours: never a user's snapshot
        with contextlib.suppress(exceptions.SnapshotNotFound):
            self.api.request("DELETE", f"/snapshots/{snapshot_id}", f"deleting snapshot {snapshot_id}",
                             not_found=lambda: exceptions.SnapshotNotFound(snapshot_id=snapshot_id))
        self._wait_gone(f"/snapshots/{snapshot_id}", f"snapshot {snapshot_id}")
        LOG.debug("snapshot %s deleted in %s", snapshot_id, self.api.what)

    def changed_extents(self, snapshot_id: str, base_snapshot_id: str) -> Iterator[Extent] | None:
        """librbd's diff between the two snapshots' RBD snapshots (``snapshot-<id>`` of the volume's image
        ``volume-<id>``), as the rbd backend diffs its own (:func:`~strongroom.block.rbd.handles.
        changed_extents`), within the snapshots' sizes in bytes.  None for snapshots of two volumes."""
        from strongroom.block.rbd.handles import changed_extents

        raws = []
        for sid in (snapshot_id, base_snapshot_id):
            raw = self._raw_snapshot(sid)
            if raw is None or raw.get("status") != "available":
                raise exceptions.SnapshotNotFound(snapshot_id=sid)
            raws.append(raw)
        new, base = raws
        if new["volume_id"] != base["volume_id"]:
            return None
        volume = self._raw_volume(str(new["volume_id"]))
        volume_size = self._volume(volume).size
        connection, image = self._rbd_image(volume)
        found = changed_extents(connection, image, f"snapshot-{new['id']}", f"snapshot-{base['id']}",
                                f"snapshot {new['id']}", exceptions.SnapshotNotFound(snapshot_id=str(new["id"])),
                                exceptions.SnapshotNotFound(snapshot_id=str(base["id"])),
                                size=self._snapshot_size(new, volume_size),
                                base_size=self._snapshot_size(base, volume_size))
        return None if found is None else iter(found)

    def extend_volume(self, volume_id: str, size: int) -> Volume:
        """Grow the volume to exactly ``size`` bytes.  Cinder counts in whole GiB, so a size that is not
        one is kept as a volume of the next whole GiB that reads and writes as ``size`` bytes (the
        ``strongroom.size`` metadata, as :meth:`create_volume` makes one): Cinder is asked to extend
        (``os-extend``, then the volume is waited for until ``available`` again, within ``status_timeout``)
        only when the size needs more GiB than the volume has, and the bytes between the old size and the
        new one that the image already held are zeroed first.

        The volume must be ``available`` and attached nowhere (else ``VolumeInUse``, as Cinder refuses an
        offline extend of anything else); its RBD image is held open as an overwriter holds it, so it is
        ``VolumeInUse`` while an overwriter has it, and no overwriter opens it meanwhile."""
        from strongroom.block.rbd.handles import open_overwriter

        check_size(size)
        raw = self._overwritable(volume_id)
        volume = self._volume(raw)
        size = check_new_size(volume, size)
        if size == volume.size:
            return volume
        connection, image = self._rbd_image(raw)
        holder = open_overwriter(connection, image, f"volume {volume_id}",
                                 exceptions.VolumeNotFound(volume_id=volume_id),
                                 exceptions.VolumeInUse(volume_id=volume_id, reason="another client has its RBD "
                                                        "image open"))
        try:
            if volume.size < holder.size:  # bytes past the volume's end that its image holds: zeros first
                holder.write_zeros(volume.size, min(size, holder.size) - volume.size)
                holder.flush()
            gib = -(-size // GiB)
            if gib > int(raw["size"]):
                self.api.request("POST", f"/volumes/{volume_id}/action", f"extending volume {volume_id} to "
                                 f"{gib} GiB", json={"os-extend": {"new_size": gib}},
                                 not_found=lambda: exceptions.VolumeNotFound(volume_id=volume_id))
                self._wait(f"/volumes/{volume_id}", "volume", f"extending volume {volume_id}", "available",
                           volume_id)
            if size % GiB:
                self.api.request("POST", f"/volumes/{volume_id}/metadata", f"recording the size of volume "
                                 f"{volume_id}", json={"metadata": {SIZE_KEY: str(size)}})
            elif SIZE_KEY in (raw.get("metadata") or {}):
                with contextlib.suppress(exceptions.NotFound):
                    self.api.request("DELETE", f"/volumes/{volume_id}/metadata/{SIZE_KEY}",
                                     f"recording the size of volume {volume_id}",
                                     not_found=functools.partial(exceptions.NotFound, kind="metadata", id=SIZE_KEY))
        finally:
            holder.close()
        LOG.debug("extended volume %s to %d bytes in %s", volume_id, size, self.api.what)
        return self.get_volume(volume_id)

    def reclaim_leftovers(self) -> list[str]:
        """Our snapshots that ended in an error (or stayed ``creating`` past twice ``status_timeout``), and
        other processes' staged volumes older than ``leftover_age``: a live restore publishes or discards its
        own long before."""
        removed: list[str] = []
        now = _dt.datetime.now(_dt.UTC)
        for snap in self._ours():
            status = str(snap.get("status"))
            age = (now - _when(snap.get("created_at"), now)).total_seconds()
            if status.startswith("error") or (status == "creating" and age > 2 * self.config.status_timeout):
                with contextlib.suppress(exceptions.StrongroomError):
                    self.delete_snapshot(str(snap["id"]))
                    removed.append(f"snapshot {snap['id']}")
        for raw in self._raw_volumes():
            metadata = raw.get("metadata") or {}
            maker = metadata.get(STAGED_MARK)
            if maker is None or maker == self._maker:
                continue
            if (now - _when(metadata.get(STAGED_AT), now)).total_seconds() > self.config.leftover_age:
                self._delete_volume(str(raw["id"]))
                removed.append(f"staged volume {raw['id']}")
        if removed:
            LOG.info("removed %d abandoned item(s) of %s: %s", len(removed), self.api.what, ", ".join(removed))
        return removed

    # -- data ---------------------------------------------------------------------------------------

    def _rbd_image(self, raw_volume: Mapping[str, Any]) -> tuple[Any, str]:
        """The RBD connection and image of a volume, from its connection information.

        Asking costs a round trip through cinder-volume (about half a second), and a protect or a restore
        opens the same volume more than once; so the answer is kept for the volume record as it was
        (id and ``updated_at``): whatever could move the image (a migration, a retype) updates the record,
        and the next open asks again."""
        from strongroom.block.cinder.connection import rbd_location

        volume_id = str(raw_volume["id"])
        key = (volume_id, str(raw_volume.get("updated_at")))
        with self._lock:
            known = self._locations.get(key)
        if known is None:
            known = rbd_location(self.api, volume_id)
            with self._lock:
                self._locations = {k: v for k, v in self._locations.items() if k[0] != volume_id}
                self._locations[key] = known
        pool, image = known
        return self._connection(pool), image

    def _connection(self, pool: str) -> Any:
        from strongroom.block.rbd import RbdConnection, cluster_config

        wanted = rbd_options(self.options, pool)
        with self._lock:
            connection = self._connections.get(wanted["pool"])
            if connection is None:
                connection = RbdConnection(cluster_config(wanted), backend="cinder block backend (data path)")
                self._connections[wanted["pool"]] = connection
            return connection

    def open_snapshot(self, snapshot_id: str) -> BlockReader:
        from strongroom.block.rbd import RbdReader

        raw = self._raw_snapshot(snapshot_id)
        if raw is None or raw.get("status") != "available":
            raise exceptions.SnapshotNotFound(snapshot_id=snapshot_id)
        volume = self._raw_volume(str(raw["volume_id"]))
        connection, image = self._rbd_image(volume)
        reader = RbdReader(connection, image, f"snapshot-{snapshot_id}", f"snapshot {snapshot_id}",
                           exceptions.SnapshotNotFound(snapshot_id=snapshot_id),
                           workers=connection.config.read_workers)
        reader.size = min(reader.size, self._snapshot_size(raw, self._volume(volume).size))
        return reader

    def open_volume_reader(self, volume_id: str) -> BlockReader:
        from strongroom.block.rbd import RbdReader

        volume = self._raw_volume(volume_id)
        connection, image = self._rbd_image(volume)
        reader = RbdReader(connection, image, None, f"volume {volume_id}",
                           exceptions.VolumeNotFound(volume_id=volume_id), workers=connection.config.read_workers)
        reader.size = min(reader.size, self._volume(volume).size)
        return reader

    def open_volume_writer(self, volume_id: str) -> BlockWriter:
        from strongroom.block.rbd import RbdWriter

        volume = self._raw_volume(volume_id)
        connection, image = self._rbd_image(volume)
        writer = RbdWriter(connection, image, f"volume {volume_id}", exceptions.VolumeNotFound(volume_id=volume_id))
        writer.size = min(writer.size, self._volume(volume).size)
        return writer

    def check_overwrite(self, volume_id: str) -> Volume:
        volume = self.get_volume(volume_id)
        self.open_volume_overwriter(volume_id).close()  # Cinder's checks, then the image's watchers
        return volume

    def _overwritable(self, volume_id: str) -> dict[str, Any]:
        """The record of a published volume Cinder has ``available`` and attached nowhere."""
        raw = self._raw_volume(volume_id)
        if STAGED_MARK in (raw.get("metadata") or {}):
            raise exceptions.VolumeNotFound(volume_id=volume_id)
        servers = sorted(str(a.get("server_id") or a.get("attachment_id")) for a in raw.get("attachments") or [])
        if servers:
            raise exceptions.VolumeInUse(volume_id=volume_id, reason=f"attached to {', '.join(servers)}")
        if raw.get("status") != "available":
            raise exceptions.VolumeInUse(volume_id=volume_id, reason=f"its Cinder status is {raw.get('status')}, "
                                         "not available")
        return raw

    def open_volume_overwriter(self, volume_id: str) -> BlockWriter:
        """After Cinder's checks, the image is opened only if no client watches it (:func:`open_overwriter`):
        another overwriter, or a hypervisor that attached it behind Cinder's back."""
        from strongroom.block.rbd.handles import open_overwriter

        volume = self._overwritable(volume_id)
        connection, image = self._rbd_image(volume)
        writer = open_overwriter(connection, image, f"volume {volume_id}",
                                 exceptions.VolumeNotFound(volume_id=volume_id),
                                 exceptions.VolumeInUse(volume_id=volume_id, reason="another client has its RBD "
                                                        "image open"))
        writer.size = min(writer.size, self._volume(volume).size)
        return writer

    # -- capacity -----------------------------------------------------------------------------------

    def stats(self) -> BackendStats:
        """Capacity per Cinder pool as the scheduler reports it (an admin call); where that is refused, the
        project's quota and usage."""
        try:
            answer = self.api.request("GET", "/scheduler-stats/get_pools", "reading the pools",
                                      params={"detail": "true"})
            pools = tuple(_pool(p) for p in answer.get("pools", []))
        except (exceptions.BlockError, exceptions.NotFound):
            pools = ()
        if not pools:
            limits = self.api.request("GET", "/limits", "reading the project's limits")["limits"]["absolute"]
            total = max(0, int(limits.get("maxTotalVolumeGigabytes", -1))) * GiB
            used = max(0, int(limits.get("totalGigabytesUsed", 0))) * GiB
            pools = (PoolStats(name=f"project {self.api.project_id}", total_capacity=total,
                               free_capacity=max(0, total - used), allocated_capacity=min(used, total)),)
        return BackendStats(backend="cinder", pools=pools)

    def close(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
            scoped, self._projects = list(self._projects.values()), {}
        for connection in connections:
            connection.close()
        for backend in scoped:
            backend.close()


def poll_delays(first: float = 0.05, factor: float = 1.5, most: float = 2.0) -> Iterator[float]:
    """Seconds between two reads of a status: short at first (a snapshot of an RBD volume is ready in a
    fraction of a second, and a fixed 0.2 s poll was most of the wait), then growing, so that a long
    wait costs Cinder few requests."""
    delay = first
    while True:
        yield delay
        delay = min(delay * factor, most)


def _pool(raw: Mapping[str, Any]) -> PoolStats:
    caps = raw.get("capabilities") or {}

    def gib(key: str) -> int:
        try:
            return max(0, int(float(caps.get(key) or 0) * GiB))
        except (TypeError, ValueError):  # "unknown", "infinite"
            return 0

    total, free = gib("total_capacity_gb"), gib("free_capacity_gb")
    free = min(free, total)
    return PoolStats(name=str(raw.get("name")), total_capacity=total, free_capacity=free,
                     allocated_capacity=total - free)


def _when(text: Any, default: _dt.datetime) -> _dt.datetime:
    try:
        parsed = _dt.datetime.fromisoformat(str(text))
    except ValueError:
        return default
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.UTC)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
