"""Bytes in and out of Swift: the value being put, one segment of it, and the stream ``open_object`` returns.

A stream is buffered up to the large-object threshold (to tell a single ``PUT``
from a Static Large Object) and otherwise sent segment by segment in
:data:`UPLOAD_CHUNK` pieces, each segment hashed as it goes.  A failure of the
caller's stream is wrapped in :class:`SourceError`, so that the plugin re-raises
it as it was instead of mapping it to a bank error.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import IO

from strongroom.bank_plugins.objectstore import Prepended, read_up_to

#: Pieces in which bodies are sent.
UPLOAD_CHUNK = 64 * 1024
#: Segments live under ``<sha256(key)[:32]>/<upload id>/``.
SEGMENT_KEY_HASH_LENGTH = 32


def md5_hex(data: bytes | memoryview) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class SourceError(Exception):
    """Wraps an exception raised by the caller's stream, so it is re-raised as it was."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def upload_source(head: bytes | bytearray | memoryview, stream: IO[bytes] | None = None) -> Prepended:
    """The value being put: a buffered ``head``, then maybe the rest of ``stream``."""
    return Prepended(head, stream, wrap_error=SourceError)


def read_head(stream: IO[bytes], limit: int) -> bytearray:
    """Up to ``limit`` bytes of ``stream`` (fewer only at its end); its failures raise :class:`SourceError`."""
    try:
        return read_up_to(stream, limit)
    except Exception as err:
        raise SourceError(err) from err


def upload_prefix(key: str) -> str:
    """A fresh ``<sha256(key)[:32]>/<upload id>`` under which one upload's segments are named."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:SEGMENT_KEY_HASH_LENGTH]
    return f"{digest}/{time.time():.6f}-{uuid.uuid4().hex[:12]}"


class SegmentReader:
    """Reads at most ``limit`` bytes of a :class:`Prepended` for one ``PUT``, hashing them as they go."""

    def __init__(self, source: Prepended, limit: int) -> None:
        self._source = source
        self._left = limit
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if n is None or n < 0 else min(n, self._left)
        piece = self._source.read(min(want, UPLOAD_CHUNK))
        self._left -= len(piece)
        self.size += len(piece)
        self._md5.update(piece)
        return piece

    @property
    def etag(self) -> str:
        return self._md5.hexdigest()
