"""Descriptor-level helpers of the loopback backend: where a file holds data, and exact ``pread``/``pwrite``."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator, Sequence
from typing import Any

from strongroom.block.base import Extent


def data_extents(fd: int, size: int) -> Iterator[Extent]:
    """Ascending, merged data ranges of ``fd`` within ``[0, size)`` using ``SEEK_DATA``/``SEEK_HOLE``.

    Falls back to one extent for the whole file where the filesystem cannot tell.
    """
    if size <= 0:
        return
    pos = 0
    pending: Extent | None = None
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:  # no data after pos
                break
            if pos == 0 and err.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield Extent(0, size)
                return
            raise
        if start >= size:
            break
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        if end <= start:  # cannot happen on a sane filesystem; avoid looping forever
            end = size
        if pending is not None and pending.end >= start:
            pending = Extent(pending.offset, max(pending.end, end) - pending.offset)
        else:
            if pending is not None:
                yield pending
            pending = Extent(start, end - start)
        pos = end
    if pending is not None:
        yield pending


def pread_exact(fd: int, offset: int, length: int) -> bytes:
    """``length`` bytes from ``offset``, looping over short reads; shorter only at end of file."""
    parts: list[bytes] = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            break
        parts.append(chunk)
        offset += len(chunk)
        length -= len(chunk)
    return b"".join(parts)


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """All of ``data`` at ``offset``, looping over short writes."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written



#: Linux's ``IOV_MAX``: the most pieces one ``pwritev`` takes.
IOV_MAX = 1024


def pwritev_all(fd: int, pieces: Sequence[bytes | memoryview], offset: int) -> None:
    """All of ``pieces``, one after the other from ``offset``: one ``pwritev`` per :data:`IOV_MAX` pieces,
    looping over short writes (the data mover's gathered chunks, written without joining them)."""
    views = [memoryview(piece).cast("B") for piece in pieces if len(piece)]
    while views:
        written = os.pwritev(fd, views[:IOV_MAX], offset)
        offset += written
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if written:
            views[0] = views[0][written:]


#: ``sync_file_range`` flag: start writing back the range's dirty pages, without waiting for them.
SYNC_FILE_RANGE_WRITE = 2
_libc: Any = None


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Have the kernel start writing ``[offset, offset + length)`` of ``fd`` to disk now (``sync_file_range``
    with ``SYNC_FILE_RANGE_WRITE``; it waits only while the device's queue is full), so that a writer's final
    ``fsync`` finds little left to write.  Without it dirty pages wait for the kernel's background threshold
    (10% of memory): a restore of a few GiB then wrote all of it in its last ``fsync``, after its CPU work.
    Best effort: nothing where the call is missing or refused."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)
