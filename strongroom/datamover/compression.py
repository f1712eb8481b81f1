"""Chunk compression.

``zstd`` (default, level 1: ``doc/data-path.md`` has the figures) or ``none``.  A chunk is stored compressed only when
that makes it smaller; otherwise it is stored as is and flagged ``none`` in the
object metadata (random data, already-compressed files).

Before compressing a whole chunk, a cheap probe compresses a sample of it
(:data:`PROBE_PIECES` pieces of :data:`PROBE_PIECE` bytes spread over the chunk)
at level 1; a chunk whose sample does not shrink below :data:`PROBE_RATIO` of
its size is stored as is without compressing it at all (``doc/data-path.md``
has the figures).  zstd compressor and decompressor objects are not
thread-safe, so each thread gets its own.
"""

from __future__ import annotations

import threading
from typing import Any

import zstandard

from strongroom import exceptions

ZSTD = "zstd"
NONE = "none"
COMPRESSIONS: tuple[str, ...] = (NONE, ZSTD)
#: The zstd level chunks are compressed with unless told otherwise.
DEFAULT_LEVEL = 1
#: Every zstd frame starts with these four bytes (RFC 8878).
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: No chunk is bigger; a frame declaring more is not one of ours.
MAX_CHUNK_BYTES = 64 * 1024 * 1024
#: The probe samples this many pieces of a chunk...
PROBE_PIECES = 16
#: ... of this many bytes each, spread evenly over the chunk.
PROBE_PIECE = 2048
#: Chunks shorter than this are compressed without a probe (the probe would cost as much).
PROBE_MIN_CHUNK = 4 * PROBE_PIECES * PROBE_PIECE
#: A sample compressed to more than this fraction of its size marks the chunk as incompressible.
PROBE_RATIO = 0.95
#: The zstd level of the probe.
PROBE_LEVEL = 1


def check_compression(name: str, level: int) -> None:
    if name not in COMPRESSIONS:
        raise exceptions.InvalidInput(
            reason=f"unknown compression {name!r} (expected one of {', '.join(COMPRESSIONS)})"
        )
    if not isinstance(level, int) or isinstance(level, bool) or not -7 <= level <= 22:
        raise exceptions.InvalidInput(reason=f"compression level {level!r} is not an integer in [-7, 22]")


class Codec:
    """Compress and decompress with per-thread zstd contexts.

    ``probe`` (default on) skips compressing chunks that a sample shows will not shrink.
    """

    def __init__(self, name: str = ZSTD, level: int = DEFAULT_LEVEL, *, probe: bool = True) -> None:
        check_compression(name, level)
        self.name = name
        self.level = level
        self.probe = probe
        self._local = threading.local()

    def _compressor(self) -> zstandard.ZstdCompressor:
        comp: zstandard.ZstdCompressor | None = getattr(self._local, "compressor", None)
        if comp is None:
            comp = zstandard.ZstdCompressor(level=self.level, write_content_size=True)
            self._local.compressor = comp
        return comp

    def _prober(self) -> zstandard.ZstdCompressor:
        comp: zstandard.ZstdCompressor | None = getattr(self._local, "prober", None)
        if comp is None:
            comp = zstandard.ZstdCompressor(level=PROBE_LEVEL)
            self._local.prober = comp
        return comp

    def compressible(self, data: Any) -> bool:
        """False if a sample of ``data`` does not compress (the probe); True for short chunks."""
        size = len(data)
        if size < PROBE_MIN_CHUNK:
            return True
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        stride = size // PROBE_PIECES
        sample = b"".join(view[i * stride:i * stride + PROBE_PIECE] for i in range(PROBE_PIECES))
        return len(self._prober().compress(sample)) <= PROBE_RATIO * len(sample)

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        dec: zstandard.ZstdDecompressor | None = getattr(self._local, "decompressor", None)
        if dec is None:
            dec = zstandard.ZstdDecompressor()
            self._local.decompressor = dec
        return dec

    def compress(self, data: Any) -> tuple[bytes | Any, str]:
        """Return ``(payload, method)``; ``method`` is ``zstd`` only if it saved space."""
        if self.name == NONE or (self.probe and not self.compressible(data)):
            return data, NONE
        packed = self._compressor().compress(data)
        if len(packed) < len(data):
            return packed, ZSTD
        return data, NONE

    def compress_always(self, data: Any) -> bytes:
        """zstd-compress ``data`` whatever the configured method (manifest parts)."""
        return self._compressor().compress(data)

    def decompress(self, payload: Any, method: str, max_size: int | None = None) -> bytes:
        """Undo :meth:`compress`.  Raises ``zstandard.ZstdError`` on a corrupt frame."""
        if method == NONE:
            return bytes(payload) if not isinstance(payload, bytes) else payload
        if method != ZSTD:
            raise exceptions.InvalidInput(reason=f"unknown compression method {method!r}")
        if max_size is not None:
            return self._decompressor().decompress(payload, max_output_size=max_size)
        return self._decompressor().decompress(payload)
