"""The cinder backend's data path: each volume's RBD image, found from its connection information, read
and written with :mod:`strongroom.block.rbd`'s connection, reader, writer and overwriter, and diffed by
librbd between two of our snapshots (the RBD snapshots ``snapshot-<id>`` of the image).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from strongroom import exceptions
from strongroom.block.base import BlockReader, BlockWriter, Extent, Volume
from strongroom.block.cinder.options import rbd_options
from strongroom.block.cinder.records import STAGED_MARK, CinderRecords


class CinderDataPath(CinderRecords):
    """Readers, writers, overwriters and changed extents of a project's volumes, through librbd."""

    #: RBD connection per pool, made when first used.
    _connections: dict[str, Any]
    #: (volume id, ``updated_at``) -> (pool, image): see :meth:`_rbd_image`.
    _locations: dict[tuple[str, str], tuple[str, str]]

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

    def _close_connections(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            connection.close()
