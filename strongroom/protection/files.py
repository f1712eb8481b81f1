"""File-level browse, download and diff of checkpoints, for the protection service's RPC endpoint.

The protection service reads its banks; the API asks it over RPC (the API never opens a bank).  Every call
names a checkpoint the caller's project owns (the manager looks it up with the caller's scope first) and one of
its volume resources (``OS::Cinder::Volume#<id>``, or the bare id; omitted: the checkpoint's only volume).
Answers are JSON: file contents come back in pieces of at most :data:`MAX_READ` bytes, base64-encoded, so a
download streams by asking piece after piece (``doc/file-restore.md``).

Readers are kept in a small LRU (:data:`READERS`): the next request of a browse (or the next piece of a
download) finds the manifest already read and the last chunks in its cache.
"""

from __future__ import annotations

import base64
import collections
import threading
from typing import Any

from strongroom import exceptions
from strongroom.datamover.reader import BlockReader, open_reader
from strongroom.files import diff as files_diff
from strongroom.files.tree import Tree, describe, normalize, open_tree
from strongroom.objects.records import CheckpointRecord
from strongroom.objects.status import CheckpointStatus
from strongroom.protection.protectables import VOLUME_TYPE

#: Largest piece of a file one call answers.
MAX_READ = 4 * 1024 * 1024
#: Entries a walk answers at most (a restore of more is refused, naming the limit).
MAX_WALK = 100_000
#: Readers kept open.
READERS = 8
#: Cache of each reader.
READER_CACHE = 32 * 1024 * 1024


def resource_key(record: CheckpointRecord, wanted: str | None) -> str:
    """The ``type#id`` of the volume of ``record`` that ``wanted`` names (a key, an id, or None for the only
    volume).  ``NotFound`` (kind ``Resource``) naming it, or ``InvalidInput`` when None is ambiguous."""
    plan = record.protection_plan or {}
    volumes = [f"{r.get('type')}#{r.get('id')}" for r in plan.get("resources", []) or []
               if isinstance(r, dict) and r.get("type") == VOLUME_TYPE]
    if wanted is None or wanted == "":
        if len(volumes) == 1:
            return volumes[0]
        raise exceptions.InvalidInput(
            reason=f"resource: checkpoint {record.id} holds {len(volumes)} volumes; name one of "
                   f"{', '.join(volumes) or 'none'}")
    for key in volumes:
        if wanted in (key, key.split("#", 1)[1]):
            return key
    raise exceptions.NotFound(kind="Resource", id=f"{wanted} in checkpoint {record.id}")


def check_readable(record: CheckpointRecord) -> None:
    if record.status != CheckpointStatus.AVAILABLE:
        raise exceptions.Conflict(reason=f"checkpoint {record.id} is {record.status}: only an available "
                                         "checkpoint's files can be read")


class FileService:
    """Opens readers and trees; thread-safe (each call opens its own tree over a shared reader)."""

    def __init__(self, readers: int = READERS, cache_bytes: int = READER_CACHE) -> None:
        self._readers: collections.OrderedDict[tuple[str, str, str], BlockReader] = collections.OrderedDict()
        self._max = readers
        self._cache_bytes = cache_bytes
        self._lock = threading.Lock()

    def reader(self, provider: Any, record: CheckpointRecord, key: str) -> BlockReader:
        check_readable(record)
        cache_key = (provider.id, record.id, key)
        with self._lock:
            found = self._readers.get(cache_key)
            if found is not None:
                self._readers.move_to_end(cache_key)
                return found
        reader = open_reader(provider.bank, record.id, key, project_id=record.project_id,
                             cache_bytes=self._cache_bytes)
        with self._lock:
            self._readers[cache_key] = reader
            while len(self._readers) > self._max:
                self._readers.popitem(last=False)
        return reader

    def forget(self, checkpoint_id: str) -> None:
        """Drop the readers of a checkpoint (it is being deleted)."""
        with self._lock:
            for key in [k for k in self._readers if k[1] == checkpoint_id]:
                del self._readers[key]

    def tree(self, provider: Any, record: CheckpointRecord, key: str, partition: int | None) -> Tree:
        return open_tree(self.reader(provider, record, key), partition)

    # -- the calls ---------------------------------------------------------------

    def describe(self, provider: Any, record: CheckpointRecord, wanted: str | None) -> dict[str, Any]:
        key = resource_key(record, wanted)
        return {"resource": key, **describe(self.reader(provider, record, key))}

    def list(self, provider: Any, record: CheckpointRecord, wanted: str | None, path: str,
             partition: int | None) -> dict[str, Any]:
        key = resource_key(record, wanted)
        tree = self.tree(provider, record, key, partition)
        return {"resource": key, "filesystem": tree.located.to_dict(), "path": normalize(path),
                "files": [i.to_dict() for i in tree.list(path)]}

    def stat(self, provider: Any, record: CheckpointRecord, wanted: str | None, path: str,
             partition: int | None) -> dict[str, Any]:
        key = resource_key(record, wanted)
        tree = self.tree(provider, record, key, partition)
        return {"resource": key, "filesystem": tree.located.to_dict(), "file": tree.stat(path).to_dict()}

    def read(self, provider: Any, record: CheckpointRecord, wanted: str | None, path: str,
             partition: int | None, offset: int, length: int) -> dict[str, Any]:
        if offset < 0 or length < 0:
            raise exceptions.InvalidInput(reason=f"cannot read {length} bytes at offset {offset}")
        key = resource_key(record, wanted)
        tree = self.tree(provider, record, key, partition)
        info, stream = tree.open(path)
        length = min(length, MAX_READ, max(0, info.size - offset))
        data = b""
        if length:
            stream.seek(offset)
            data = tree._guard(lambda: stream.read(length))
        return {"file": info.to_dict(), "offset": offset, "data": base64.b64encode(data).decode()}

    def walk(self, provider: Any, record: CheckpointRecord, wanted: str | None, path: str,
             partition: int | None) -> dict[str, Any]:
        key = resource_key(record, wanted)
        tree = self.tree(provider, record, key, partition)
        entries = []
        for info in tree.walk(path):
            entries.append(info.to_dict())
            if len(entries) > MAX_WALK:
                raise exceptions.InvalidInput(
                    reason=f"path: {normalize(path)} holds more than {MAX_WALK} entries; name a smaller tree")
        return {"resource": key, "filesystem": tree.located.to_dict(), "files": entries}

    def diff(self, provider: Any, record: CheckpointRecord, other: CheckpointRecord, wanted: str | None,
             path: str | None, partition: int | None) -> dict[str, Any]:
        """What changed from ``record`` to ``other``: byte ranges always, files when ``path`` is given."""
        key = resource_key(record, wanted)
        resource_key(other, key)  # the same volume must be in both
        old, new = self.reader(provider, record, key), self.reader(provider, other, key)
        ranges = files_diff.changed_ranges(old, new)
        out: dict[str, Any] = {
            "resource": key, "from": record.id, "to": other.id, "size": {"from": old.size, "to": new.size},
            "changed_ranges": [[o, n] for o, n in ranges], "changed_bytes": sum(n for _, n in ranges)}
        if path is not None:
            before, after = open_tree(old, partition), open_tree(new, partition)
            out["filesystem"] = after.located.to_dict()
            out["files"] = files_diff.changed_files(before, after, path, limit=MAX_WALK)
        return out
