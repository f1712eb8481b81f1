"""An in-memory block backend: sparse volumes and copy-on-write snapshots.

Volumes are maps ``block index -> bytes`` of fixed-size blocks; a block that
was never written is absent and reads as zeros, so an empty 1 TiB volume costs
a dict.  Blocks are immutable ``bytes`` objects and a write replaces the whole
block, so a snapshot is a shallow copy of the map: it shares every block with
its volume until the volume overwrites one (copy-on-write at block granularity).

A staged volume is an ordinary entry flagged ``staged``; publishing clears the flag under the
backend's lock (its name was reserved at creation, so publishing never clashes).

Like the loopback backend (and Cinder), destroying a volume that still has
snapshots is refused with ``Conflict``.

Meant for tests and for the embedded service's demos; nothing survives the
process.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
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
    HoldingWriter,
    PoolStats,
    Snapshot,
    Volume,
    check_name,
    check_new_size,
    check_placement,
    check_range,
    check_size,
    check_tags,
)

#: Allocation unit.  Small enough that a 4 KiB write costs little, large enough that maps stay short.
BLOCK_SIZE = 64 * 1024
#: Default pool capacity reported by ``stats()`` (the backend itself does not enforce it).
DEFAULT_CAPACITY = 1 << 40
MAX_NAME_LENGTH = 255

_Blocks = dict[int, bytes]


def _extents_of(blocks: Iterator[int] | list[int], size: int) -> Iterator[Extent]:
    start: int | None = None
    end = 0
    for index in sorted(blocks):
        offset = index * BLOCK_SIZE
        if start is not None and offset == end:
            end = offset + BLOCK_SIZE
            continue
        if start is not None:
            yield Extent(start, min(end, size) - start)
        start, end = offset, offset + BLOCK_SIZE
    if start is not None and start < size:
        yield Extent(start, min(end, size) - start)


def _read_blocks(blocks: Mapping[int, bytes], size: int, offset: int, length: int) -> bytes:
    if offset < 0 or length < 0:
        raise exceptions.InvalidInput(
            reason=f"read: offset {offset} and length {length} must not be negative"
        )
    end = min(offset + length, size)
    if offset >= end:
        return b""
    out = bytearray(end - offset)
    pos = offset
    while pos < end:
        index, inner = divmod(pos, BLOCK_SIZE)
        take = min(BLOCK_SIZE - inner, end - pos)
        block = blocks.get(index)
        if block is not None:
            out[pos - offset : pos - offset + take] = block[inner : inner + take]
        pos += take
    return bytes(out)


class _MemoryVolume:
    def __init__(self, volume: Volume) -> None:
        self.volume = volume
        self.blocks: _Blocks = {}
        self.lock = threading.Lock()


class _MemorySnapshot:
    def __init__(self, snapshot: Snapshot, blocks: _Blocks) -> None:
        self.snapshot = snapshot
        self.blocks = blocks


class MemoryReader(BlockReader):
    """Reads a snapshot's frozen map, or a live volume under its lock."""

    def __init__(self, blocks: _Blocks, size: int, lock: threading.Lock | None = None) -> None:
        self._blocks = blocks
        self.size = size
        self._lock = lock or threading.Lock()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise exceptions.BlockError(reason="reader is closed")

    def allocated_extents(self) -> Iterator[Extent]:
        self._check_open()
        with self._lock:
            indices = list(self._blocks)
        return _extents_of(indices, self.size)

    def read(self, offset: int, length: int) -> bytes:
        self._check_open()
        with self._lock:
            return _read_blocks(self._blocks, self.size, offset, length)

    def close(self) -> None:
        self._closed = True


class MemoryWriter(BlockWriter):
    def __init__(self, volume: _MemoryVolume) -> None:
        self._volume = volume
        self.size = volume.volume.size
        self._closed = False

    def write(self, offset: int, data: bytes) -> None:
        if self._closed:
            raise exceptions.BlockError(reason="writer is closed")
        data = bytes(data)
        check_range(self.size, offset, len(data), f"volume {self._volume.volume.id}")
        blocks = self._volume.blocks
        pos = 0
        with self._volume.lock:
            while pos < len(data):
                index, inner = divmod(offset + pos, BLOCK_SIZE)
                take = min(BLOCK_SIZE - inner, len(data) - pos)
                if inner == 0 and take == BLOCK_SIZE:
                    new = data[pos : pos + take]
                else:
                    block = bytearray(blocks.get(index, bytes(BLOCK_SIZE)))
                    block[inner : inner + take] = data[pos : pos + take]
                    new = bytes(block)
                # Replace, never mutate: snapshots may share the old block.
                blocks[index] = new
                pos += take

    def flush(self) -> None:
        """Nothing to do: every write is already in the map."""

    def close(self) -> None:
        self._closed = True


class MemoryBlockBackend(BlockBackend):
    """Sparse volumes and copy-on-write snapshots held in this process's memory."""

    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "capacity": {
                "type": "integer",
                "minimum": 0,
                "description": "Total capacity reported by stats(), in bytes (not enforced).",
            },
            "password": {
                "type": "string",
                "description": "Ignored; accepted so that tests can check credentials are never shown.",
            },
        },
        "additionalProperties": False,
    }
    kind: ClassVar[str] = "memory"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self._capacity = int(self.options.get("capacity", DEFAULT_CAPACITY))
        self._lock = threading.Lock()
        self._volumes: dict[str, _MemoryVolume] = {}
        self._snapshots: dict[str, _MemorySnapshot] = {}
        #: Volumes an open overwriter holds.
        self._overwriting: set[str] = set()

    # -- volumes -----------------------------------------------------------

    def create_volume(self, size: int, name: str | None = None, *, staged: bool = False,
                      placement: Mapping[str, str] | None = None) -> Volume:
        check_size(size)
        check_placement(self, placement)
        if name is not None:
            check_name(name)
        if name is not None and (not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH):
            raise exceptions.InvalidInput(
                reason=f"volume name {name!r} must be a non-empty string "
                f"of at most {MAX_NAME_LENGTH} characters"
            )
        volume_id = str(uuid.uuid4())
        volume = Volume(id=volume_id, name=name or volume_id, size=size, created_at=_dt.datetime.now(_dt.UTC),
                        staged=staged)
        with self._lock:
            if name is not None and any(v.volume.name == name for v in self._volumes.values()):
                raise exceptions.VolumeExists(volume_id=name)
            self._volumes[volume_id] = _MemoryVolume(volume)
        return volume

    def publish_volume(self, volume_id: str) -> Volume:
        with self._lock:
            entry = self._volume(volume_id, staged=True)
            entry.volume = dataclasses.replace(entry.volume, staged=False)
            return entry.volume

    def discard_volume(self, volume_id: str) -> None:
        with self._lock:
            entry = self._volumes.get(volume_id) if isinstance(volume_id, str) else None
            if entry is not None and entry.volume.staged:
                del self._volumes[volume_id]

    def _listed(self, staged: bool) -> list[Volume]:
        with self._lock:
            found = [v.volume for v in self._volumes.values() if v.volume.staged == staged]
        return sorted(found, key=lambda v: v.id)

    def list_volumes(self) -> list[Volume]:
        return self._listed(staged=False)

    def list_staged_volumes(self) -> list[Volume]:
        return self._listed(staged=True)

    def _volume(self, volume_id: str, staged: bool | None = False) -> _MemoryVolume:
        """The entry of ``volume_id``: a published one, a staged one, or (``staged=None``) either."""
        try:
            entry = self._volumes[volume_id]
        except (KeyError, TypeError):
            raise exceptions.VolumeNotFound(volume_id=volume_id) from None
        if staged is not None and entry.volume.staged != staged:
            raise exceptions.VolumeNotFound(volume_id=volume_id)
        return entry

    def get_volume(self, volume_id: str) -> Volume:
        with self._lock:
            return self._volume(volume_id).volume

    def destroy_volume(self, volume_id: str) -> None:
        with self._lock:
            self._volume(volume_id)
            snapshots = sorted(
                sid for sid, snap in self._snapshots.items() if snap.snapshot.volume_id == volume_id
            )
            if snapshots:
                raise exceptions.Conflict(
                    reason=f"volume {volume_id} still has snapshots: {', '.join(snapshots)}"
                )
            del self._volumes[volume_id]

    # -- snapshots ---------------------------------------------------------

    def create_snapshot(self, volume_id: str, tags: Mapping[str, str] | None = None) -> Snapshot:
        kept = check_tags(tags)
        with self._lock:
            volume = self._volume(volume_id)
            with volume.lock:
                blocks = dict(volume.blocks)  # shares the immutable blocks: copy-on-write
            snapshot = Snapshot(
                id=str(uuid.uuid4()),
                volume_id=volume_id,
                size=volume.volume.size,
                created_at=_dt.datetime.now(_dt.UTC),
                tags=kept,
            )
            self._snapshots[snapshot.id] = _MemorySnapshot(snapshot, blocks)
        return snapshot

    def list_snapshots(self, volume_id: str | None = None) -> list[Snapshot]:
        with self._lock:
            found = [
                s.snapshot
                for s in self._snapshots.values()
                if volume_id is None or s.snapshot.volume_id == volume_id
            ]
        return sorted(found, key=lambda s: s.id)

    def delete_snapshot(self, snapshot_id: str) -> None:
        with self._lock:
            self._snapshots.pop(snapshot_id, None)

    def changed_extents(self, snapshot_id: str, base_snapshot_id: str) -> Iterator[Extent] | None:
        """Exact to the block: every write replaces the block object it touches (never mutates it), so a
        block of the new snapshot that is not the very object the base holds was written since."""
        with self._lock:
            snaps = []
            for sid in (snapshot_id, base_snapshot_id):
                try:
                    snaps.append(self._snapshots[sid])
                except (KeyError, TypeError):
                    raise exceptions.SnapshotNotFound(snapshot_id=sid) from None
        new, base = snaps
        if new.snapshot.volume_id != base.snapshot.volume_id:
            return None
        changed = [i for i in new.blocks.keys() | base.blocks.keys() if new.blocks.get(i) is not base.blocks.get(i)]
        if new.snapshot.size > base.snapshot.size:  # grown: the new tail may hold data the base never had
            first = base.snapshot.size // BLOCK_SIZE
            changed += range(first, -(-new.snapshot.size // BLOCK_SIZE))
        return _extents_of(sorted(set(changed)), new.snapshot.size)

    def extend_volume(self, volume_id: str, size: int) -> Volume:
        with self._lock:
            entry = self._volume(volume_id)
            size = check_new_size(entry.volume, size)
            if volume_id in self._overwriting:
                raise exceptions.VolumeInUse(volume_id=volume_id, reason="a restore is writing it")
            entry.volume = dataclasses.replace(entry.volume, size=size)
            return entry.volume

    # -- data --------------------------------------------------------------

    def open_snapshot(self, snapshot_id: str) -> BlockReader:
        with self._lock:
            try:
                snap = self._snapshots[snapshot_id]
            except (KeyError, TypeError):
                raise exceptions.SnapshotNotFound(snapshot_id=snapshot_id) from None
        return MemoryReader(snap.blocks, snap.snapshot.size)

    def open_volume_reader(self, volume_id: str) -> BlockReader:
        with self._lock:
            volume = self._volume(volume_id, staged=None)
        return MemoryReader(volume.blocks, volume.volume.size, volume.lock)

    def open_volume_writer(self, volume_id: str) -> BlockWriter:
        with self._lock:
            volume = self._volume(volume_id, staged=None)
        return MemoryWriter(volume)

    def check_overwrite(self, volume_id: str) -> Volume:
        with self._lock:
            return self._overwritable(volume_id).volume

    def _overwritable(self, volume_id: str) -> _MemoryVolume:
        entry = self._volume(volume_id)
        if volume_id in self._overwriting:
            raise exceptions.VolumeInUse(volume_id=volume_id, reason="another restore is writing it")
        return entry

    def open_volume_overwriter(self, volume_id: str) -> BlockWriter:
        with self._lock:
            entry = self._overwritable(volume_id)
            self._overwriting.add(volume_id)

        def release() -> None:
            with self._lock:
                self._overwriting.discard(volume_id)

        return HoldingWriter(MemoryWriter(entry), release)

    # -- capacity ----------------------------------------------------------

    def stats(self) -> BackendStats:
        with self._lock:
            maps = [v.blocks for v in self._volumes.values()] + [s.blocks for s in self._snapshots.values()]
            seen: dict[int, int] = {}
            for blocks in maps:
                for block in list(blocks.values()):
                    seen[id(block)] = len(block)  # a block shared by copy-on-write counts once
        allocated = sum(seen.values())
        pool = PoolStats(
            name="memory",
            total_capacity=self._capacity,
            free_capacity=max(self._capacity - allocated, 0),
            allocated_capacity=allocated,
        )
        return BackendStats(backend="memory", pools=(pool,))
