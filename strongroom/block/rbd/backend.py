"""The rbd block backend: the RBD images of one pool are the volumes (the layout is in ``layout``)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import threading
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
from strongroom.block.rbd.connection import RbdConnection, librbd
from strongroom.block.rbd.handles import RbdReader, RbdWriter, changed_extents, open_image, open_overwriter
from strongroom.block.rbd.layout import (
    SnapshotName,
    decode_record,
    encode_record,
    is_volume_name,
    name_of_staged,
    staged_id,
    token_of_record,
    validate_name,
)
from strongroom.block.rbd.options import OPTIONS_SCHEMA, SECRET_OPTIONS, check_options, cluster_config

LOG = logging.getLogger("strongroom.block.rbd")


class RbdBackend(BlockBackend):
    """RBD images of one pool (and namespace) of a Ceph cluster; snapshots are RBD snapshots."""

    options_schema: ClassVar[dict[str, Any]] = OPTIONS_SCHEMA
    secret_options: ClassVar[frozenset[str]] = SECRET_OPTIONS
    kind: ClassVar[str] = "rbd"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        check_options(dict(options or {}))  # before the base class, whose messages may quote a value
        super().__init__(options)
        self.config = cluster_config(self.options)
        self.connection = RbdConnection(self.config, backend="rbd block backend")
        self._lock = threading.Lock()
        #: Staged images this backend object made, each kept open (so watched) until published or discarded:
        #: the watch is what tells ``reclaim_leftovers`` of any process that their maker is alive.
        self._staged: dict[str, Any] = {}

    def describe(self) -> dict[str, Any]:
        """Where the volumes are (never includes credentials)."""
        return {"backend": "rbd", "pool": self.config.where, "client": f"client.{self.config.client_name}",
                "monitors": self.config.mon_host or f"from {self.config.conf_file}",
                "image_features": self.config.features}

    # -- helpers -------------------------------------------------------------------------------------

    def _rbd(self) -> Any:
        return librbd().RBD()

    def _images(self) -> list[str]:
        with self.connection.errors("listing images"):
            return sorted(str(name) for name in self._rbd().list(self.connection.ioctx()))

    def _volume(self, image: str, staged: bool = False) -> Volume:
        with self._open(image, read_only=True, not_found=exceptions.VolumeNotFound(volume_id=image)) as handle, \
                self.connection.errors(f"reading image {image}"):
            size = int(handle.size())
            created = handle.create_timestamp()
        return Volume(id=image, name=name_of_staged(image) or image, size=size,
                      created_at=created.replace(tzinfo=_dt.UTC) if created else None,
                      extra={"pool": self.config.where}, staged=staged)

    @contextlib.contextmanager
    def _open(self, image: str, read_only: bool, not_found: exceptions.StrongroomError,
              snapshot: str | None = None) -> Iterator[Any]:
        handle = open_image(self.connection, image, snapshot, read_only, not_found)
        try:
            yield handle
        finally:
            with contextlib.suppress(Exception):
                handle.close()

    @staticmethod
    def _published(volume_id: Any) -> str:
        """``volume_id`` if it can name a published image, else ``VolumeNotFound``."""
        if not isinstance(volume_id, str) or not is_volume_name(volume_id):
            raise exceptions.VolumeNotFound(volume_id=volume_id)
        return volume_id

    @staticmethod
    def _any(volume_id: Any) -> str:
        """``volume_id`` if it can name a published or staged image (what readers and writers open)."""
        if isinstance(volume_id, str) and (is_volume_name(volume_id) or name_of_staged(volume_id)):
            return volume_id
        raise exceptions.VolumeNotFound(volume_id=volume_id)

    # -- volumes -------------------------------------------------------------------------------------

    def create_volume(self, size: int, name: str | None = None, *, staged: bool = False,
                      placement: Mapping[str, str] | None = None) -> Volume:
        check_size(size)
        check_placement(self, placement)
        name = validate_name(name) if name is not None else f"volume-{uuid.uuid4()}"
        image = staged_id(name) if staged else name
        existing = set(self._images())
        if name in existing or staged_id(name) in existing:  # taken, or reserved by its staged twin
            raise exceptions.VolumeExists(volume_id=name)
        rbd = librbd()
        with self.connection.errors(f"creating image {image}"):
            try:
                self._rbd().create(self.connection.ioctx(), image, size, old_format=False,
                                   features=self.config.features)
            except rbd.ImageExists:
                raise exceptions.VolumeExists(volume_id=name) from None
        if staged:
            handle = open_image(self.connection, image, None, False, exceptions.VolumeNotFound(volume_id=image))
            with self._lock:
                self._staged[image] = handle
        LOG.debug("created %simage %s (%d bytes) in %s", "staged " if staged else "", image, size,
                  self.connection.what)
        return self._volume(image, staged=staged)

    def _release(self, image: str) -> None:
        with self._lock:
            handle = self._staged.pop(image, None)
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.close()

    def publish_volume(self, volume_id: str) -> Volume:
        name = name_of_staged(volume_id)
        if name is None:
            raise exceptions.VolumeNotFound(volume_id=volume_id)
        rbd = librbd()
        with self.connection.errors(f"publishing image {volume_id} as {name}",
                                    not_found=lambda: exceptions.VolumeNotFound(volume_id=volume_id)):
            try:
                # Atomic, refused if an image took the name meanwhile; still open by us, so never reclaimed.
                self._rbd().rename(self.connection.ioctx(), volume_id, name)
            except rbd.ImageExists:
                raise exceptions.VolumeExists(volume_id=name) from None
        self._release(volume_id)
        LOG.debug("published image %s in %s", name, self.connection.what)
        return self._volume(name)

    def discard_volume(self, volume_id: str) -> None:
        if name_of_staged(volume_id) is None:
            return
        self._release(volume_id)
        if self._remove(volume_id) == "busy":
            raise exceptions.BlockUnavailable(backend=self.connection.what,
                                              reason=f"staged image {volume_id} is still open by another client")
        LOG.debug("discarded staged image %s in %s", volume_id, self.connection.what)

    def _remove(self, image: str) -> str:
        """Remove ``image``: ``removed``, ``missing`` (gone already) or ``busy`` (a client has it open,
        which librbd refuses).  An image with snapshots is refused as ``Conflict``."""
        rbd = librbd()
        with self.connection.errors(f"removing image {image}"):
            try:
                self._rbd().remove(self.connection.ioctx(), image)
            except rbd.ImageNotFound:
                return "missing"
            except rbd.ImageBusy:
                return "busy"
            except rbd.ImageHasSnapshots:
                raise exceptions.Conflict(reason=f"volume {image} still has snapshots; delete them first") \
                    from None
        return "removed"

    def list_staged_volumes(self) -> list[Volume]:
        return self._list(staged=True)

    def list_volumes(self) -> list[Volume]:
        return self._list(staged=False)

    def _list(self, staged: bool) -> list[Volume]:
        volumes = []
        for image in self._images():
            if (name_of_staged(image) is not None) != staged:
                continue
            if not staged and not is_volume_name(image):
                if not image.startswith("."):
                    LOG.warning("%s: ignoring image %r, whose name is not a usable volume name",
                                self.connection.what, image)
                continue
            try:
                volumes.append(self._volume(image, staged=staged))
            except exceptions.VolumeNotFound:  # removed while listing
                continue
        return volumes

    def get_volume(self, volume_id: str) -> Volume:
        return self._volume(self._published(volume_id))

    def destroy_volume(self, volume_id: str) -> None:
        image = self._published(volume_id)
        with self._open(image, read_only=True, not_found=exceptions.VolumeNotFound(volume_id=image)) as handle, \
                self.connection.errors(f"listing the snapshots of image {image}"):
            snaps = [str(s["name"]) for s in handle.list_snaps()]
        if snaps:
            names = ", ".join(f"{image}@{s}" for s in sorted(snaps))
            raise exceptions.Conflict(reason=f"volume {image} still has snapshots ({names}); delete them first")
        outcome = self._remove(image)
        if outcome == "busy":
            raise exceptions.Conflict(reason=f"volume {image} is open by another client")
        if outcome == "missing":
            raise exceptions.VolumeNotFound(volume_id=image)
        LOG.debug("destroyed image %s in %s", image, self.connection.what)

    # -- snapshots -----------------------------------------------------------------------------------

    def create_snapshot(self, volume_id: str, tags: Mapping[str, str] | None = None) -> Snapshot:
        kept = check_tags(tags)
        image = self._published(volume_id)
        name = SnapshotName.new(image)
        created_at = _dt.datetime.now(_dt.UTC)
        maker = int(self.connection.cluster().get_instance_id())
        # Open for writing, so watched by this client: its record says so until the snapshot exists.
        with self._open(image, read_only=False, not_found=exceptions.VolumeNotFound(volume_id=image)) as handle:
            with self.connection.errors(f"recording snapshot {name.id}"):
                handle.metadata_set(name.record_key, encode_record(kept, created_at.isoformat(), maker))
            try:
                with self.connection.errors(f"taking snapshot {name.id}"):
                    handle.create_snap(name.snap)
                    size = int(handle.size())
            except BaseException:
                with contextlib.suppress(Exception):
                    handle.metadata_remove(name.record_key)
                raise
        LOG.debug("snapshot %s taken in %s", name.id, self.connection.what)
        return Snapshot(id=name.id, volume_id=image, size=size, created_at=created_at, tags=kept)

    def _snapshots_of(self, image: str) -> list[Snapshot]:
        try:
            with self._open(image, read_only=True, not_found=exceptions.VolumeNotFound(volume_id=image)) as handle, \
                    self.connection.errors(f"listing the snapshots of image {image}"):
                records = {token_of_record(str(k)): str(v) for k, v in handle.metadata_list()}
                snaps = list(handle.list_snaps())
        except exceptions.VolumeNotFound:  # removed while listing
            return []
        found = []
        for snap in snaps:
            name = SnapshotName.of(image, str(snap["name"]))
            if name is None or name.token not in records:
                continue  # a user's snapshot, or one of ours half made or half deleted
            record = decode_record(records[name.token])
            created = record.get("created_at")
            tags = record.get("tags")
            found.append(Snapshot(
                id=name.id, volume_id=image, size=int(snap["size"]),
                created_at=_dt.datetime.fromisoformat(created) if isinstance(created, str) else None,
                tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {}))
        return found

    def list_snapshots(self, volume_id: str | None = None) -> list[Snapshot]:
        if volume_id is not None:
            images = [volume_id] if isinstance(volume_id, str) and is_volume_name(volume_id) else []
        else:
            images = [image for image in self._images() if is_volume_name(image)]
        snapshots = [snapshot for image in images for snapshot in self._snapshots_of(image)]
        return sorted(snapshots, key=lambda s: s.id)

    def delete_snapshot(self, snapshot_id: str) -> None:
        name = SnapshotName.parse(snapshot_id)
        if name is None:
            return  # none of ours: never a user's snapshot
        rbd = librbd()
        try:
            with self._open(name.image, read_only=False, not_found=exceptions.VolumeNotFound(volume_id=name.image),
                            ) as handle, self.connection.errors(f"deleting snapshot {name.id}"):
                with contextlib.suppress(rbd.ImageNotFound):
                    handle.remove_snap(name.snap)
                # The record last: a snapshot without it is not listed, a record without it is a leftover.
                with contextlib.suppress(rbd.ImageNotFound, KeyError):
                    handle.metadata_remove(name.record_key)
        except exceptions.VolumeNotFound:
            return
        LOG.debug("snapshot %s deleted in %s", name.id, self.connection.what)

    def changed_extents(self, snapshot_id: str, base_snapshot_id: str) -> Iterator[Extent] | None:
        """librbd's diff from the base snapshot to the new one (:func:`~strongroom.block.rbd.handles.
        changed_extents`): exact ranges for objects that existed in the base, a new object from its start
        to the end of what was written in it, discards included.  With ``fast-diff`` (the default
        ``image_features``) a diff with nothing changed reads two object maps and no data."""
        names = []
        ours: dict[str, set[SnapshotName | None]] = {}
        for sid in (snapshot_id, base_snapshot_id):
            name = SnapshotName.parse(sid)
            if name is not None and name.image not in ours:  # one listing per image
                ours[name.image] = {SnapshotName.parse(s.id) for s in self._snapshots_of(name.image)}
            if name is None or name not in ours[name.image]:
                raise exceptions.SnapshotNotFound(snapshot_id=sid)
            names.append(name)
        new, base = names
        if new.image != base.image:
            return None
        found = changed_extents(self.connection, new.image, new.snap, base.snap, f"snapshot {new.id}",
                                exceptions.SnapshotNotFound(snapshot_id=new.id),
                                exceptions.SnapshotNotFound(snapshot_id=base.id))
        return None if found is None else iter(found)

    def extend_volume(self, volume_id: str, size: int) -> Volume:
        """librbd's ``resize``, made through an overwriter's open (:meth:`open_volume_overwriter`): refused
        with ``VolumeInUse`` while another client watches the image (an overwriter, a VM, a mapping), and
        while it runs no overwriter can open the image."""
        image = self._published(volume_id)
        check_size(size)
        writer = self._overwriter(image)
        try:
            size = check_new_size(Volume(id=image, name=image, size=writer.size), size)
            if size > writer.size:
                writer.resize(size)
        finally:
            writer.close()
        LOG.debug("extended image %s to %d bytes in %s", image, size, self.connection.what)
        return self._volume(image)

    def reclaim_leftovers(self) -> list[str]:
        """Staged images no client has open, and half-made or half-deleted snapshots of ours whose maker
        no longer watches their image (a client's watch lapses ``osd_client_watch_timeout`` after it dies)."""
        removed: list[str] = []
        for image in self._images():
            if name_of_staged(image) is not None:
                with self._lock:
                    mine = image in self._staged
                if mine:
                    continue
                if self._remove(image) == "removed":  # "busy": its maker is alive
                    removed.append(image)
            elif is_volume_name(image):
                removed += self._reclaim_snapshots(image)
        if removed:
            LOG.info("removed %d abandoned item(s) of %s: %s", len(removed), self.connection.what,
                     ", ".join(removed))
        return removed

    def _reclaim_snapshots(self, image: str) -> list[str]:
        try:
            with self._open(image, read_only=True, not_found=exceptions.VolumeNotFound(volume_id=image)) as handle, \
                    self.connection.errors(f"listing the snapshots of image {image}"):
                records = {token: str(v) for k, v in handle.metadata_list()
                           if (token := token_of_record(str(k))) is not None}
                snaps = {name.token: name for s in handle.list_snaps()
                         if (name := SnapshotName.of(image, str(s["name"]))) is not None}
                if not records and not snaps:
                    return []
                watchers = {int(w["id"]) for w in handle.watchers_list()}
        except exceptions.VolumeNotFound:
            return []
        orphan_records = [t for t, text in records.items()
                          if t not in snaps and decode_record(text).get("maker") not in watchers]
        orphan_snaps = [name for t, name in snaps.items() if t not in records]
        if not orphan_records and not orphan_snaps:
            return []
        removed = []
        rbd = librbd()
        with self._open(image, read_only=False, not_found=exceptions.VolumeNotFound(volume_id=image)) as handle, \
                self.connection.errors(f"removing leftovers of image {image}"):
            for name in orphan_snaps:
                with contextlib.suppress(rbd.ImageNotFound):
                    handle.remove_snap(name.snap)
                removed.append(name.id)
            for token in orphan_records:
                with contextlib.suppress(rbd.ImageNotFound, KeyError):
                    handle.metadata_remove(SnapshotName(image, token).record_key)
                removed.append(f"{image} metadata {SnapshotName(image, token).record_key}")
        return removed

    # -- data ----------------------------------------------------------------------------------------

    def open_snapshot(self, snapshot_id: str) -> BlockReader:
        name = SnapshotName.parse(snapshot_id)
        if name is None:
            raise exceptions.SnapshotNotFound(snapshot_id=snapshot_id)
        missing = exceptions.SnapshotNotFound(snapshot_id=snapshot_id)
        reader = RbdReader(self.connection, name.image, name.snap, f"snapshot {name.id}", missing,
                           workers=self.config.read_workers)
        if name not in {SnapshotName.parse(s.id) for s in self._snapshots_of(name.image)}:
            reader.close()
            raise missing
        return reader

    def open_volume_reader(self, volume_id: str) -> BlockReader:
        image = self._any(volume_id)
        return RbdReader(self.connection, image, None, f"volume {image}", exceptions.VolumeNotFound(volume_id=image),
                         workers=self.config.read_workers)

    def open_volume_writer(self, volume_id: str) -> BlockWriter:
        image = self._any(volume_id)
        return RbdWriter(self.connection, image, f"volume {image}", exceptions.VolumeNotFound(volume_id=image))

    def check_overwrite(self, volume_id: str) -> Volume:
        volume = self.get_volume(volume_id)
        self.open_volume_overwriter(volume_id).close()
        return volume

    def open_volume_overwriter(self, volume_id: str) -> BlockWriter:
        return self._overwriter(self._published(volume_id))

    def _overwriter(self, image: str) -> RbdWriter:
        return open_overwriter(self.connection, image, f"volume {image}", exceptions.VolumeNotFound(volume_id=image),
                               exceptions.VolumeInUse(volume_id=image, reason="a client has the image open or "
                                                      "mapped (it watches it)"))

    # -- capacity ------------------------------------------------------------------------------------

    def stats(self) -> BackendStats:
        """The pool's usage as the cluster reports it (monitors fed by ceph-mgr; without a mgr, zeros).
        A pool quota (``max_bytes``) caps the total."""
        ioctx = self.connection.ioctx()
        cluster = self.connection.cluster()
        with self.connection.errors("reading the pool's usage"):
            overall = cluster.get_cluster_stats()
            used = int(ioctx.get_stats().get("num_bytes", 0))
        total = int(overall.get("kb", 0)) * 1024
        free = int(overall.get("kb_avail", 0)) * 1024
        quota = self._quota(cluster)
        if quota:
            total = min(total, quota) if total else quota
            free = max(0, min(free, quota - used))
        free = min(free, total)
        pool = PoolStats(name=self.config.where, total_capacity=total, free_capacity=free, allocated_capacity=used)
        return BackendStats(backend="rbd", pools=(pool,))

    def _quota(self, cluster: Any) -> int:
        command = json.dumps({"prefix": "osd pool get-quota", "pool": self.config.pool, "format": "json"})
        try:
            ret, out, _ = cluster.mon_command(command, b"", timeout=max(1, int(self.config.op_timeout)))
            return int(json.loads(out or b"{}").get("quota_max_bytes", 0)) if ret == 0 else 0
        except Exception:  # noqa: BLE001 - a quota is optional; the caps may not allow asking
            return 0

    def close(self) -> None:
        """Close the staged images still open (they stay, for recovery to discard) and the connection."""
        with self._lock:
            held, self._staged = list(self._staged.values()), {}
        for handle in held:
            with contextlib.suppress(Exception):
                handle.close()
        self.connection.close()
