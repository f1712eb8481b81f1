"""Chunk compression.

``zstd`` (default, level 3) or ``none``.  A chunk is stored compressed only when
that makes it smaller; otherwise it is stored as is and flagged ``none`` in the
object metadata (random data, already-compressed files).  zstd compressor and
decompressor objects are not thread-safe, so each thread gets its own.
"""

from __future__ import annotations

import threading
from typing import Any

import zstandard

from strongroom import exceptions

ZSTD = "zstd"
NONE = "none"
COMPRESSIONS: tuple[str, ...] = (NONE, ZSTD)
#: Every zstd frame starts with these four bytes (RFC 8878).
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: No chunk is bigger; a frame declaring more is not one of ours.
MAX_CHUNK_BYTES = 64 * 1024 * 1024


def check_compression(name: str, level: int) -> None:
    if name not in COMPRESSIONS:
        raise exceptions.InvalidInput(
            reason=f"unknown compression {name!r} (expected one of {', '.join(COMPRESSIONS)})"
        )
    if not isinstance(level, int) or isinstance(level, bool) or not -7 <= level <= 22:
        raise exceptions.InvalidInput(reason=f"compression level {level!r} is not an integer in [-7, 22]")


class Codec:
    """Compress and decompress with per-thread zstd contexts."""

    def __init__(self, name: str = ZSTD, level: int = 3) -> None:
        check_compression(name, level)
        self.name = name
        self.level = level
        self._local = threading.local()

    def _compressor(self) -> zstandard.ZstdCompressor:
        comp: zstandard.ZstdCompressor | None = getattr(self._local, "compressor", None)
        if comp is None:
            comp = zstandard.ZstdCompressor(level=self.level, write_content_size=True)
            self._local.compressor = comp
        return comp

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        dec: zstandard.ZstdDecompressor | None = getattr(self._local, "decompressor", None)
        if dec is None:
            dec = zstandard.ZstdDecompressor()
            self._local.decompressor = dec
        return dec

    def compress(self, data: Any) -> tuple[bytes | Any, str]:
        """Return ``(payload, method)``; ``method`` is ``zstd`` only if it saved space."""
        if self.name == NONE:
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
