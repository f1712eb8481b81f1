"""Descriptor-level helpers of the loopback backend: where a file holds data, and exact ``pread``/``pwrite``."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Sequence

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
