"""Where a file's data lies on the device: the ``FS_IOC_FIEMAP`` ioctl (linux/fiemap.h), read with ``struct``.

:func:`mappings` yields a file's extents as (logical, physical, length, flags), ascending, in batches of
:data:`BATCH` per ioctl, with ``FIEMAP_FLAG_SYNC`` so that data the kernel has not yet allocated (delayed
allocation) is written and mapped first.  :func:`physical_key` says what an extent's physical address is
worth: a physical offset that two files mapping the same bytes share, or None when the flags say the
address does not identify the data (unknown, delayed, encoded, inline, not aligned, encrypted, a tail).
"""

from __future__ import annotations

import fcntl
import struct
from collections.abc import Iterator
from typing import NamedTuple

#: ``_IOWR('f', 11, struct fiemap)``: the header is 32 bytes.
FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x0001
FIEMAP_EXTENT_LAST = 0x0001
FIEMAP_EXTENT_UNKNOWN = 0x0002
FIEMAP_EXTENT_DELALLOC = 0x0004
FIEMAP_EXTENT_ENCODED = 0x0008
FIEMAP_EXTENT_DATA_ENCRYPTED = 0x0080
FIEMAP_EXTENT_NOT_ALIGNED = 0x0100
FIEMAP_EXTENT_DATA_INLINE = 0x0200
FIEMAP_EXTENT_DATA_TAIL = 0x0400
FIEMAP_EXTENT_UNWRITTEN = 0x0800
FIEMAP_EXTENT_SHARED = 0x2000
#: Flags under which ``fe_physical`` does not name the bytes alone: such an extent is never "the same".
UNTRUSTED = (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_ENCODED | FIEMAP_EXTENT_DATA_ENCRYPTED
             | FIEMAP_EXTENT_NOT_ALIGNED | FIEMAP_EXTENT_DATA_INLINE | FIEMAP_EXTENT_DATA_TAIL)

_HEADER = struct.Struct("=QQIIII")  # fm_start, fm_length, fm_flags, fm_mapped_extents, fm_extent_count, reserved
_EXTENT = struct.Struct("=QQQQQIIII")  # fe_logical, fe_physical, fe_length, 2 reserved, fe_flags, 3 reserved
#: Extents asked for per ioctl (56 bytes each).
BATCH = 1024
_ALL = (1 << 64) - 1


class Mapping(NamedTuple):
    logical: int
    physical: int
    length: int
    flags: int

    @property
    def end(self) -> int:
        return self.logical + self.length


def mappings(fd: int, size: int) -> Iterator[Mapping]:
    """The extents of ``fd`` that start below ``size``, ascending.  Raises ``OSError`` where the filesystem
    has no FIEMAP (``EOPNOTSUPP``, ``ENOTTY``)."""
    buf = bytearray(_HEADER.size + BATCH * _EXTENT.size)
    start, flags = 0, FIEMAP_FLAG_SYNC
    while start < size:
        _HEADER.pack_into(buf, 0, start, _ALL - start, flags, 0, BATCH, 0)
        fcntl.ioctl(fd, FS_IOC_FIEMAP, buf, True)
        flags = 0  # synced once
        mapped = _HEADER.unpack_from(buf, 0)[3]
        if mapped == 0:
            return
        last = None
        for logical, physical, length, _r1, _r2, fe_flags, *_ in _EXTENT.iter_unpack(
                memoryview(buf)[_HEADER.size:_HEADER.size + mapped * _EXTENT.size]):
            if logical >= size:
                return
            last = Mapping(logical, physical, length, fe_flags)
            yield last
        if last is None or last.flags & FIEMAP_EXTENT_LAST or last.end <= start:
            return
        start = last.end


def physical_key(extent: Mapping) -> tuple[int, bool] | None:
    """What makes two files' extents hold the same bytes: the same ``physical - logical`` (so every byte of
    the overlap is at the same device address) and the same unwritten state; None when the flags leave the
    physical address meaningless for this purpose."""
    if extent.flags & UNTRUSTED:
        return None
    return extent.physical - extent.logical, bool(extent.flags & FIEMAP_EXTENT_UNWRITTEN)
