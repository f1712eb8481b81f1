"""The cinder block backend: the volumes of one project of an OpenStack cloud, through Cinder's API.

Cinder does what it owns (volumes, snapshots, their life cycle); Strongroom reads and writes the data
through librbd, where the volume's connection information says Cinder's RBD driver keeps it
(``driver_volume_type`` ``rbd``, ``data.name`` ``pool/volume-<id>``; a snapshot is the RBD snapshot
``snapshot-<id>`` of that image, as cinder-backup's Ceph driver reads it).  Any other driver type is
refused, naming it.

:class:`CinderBackend` is the plugin: the life cycle of volumes and snapshots, reclaim, capacity.  It is
built on its parts: :mod:`.records` (Cinder's records as one project reads them, and which are ours by
their ``strongroom.*`` metadata), :mod:`.data` (the data path through librbd, changed extents) and
:mod:`.growth` (``extend_volume``).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import functools
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from strongroom import exceptions
from strongroom.block.base import (
    BackendStats,
    PoolStats,
    Snapshot,
    Volume,
    check_name,
    check_placement,
    check_size,
    check_tags,
)
from strongroom.block.cinder.api import CinderApi
from strongroom.block.cinder.growth import CinderGrowth
from strongroom.block.cinder.options import OPTIONS_SCHEMA, SECRET_OPTIONS, check_options, cinder_config
from strongroom.block.cinder.records import (
    MAX_METADATA,
    SIZE_KEY,
    SNAPSHOT_MARK,
    STAGED_AT,
    STAGED_MARK,
    STAGED_PREFIX,
    TAG_PREFIX,
    GiB,
    when,
)

LOG = logging.getLogger("strongroom.block.cinder")
#: How many user-token backends (:meth:`CinderBackend._as_user`) are kept.
USER_VIEWS = 32


class CinderBackend(CinderGrowth):
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
        self._connections, self._locations = {}, {}  # the data path's (:mod:`.data`)
        self._projects: dict[str, CinderBackend] = {}
        #: (project, the token's SHA-256) -> the backend acting with that user's token (``act_as_user``).
        self._users: collections.OrderedDict[tuple[str, str], CinderBackend] = collections.OrderedDict()

    def describe(self) -> dict[str, Any]:
        """Where the volumes are (never includes credentials)."""
        return {"backend": "cinder", "endpoint": self.config.where, "project": self.api.known_project_id,
                "auth_type": self.config.auth_type}

    def for_project(self, project_id: str | None, auth_token: str | None = None) -> CinderBackend:
        """This backend as ``project_id`` sees it: with noauth the token names the project; with Keystone the
        configured user's token is scoped to its own project, and another project's volumes are asked for
        with ``all_tenants`` (which takes an admin role).  With ``act_as_user`` and the request's user token
        (``auth_token``), a backend acting as that user in ``project_id`` (:meth:`_as_user`)."""
        if auth_token and project_id and self.config.act_as_user:
            return self._as_user(project_id, auth_token)
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

    def _as_user(self, project_id: str, token: str) -> CinderBackend:
        """A backend whose requests carry the user's ``token`` to the Cinder the configured identity finds in
        the catalogue (or ``endpoint``), acting in the token's project: Cinder itself checks the token and
        the user's roles.  It shares this backend's data path (RBD connections, locations) and marks; the
        last few are kept, by project and the token's digest (never the token)."""
        key = (project_id, hashlib.sha256(token.encode()).hexdigest())
        with self._lock:
            known = self._users.get(key)
            if known is not None:
                self._users.move_to_end(key)
                return known
        endpoint, version = self.api.endpoint(), self.api.known_version  # else read with the user's token
        view = CinderBackend(self.options, clock=self._clock, sleep=self._sleep)
        view.api = CinderApi(self.config, project_id, token=token, endpoint=endpoint, version=version)
        view._maker, view._lock = self._maker, self._lock
        view._connections, view._locations = self._connections, self._locations
        with self._lock:
            self._users[key] = view
            while len(self._users) > USER_VIEWS:
                self._users.popitem(last=False)
        return view

    # -- volumes ------------------------------------------------------------------------------------

    def create_volume(self, size: int, name: str | None = None, *, staged: bool = False,
                      placement: Mapping[str, str] | None = None) -> Volume:
        check_size(size)
        where = check_placement(self, placement)
        self._check_writable("creating a volume")
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
        self._check_writable(f"taking a snapshot of volume {volume.id}")
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

    def list_snapshots(self, volume_id: str | None = None) -> list[Snapshot]:
        sizes = {v["id"]: self._volume(v).size for v in self._raw_volumes()}
        found = [self._snapshot(s, sizes.get(s["volume_id"])) for s in self._ours()
                 if s.get("status") == "available" and (volume_id is None or s["volume_id"] == volume_id)]
        return sorted(found, key=lambda s: s.id)

    def delete_snapshot(self, snapshot_id: str) -> None:
        if self._raw_snapshot(snapshot_id) is None:
            return  # gone, or not ours: never a user's snapshot
        with contextlib.suppress(exceptions.SnapshotNotFound):
            self.api.request("DELETE", f"/snapshots/{snapshot_id}", f"deleting snapshot {snapshot_id}",
                             not_found=lambda: exceptions.SnapshotNotFound(snapshot_id=snapshot_id))
        self._wait_gone(f"/snapshots/{snapshot_id}", f"snapshot {snapshot_id}")
        LOG.debug("snapshot %s deleted in %s", snapshot_id, self.api.what)

    def reclaim_leftovers(self) -> list[str]:
        """Our snapshots that ended in an error (or stayed ``creating`` past twice ``status_timeout``), and
        other processes' staged volumes older than ``leftover_age``: a live restore publishes or discards its
        own long before."""
        removed: list[str] = []
        now = _dt.datetime.now(_dt.UTC)
        for snap in self._ours():
            status = str(snap.get("status"))
            age = (now - when(snap.get("created_at"), now)).total_seconds()
            if status.startswith("error") or (status == "creating" and age > 2 * self.config.status_timeout):
                with contextlib.suppress(exceptions.StrongroomError):
                    self.delete_snapshot(str(snap["id"]))
                    removed.append(f"snapshot {snap['id']}")
        for raw in self._raw_volumes():
            metadata = raw.get("metadata") or {}
            maker = metadata.get(STAGED_MARK)
            if maker is None or maker == self._maker:
                continue
            if (now - when(metadata.get(STAGED_AT), now)).total_seconds() > self.config.leftover_age:
                self._delete_volume(str(raw["id"]))
                removed.append(f"staged volume {raw['id']}")
        if removed:
            LOG.info("removed %d abandoned item(s) of %s: %s", len(removed), self.api.what, ", ".join(removed))
        return removed

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
        self._close_connections()
        with self._lock:
            scoped, self._projects = list(self._projects.values()), {}
            self._users.clear()  # they share this backend's connections, closed above
        for backend in scoped:
            backend.close()


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


