"""The filesystem bank's on-disk format: file names for key segments, and the data file.

See :mod:`strongroom.bank_plugins.fs` for the layout these implement.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import struct
from typing import Any

MAGIC = b"SRBANK1\n"
HEADER_LEN = struct.Struct(">I")
#: Bytes before a data file's JSON metadata: the magic and the metadata's length.
PREFIX_LEN = len(MAGIC) + HEADER_LEN.size
#: Segments longer than this (in UTF-8 bytes) are encoded.
MAX_PLAIN_SEGMENT = 200
#: Raw bytes per encoded name piece (base32 of 150 bytes is 240 characters).
_ENCODED_PIECE = 150
DATA_SUFFIX = ".obj"
#: Temp files (a put in progress, or a deferred put waiting for its barrier) start with this.
TMP_PREFIX = ".tmp-"


# -- name encoding ----------------------------------------------------------


def b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def unb32(text: str) -> bytes | None:
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        return base64.b32decode(padded)
    except (binascii.Error, ValueError):
        return None


def is_plain(segment: str) -> bool:
    try:
        raw = segment.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return (
        0 < len(raw) <= MAX_PLAIN_SEGMENT
        and not segment.startswith((".", "~"))
        and not segment.endswith(DATA_SUFFIX)
        and "\x00" not in segment
    )


def encode_segment(segment: str, data_file: bool) -> list[str]:
    """File names (one, or several nested ones) that store one key segment."""
    if is_plain(segment):
        names = [segment]
    else:
        raw = segment.encode("utf-8", "surrogatepass")
        pieces = [raw[i:i + _ENCODED_PIECE] for i in range(0, len(raw), _ENCODED_PIECE)] or [b""]
        names = ["~~" + b32(piece) for piece in pieces[:-1]] + ["~" + b32(pieces[-1])]
    if data_file:
        names[-1] += DATA_SUFFIX
    return names


# -- the value reader -------------------------------------------------------


class ValueReader(io.RawIOBase):
    """A raw, seekable reader over the value part of a data file."""

    def __init__(self, fd: int, start: int, size: int) -> None:
        super().__init__()
        self._fd = fd
        self._start = start
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._size - self._pos)
        if want <= 0:
            return 0
        chunk = os.pread(self._fd, want, self._start + self._pos)
        view[:len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def readall(self) -> bytes:
        pieces = []
        while self._pos < self._size:
            chunk = os.pread(self._fd, self._size - self._pos, self._start + self._pos)
            if not chunk:
                break  # the file shrank: cannot happen with atomic replaces
            pieces.append(chunk)
            self._pos += len(chunk)
        return b"".join(pieces)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()
