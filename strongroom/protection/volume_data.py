"""Byte ranges of a checkpoint's protected volume, for the API's data route (``strongroom mount`` reads it).

:class:`VolumeData` keeps the last few :class:`~strongroom.datamover.reader.BlockReader` objects it opened
(one per provider, checkpoint and volume), so consecutive ranges of one volume read its manifest once and
share the reader's chunk cache.  A range is at most :data:`MAX_RANGE` bytes (one RPC answer); a longer one is
answered short, as HTTP allows a server to answer a range.

Only an available checkpoint is read, and only the caller's project's (administrators: any project's): the
manager checks both through the catalogue before asking for bytes.
"""

from __future__ import annotations

import base64
import collections
import threading
from typing import Any

from strongroom import exceptions
from strongroom.bank_plugins import Bank
from strongroom.datamover.reader import BlockReader, open_reader

#: The most bytes one call answers (base64 in an RPC answer: a third more on the wire).
MAX_RANGE = 8 * 1024 * 1024
#: Readers kept open (each holds its manifest, ~50 bytes a chunk, and its chunk cache).
DEFAULT_READERS = 8
#: Chunk cache of each reader.
READER_CACHE_BYTES = 16 * 1024 * 1024


class VolumeData:
    def __init__(self, readers: int = DEFAULT_READERS, cache_bytes: int = READER_CACHE_BYTES) -> None:
        self._max = readers
        self._cache_bytes = cache_bytes
        self._readers: collections.OrderedDict[tuple[str, str, str], BlockReader] = collections.OrderedDict()
        self._lock = threading.Lock()

    def reader(self, provider_id: str, bank: Bank, project_id: str, checkpoint_id: str,
               resource_key: str) -> BlockReader:
        key = (provider_id, checkpoint_id, resource_key)
        with self._lock:
            found = self._readers.get(key)
            if found is not None:
                self._readers.move_to_end(key)
                return found
        try:
            reader = open_reader(bank, checkpoint_id, resource_key, project_id=project_id,
                                 cache_bytes=self._cache_bytes)
        except (exceptions.BankObjectNotFound, exceptions.NotFound):
            raise exceptions.NotFound(kind="Resource", id=f"{resource_key} of checkpoint {checkpoint_id}") from None
        with self._lock:
            self._readers[key] = reader
            while len(self._readers) > self._max:
                self._readers.popitem(last=False)
        return reader

    def read(self, provider_id: str, bank: Bank, project_id: str, checkpoint_id: str, resource_key: str,
             offset: int, length: int) -> dict[str, Any]:
        """``{"size": volume bytes, "offset": offset, "data": base64}``: at most :data:`MAX_RANGE` bytes."""
        if offset < 0 or length < 0:
            raise exceptions.InvalidInput(reason=f"range: offset {offset} and length {length} must not be negative")
        reader = self.reader(provider_id, bank, project_id, checkpoint_id, resource_key)
        data = reader.read(offset, min(length, MAX_RANGE)) if offset < reader.size else b""
        return {"size": reader.size, "offset": offset, "data": base64.b64encode(data).decode("ascii")}
