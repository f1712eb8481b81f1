"""Content-addressed chunks in a bank section.

Object key of a chunk: ``<h[:2]>/<h>`` where ``h`` is the lowercase hex digest
of the *uncompressed* bytes.  The object holds the payload (a zstd frame, or the
raw bytes when compression did not help) and this metadata:

``hash``          the algorithm of the digest (``sha256`` or ``blake3``; keyed in an encrypted
                  bank: ``hmac-sha256:<key id>``, :mod:`strongroom.datamover.hashing`)
``compression``   ``zstd`` or ``none`` -- how the payload is stored
``size``          length of the uncompressed chunk in bytes

Chunks are immutable: the same key always holds the same content, so writing a
chunk twice (two concurrent backups of equal data) is harmless.  Every read is
verified against the digest.

Chunks are put with the bank's deferred puts: a chunk is durable, and visible to
other processes, only once :meth:`ChunkStore.barrier` returns.  Nothing that
references a chunk (a manifest header) may be written before that barrier.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import zstandard

from strongroom import exceptions
from strongroom.bank_plugins.bank import BankSection
from strongroom.bank_plugins.layout import BankLayout
from strongroom.datamover import compression, hashing
from strongroom.datamover.compression import DEFAULT_LEVEL


class ChunkStore:
    """Content-addressed chunks in a BankSection.

    The caller passes ``bank.section(BankLayout.chunks_prefix(project_id))`` so that
    chunks are deduplicated per project.  Thread-safe.
    """

    def __init__(self, section: BankSection, hash_algo: str = "sha256", compression: str = "zstd",
                 compression_level: int = DEFAULT_LEVEL, hash_key: bytes | None = None) -> None:
        self.section = section
        self.hash_algo = hash_algo
        self._hash = hashing.hasher(hash_algo, hash_key)
        self.codec = _codec(compression, compression_level)

    @property
    def compression(self) -> str:
        return self.codec.name

    @property
    def compression_level(self) -> int:
        return self.codec.level

    def __repr__(self) -> str:
        return f"ChunkStore({self.section!r}, {self.hash_algo}, {self.codec.name}:{self.codec.level})"

    @staticmethod
    def key(digest: str) -> str:
        """The object key of ``digest`` inside the section."""
        hashing.check_digest(digest)
        return BankLayout.chunk_key(digest)

    def hash(self, data: Any) -> str:
        """Digest of a bytes-like object with this store's algorithm."""
        return self._hash(data)

    def has(self, digest: str) -> bool:
        """True if the chunk is stored.  Never raises for a missing chunk."""
        return self.section.exists(self.key(digest))

    def missing(self, digests: Iterable[str]) -> set[str]:
        """The digests whose chunks are not stored (one batched question to the bank)."""
        ordered = sorted(set(digests))
        return {d for d, present in zip(ordered, self.section.exists_many([self.key(d) for d in ordered]),
                                        strict=True) if not present}

    def put(self, digest: str, data: Any) -> int:
        """Store ``data`` (whose digest the caller computed) and return bytes written to the bank.

        Compressed with zstd when that makes it smaller.  Idempotent.  Durable (and seen by
        other processes) only after the next :meth:`barrier`.
        """
        key = self.key(digest)
        payload, method = self.codec.compress(data)
        if not isinstance(payload, bytes):
            payload = bytes(payload)
        metadata = {"hash": self.hash_algo, "compression": method, "size": str(len(data))}
        self.section.put_deferred(key, payload, metadata)
        return len(payload)

    def barrier(self) -> None:
        """Make every chunk put before this call durable: call it before writing what references them.

        One ``fsync`` round for all of them on a filesystem bank; nothing on object stores, whose
        puts are durable when they return.  Raises ``BankError`` if the bank cannot.
        """
        self.section.barrier()

    def get(self, digest: str, *, size: int | None = None) -> bytes:
        """The chunk's bytes, verified against ``digest``.

        Raises ``BankObjectNotFound`` if missing and ``DataIntegrityError`` if the
        stored bytes do not decompress or do not hash to ``digest`` (or, when
        ``size`` is given, do not have that length).
        """
        payload = self.section.get(self.key(digest))
        # The ``compression`` metadata says how the payload is stored, but reading
        # it costs a second round trip.  The content says it too: a payload that
        # decompresses to bytes hashing to ``digest`` is a zstd frame, and one that
        # itself hashes to ``digest`` is a raw chunk.  Anything else is corrupt.
        if payload[:4] == compression.ZSTD_MAGIC:
            data = self._try_decompress(payload, size)
            if data is not None and self._hash(data) == digest:
                return self._check_size(digest, data, size)
        if self._hash(payload) == digest:
            return self._check_size(digest, payload, size)
        raise exceptions.DataIntegrityError(
            what=f"chunk {digest}", reason="stored bytes do not match the chunk's hash"
        )

    def check(self, digest: str, size: int) -> None:
        """Check everything a restore of the chunk relies on: its object (header and metadata as this
        store writes them: hash algorithm, compression, uncompressed size) and its bytes against ``digest``.

        Raises ``DataIntegrityError`` naming what is wrong, ``BankObjectNotFound`` if it is missing.
        """
        what = f"chunk {digest}"
        try:
            metadata = self.section.head(self.key(digest)).metadata
            problems = [f"its metadata says {name} {metadata.get(name)!r}, not {want!r}"
                        for name, want in (("hash", self.hash_algo), ("size", str(size)))
                        if metadata.get(name) != want]
            if metadata.get("compression") not in compression.COMPRESSIONS:
                problems.append(f"its metadata names no known compression ({metadata.get('compression')!r})")
            if problems:
                raise exceptions.DataIntegrityError(what=what, reason="; ".join(problems))
            self.get(digest, size=size)
        except exceptions.BankObjectCorrupt as err:
            raise exceptions.DataIntegrityError(what=what, reason=str(err)) from err

    def _try_decompress(self, payload: bytes, size: int | None) -> bytes | None:
        """The decompressed frame, or None if ``payload`` is not a sane zstd frame."""
        try:
            declared = zstandard.frame_content_size(payload)
            if declared < 0 or declared > (size if size is not None else compression.MAX_CHUNK_BYTES):
                return None  # we always write the content size, and never more than a chunk
            return self.codec.decompress(payload, compression.ZSTD)
        except zstandard.ZstdError:
            return None

    @staticmethod
    def _check_size(digest: str, data: bytes, size: int | None) -> bytes:
        if size is not None and len(data) != size:
            raise exceptions.DataIntegrityError(
                what=f"chunk {digest}", reason=f"holds {len(data)} bytes, expected {size}"
            )
        return data

    def delete(self, digest: str) -> None:
        """Remove the chunk.  Idempotent."""
        self.section.delete(self.key(digest))

    def iter_digests(self) -> Iterator[str]:
        """Every stored chunk's digest, in ascending order (objects that are not chunks are skipped)."""
        for key in self.section.iter(""):
            digest = BankLayout.digest_of_chunk(key)
            if digest is not None and hashing.is_digest(digest):
                yield digest


def _codec(name: str, level: int) -> compression.Codec:
    return compression.Codec(name, level)
