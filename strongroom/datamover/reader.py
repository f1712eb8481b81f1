"""Random access to a protected volume of a checkpoint, straight from its manifest and chunks.

Nothing is restored to look inside a checkpoint: a :class:`BlockReader` serves
any byte range of the volume as it was backed up.  It reads the manifest once
(every entry, kept compactly: about 50 bytes per chunk, 13 MB for a 1 TiB
volume of 4 MiB chunks), then for each read fetches the chunks the range
touches through the :class:`~strongroom.datamover.chunkstore.ChunkStore` --
the bank facade opens sealed objects of an encrypted bank, the store
decompresses and checks every chunk against its digest (keyed in an encrypted
bank) -- and keeps the last ones in a bounded LRU cache.  Zero runs are
served as zeros without a bank read.

Entry point::

    from strongroom.datamover.reader import open_reader
    reader = open_reader(bank, checkpoint_id, "OS::Cinder::Volume#<id>")
    reader.size                       # bytes of the volume
    reader.read(offset, length)       # bytes; short only at the end of the volume
    f = reader.file()                 # io.RawIOBase: readinto/read/seek/tell, for filesystem libraries

``open_reader`` finds the checkpoint's project in the clear fields of its
index (the bank's own rule for sealed checkpoints), the resource's section
(opaque key segment in an encrypted checkpoint) and the chunk store the
manifest names (its hash, keyed with the project's key it names).  It checks
nothing about who asks: callers (the protection service) check that the
checkpoint belongs to the caller's project first.

Thread-safe: concurrent reads share the cache, and a chunk wanted by several
threads at once is fetched once.  Each :meth:`BlockReader.file` adapter has
its own position and is for one thread at a time, like any file object.

Errors: ``NotFound`` for an unknown checkpoint, ``ManifestIncomplete`` for a
missing or unfinished manifest, ``DataIntegrityError`` naming the chunk, its
object key and the volume offset for a corrupt chunk, ``BankObjectNotFound``
for a missing one, ``InvalidInput`` for a negative offset or length.
"""

from __future__ import annotations

import bisect
import collections
import io
import threading
from array import array
from typing import Any

from strongroom import exceptions
from strongroom.bank_plugins.bank import Bank, BankSection
from strongroom.bank_plugins.layout import RESOURCE_DATA, BankLayout
from strongroom.datamover import hashing
from strongroom.datamover import manifest as _manifest
from strongroom.datamover.chunkstore import ChunkStore

#: Bytes of decompressed chunks kept by default (16 chunks of the default 4 MiB).
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024


def chunk_store_for(bank: Bank, project_id: str, header: _manifest.ManifestHeader) -> ChunkStore:
    """The project's chunk store as a manifest names its chunks: its hash, keyed with the key it names."""
    key: bytes | None = None
    named = hashing.key_id_of(header.hash)
    if named is not None:
        _, key = bank.id_key(project_id, named)
    return ChunkStore(bank.section(BankLayout.chunks_prefix(project_id)), hash_algo=header.hash, hash_key=key)


def checkpoint_project(bank: Bank, checkpoint_id: str) -> str:
    """The project of a checkpoint, from the clear fields of its index.  ``NotFound`` without an index."""
    key = BankLayout.index_key(checkpoint_id)
    try:
        data = bank.get_json(key)
    except exceptions.BankObjectNotFound:
        raise exceptions.NotFound(kind="Checkpoint", id=checkpoint_id) from None
    project = data.get("project_id") if isinstance(data, dict) else None
    if not isinstance(project, str) or not project:
        raise exceptions.BankObjectCorrupt(key=key, reason="its index names no project")
    return project


def open_reader(bank: Bank, checkpoint_id: str, resource_key: str, *, project_id: str | None = None,
                cache_bytes: int = DEFAULT_CACHE_BYTES) -> BlockReader:
    """A reader of the volume ``resource_key`` (``type#id``) as checkpoint ``checkpoint_id`` holds it.

    ``project_id`` saves reading the index when the caller has it already.
    """
    project = project_id or checkpoint_project(bank, checkpoint_id)
    segment = bank.resource_segment(checkpoint_id, resource_key)
    resource = bank.section(BankLayout.resource_prefix(checkpoint_id, segment), read_only=True)
    section = resource.section(RESOURCE_DATA, read_only=True)
    header = _manifest.read_manifest_header(section)
    return BlockReader(section, chunk_store_for(bank, project, header), header=header,
                       cache_bytes=cache_bytes, name=f"{resource_key} of checkpoint {checkpoint_id}")


class BlockReader:
    """Any byte range of one backed-up volume (see the module docstring)."""

    def __init__(self, manifest_section: BankSection, store: ChunkStore, *,
                 header: _manifest.ManifestHeader | None = None, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 name: str = "") -> None:
        if cache_bytes < 0:
            raise exceptions.InvalidInput(reason=f"cache_bytes must not be negative, not {cache_bytes}")
        self.header = header or _manifest.read_manifest_header(manifest_section)
        self.size = self.header.size
        self.chunk_size = self.header.chunk_size
        self.name = name or manifest_section.prefix
        self.store = store
        self.cache_bytes = cache_bytes
        self._offsets = array("q")
        self._lengths = array("q")
        self._digests: list[str | None] = []
        for entry in _manifest.iter_entries(manifest_section, self.header):
            self._offsets.append(entry.offset)
            self._lengths.append(entry.length)
            self._digests.append(entry.digest)
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._cached = 0
        self._inflight: dict[str, _Fetch] = {}
        self.fetches = 0  # bank reads of chunks so far (for tests and measurements)

    def __repr__(self) -> str:
        return f"BlockReader({self.name!r}, {self.size} bytes)"

    def entries(self) -> list[_manifest.Entry]:
        """The manifest: ``Entry(offset, length, digest or None)`` tiling ``[0, size)``."""
        return [_manifest.Entry(o, n, d) for o, n, d in zip(self._offsets, self._lengths, self._digests,
                                                            strict=True)]

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer past the end of the volume, none at or after it)."""
        if offset < 0 or length < 0:
            raise exceptions.InvalidInput(reason=f"cannot read {length} bytes at offset {offset}")
        end = min(offset + length, self.size)
        if offset >= end:
            return b""
        index = bisect.bisect_right(self._offsets, offset) - 1
        start = self._offsets[index]
        if end <= start + self._lengths[index]:  # within one chunk: one slice of it, no buffer to fill
            if self._digests[index] is None:
                return bytes(end - offset)
            return self._chunk(index)[offset - start:end - start]
        out = bytearray(end - offset)
        self._fill(offset, memoryview(out))
        return bytes(out)

    def readinto(self, offset: int, buffer: Any) -> int:
        """Fill ``buffer`` from ``offset``; the number of bytes filled (short only at the end)."""
        if offset < 0:
            raise exceptions.InvalidInput(reason=f"cannot read at offset {offset}")
        view = memoryview(buffer).cast("B")
        end = min(offset + len(view), self.size)
        if offset >= end:
            return 0
        self._fill(offset, view[:end - offset])
        return end - offset

    def file(self) -> BlockReaderFile:
        """A read-only, seekable file object over the volume (its own position)."""
        return BlockReaderFile(self)

    def _fill(self, offset: int, out: memoryview) -> None:
        end = offset + len(out)
        index = bisect.bisect_right(self._offsets, offset) - 1
        at = offset
        while at < end:
            start, length, digest = self._offsets[index], self._lengths[index], self._digests[index]
            stop = min(start + length, end)
            target = out[at - offset:stop - offset]
            if digest is None:
                target[:] = bytes(len(target))
            else:
                data = self._chunk(index)
                target[:] = data[at - start:stop - start]
            at = stop
            index += 1

    def _chunk(self, index: int) -> bytes:
        digest = self._digests[index]
        assert digest is not None
        with self._lock:
            data = self._cache.get(digest)
            if data is not None:
                self._cache.move_to_end(digest)
                return data
            fetch = self._inflight.get(digest)
            owner = fetch is None
            if fetch is None:
                fetch = self._inflight[digest] = _Fetch()
        if not owner:
            return fetch.wait()
        try:
            data = self._fetch(index)
        except BaseException as err:
            with self._lock:
                del self._inflight[digest]
            fetch.fail(err)
            raise
        with self._lock:
            del self._inflight[digest]
            self.fetches += 1
            if len(data) <= self.cache_bytes:
                self._cache[digest] = data
                self._cached += len(data)
                while self._cached > self.cache_bytes:
                    _, old = self._cache.popitem(last=False)
                    self._cached -= len(old)
        fetch.done(data)
        return data

    def _fetch(self, index: int) -> bytes:
        digest, offset, length = self._digests[index], self._offsets[index], self._lengths[index]
        assert digest is not None
        key = self.store.section.prefix + ChunkStore.key(digest)
        what = f"chunk {digest} at offset {offset} of {self.name}"
        try:
            return self.store.get(digest, size=length)
        except exceptions.DataIntegrityError as err:
            raise exceptions.DataIntegrityError(what=f"{what} (bank object {key})",
                                                reason=err.kwargs.get("reason", str(err))) from err
        except exceptions.BankObjectNotFound:
            raise exceptions.BankObjectNotFound(key=f"{key} ({what})") from None


class _Fetch:
    """One chunk being fetched, for the other threads that want it meanwhile."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._data: bytes | None = None
        self._error: BaseException | None = None

    def done(self, data: bytes) -> None:
        self._data = data
        self._event.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._event.set()

    def wait(self) -> bytes:
        self._event.wait()
        if self._error is not None:
            raise self._error
        assert self._data is not None
        return self._data


class SeekableStream(io.RawIOBase):
    """A read-only seekable raw stream over something of ``size`` bytes: ``readable``, ``seekable``, ``tell``
    and ``seek`` over ``_pos`` (a subclass gives ``size`` and ``readinto``)."""

    size: int
    _pos: int = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._checkClosed()  # type: ignore[attr-defined]
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()  # type: ignore[attr-defined]
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos


class BlockReaderFile(SeekableStream):
    """A read-only seekable file over a :class:`BlockReader`.  Wrap it in ``io.BufferedReader`` for small
    reads; filesystem libraries that read whole blocks can take it as it is."""

    def __init__(self, reader: BlockReader) -> None:
        super().__init__()
        self.reader = reader
        self.size = reader.size
        self._pos = 0

    def readinto(self, buffer: Any) -> int:
        self._checkClosed()  # type: ignore[attr-defined]
        n = self.reader.readinto(self._pos, buffer)
        self._pos += n
        return n

    def readall(self) -> bytes:
        data = self.reader.read(self._pos, max(0, self.reader.size - self._pos))
        self._pos += len(data)
        return data
