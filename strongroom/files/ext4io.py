"""What :mod:`strongroom.files.tree` adds under the ``ext4`` package to list large directories quickly.

Two things made listing a directory of 2000 entries take minutes (``doc/file-restore.md``, Limits):

* the package parses a directory entry by reading the *whole directory* again for each entry
  (``DirectoryEntryStruct.read_from_volume``): n entries cost n reads of every block of the directory.
  :func:`entries` reads the directory's bytes once and parses them with ``struct``, as the package's own
  linear scan does (the same entries kept and skipped);
* every read the package makes is small (two bytes of ``i_mode``, an inode, one block) and jumps between
  the inode table and the directory's blocks; through an ``io.BufferedReader`` each jump refilled its whole
  buffer, and blocks spread over more chunks than the reader's chunk cache holds made it fetch (decrypt,
  decompress, verify) the same chunks again and again.  :class:`PageCache` keeps the pages the
  filesystem's metadata lives in, whatever the chunk cache evicts meanwhile.

Memory: a tree's page cache holds at most :data:`PAGES` pages of :data:`PAGE` bytes (4 MiB), beside the
reader's own chunk cache.
"""

from __future__ import annotations

import collections
import dataclasses
import struct
from typing import Any

from strongroom.datamover.reader import BlockReader, SeekableStream

#: Bytes read from the volume at a time (and kept), aligned: 16 blocks of 4 KiB.
PAGE = 64 * 1024
#: Pages a tree keeps (LRU): 4 MiB.
PAGES = 64

_HEADER = struct.Struct("<IHBB")  # inode, rec_len, name_len, file_type (the FILETYPE feature)
_HEADER_OLD = struct.Struct("<IHH")  # inode, rec_len, name_len
_NAME_AT = 8
_DIR_CSUM = 0xDE  # file_type of the checksum tail of a directory block
_FT_MAX = 7
_HASH_BYTES = 8  # hash and minor hash after the name, in an encrypted and casefolded directory


class PageCache(SeekableStream):
    """A read-only seekable stream over a volume that keeps the last :data:`PAGES` aligned pages it read.

    What the ``ext4`` package reads through: ``read``, ``peek``, ``seek``, ``tell``.  A read inside one
    page is a slice of it; a read across pages joins them.  Not thread-safe (one position), as any file.
    """

    def __init__(self, reader: BlockReader, pages: int = PAGES, page: int = PAGE) -> None:
        super().__init__()
        self.reader = reader
        self.size = reader.size
        self._page = page
        self._max = max(1, pages)
        self._pages: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._pos = 0
        self.misses = 0  # pages read from the reader (for tests and measurements)

    def _get(self, index: int) -> bytes:
        data = self._pages.get(index)
        if data is not None:
            self._pages.move_to_end(index)
            return data
        data = self.reader.read(index * self._page, self._page)
        self.misses += 1
        self._pages[index] = data
        if len(self._pages) > self._max:
            self._pages.popitem(last=False)
        return data

    def _bytes(self, pos: int, size: int) -> bytes:
        end = min(pos + size, self.size) if size >= 0 else self.size
        if pos >= end:
            return b""
        first, last = pos // self._page, (end - 1) // self._page
        if first == last:
            start = first * self._page
            return self._get(first)[pos - start:end - start]
        parts = [memoryview(self._get(i)) for i in range(first, last + 1)]
        parts[-1] = parts[-1][:end - last * self._page]
        parts[0] = parts[0][pos - first * self._page:]
        return b"".join(parts)

    def read(self, size: int | None = -1) -> bytes:
        data = self._bytes(self._pos, -1 if size is None else size)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def peek(self, size: int = 0) -> bytes:
        """Bytes from the position on, the position kept (at least one page's rest, as a buffered reader)."""
        return self._bytes(self._pos, max(size, 1))


def entries(directory: Any) -> list[tuple[bytes, int]]:
    """``(name, inode number)`` of every entry of an ``ext4.Directory``, ``.`` and ``..`` included, in
    on-disk order: the directory's bytes read once and scanned as the package's ``opendir`` scans them
    (htree index blocks are entries of inode 0 over the whole block, skipped as in a linear scan).

    ``ValueError`` for an entry whose file type is out of range (as the package raises).
    """
    data = directory._open().read()
    filetype = bool(directory.has_filetype)
    header = _HEADER if filetype else _HEADER_OLD
    hashed = bool(directory.hash_in_dirent)
    out: list[tuple[bytes, int]] = []
    offset, size = 0, len(data)
    while offset + _NAME_AT <= size:
        if filetype:
            inode, rec_len, name_len, kind = header.unpack_from(data, offset)
        else:
            (inode, rec_len, name_len), kind = header.unpack_from(data, offset), None
        if not rec_len:
            offset += _NAME_AT
            continue
        if not inode or not name_len:
            offset += rec_len
            continue
        name = bytes(data[offset + _NAME_AT:offset + _NAME_AT + name_len])
        fake = name in (b".", b"..") or kind == _DIR_CSUM
        expected = _NAME_AT + name_len + 3 + (_HASH_BYTES if hashed and not fake else 0)
        if rec_len < expected & ~3:
            break  # the package stops there too (with a warning): the rest of the directory is unreadable
        offset += rec_len
        if kind is None:
            out.append((name, inode))
        elif kind == _DIR_CSUM or kind == 0:
            continue
        elif kind > _FT_MAX:
            raise ValueError(f"directory entry {name!r}: unexpected file type {kind}")
        else:
            out.append((name, inode))
    return out


_INODE = struct.Struct("<HHIIIIIH")  # i_mode, i_uid, i_size_lo, i_atime, i_ctime, i_mtime, i_dtime, i_gid
_SIZE_HIGH_AT = 108
_IDS_HIGH_AT = 120  # osd2.linux2: l_i_uid_high, l_i_gid_high
_INODE_READ = 128  # the fields above all lie in the first 128 bytes, whatever the inode size


@dataclasses.dataclass(frozen=True, slots=True)
class InodeStat:
    """What ``ls -l`` shows of an inode, read straight from its table entry."""

    mode: int  # type and permission bits
    uid: int
    gid: int
    size: int
    mtime: int  # seconds since the epoch


def inode_stat(volume: Any, number: int) -> InodeStat:
    """The :class:`InodeStat` of inode ``number`` of an ``ext4.Volume``: one read of its table entry (through
    the tree's page cache, so the entries of one table block cost one read), without the package's parse of
    the inode (which reads it twice over and parses its extent tree: most of a listing's time)."""
    superblock = volume.superblock
    group, index = divmod(number - 1, superblock.s_inodes_per_group)
    if number < 1 or group >= len(volume.group_descriptors):
        raise ValueError(f"inode {number}: no such inode (the filesystem has {superblock.s_inodes_count})")
    table = volume.group_descriptors[group].bg_inode_table * volume.block_size
    volume.seek(table + index * superblock.s_inode_size)
    raw = volume.read(_INODE_READ)
    if len(raw) < _INODE_READ:
        raise ValueError(f"inode {number}: its table entry lies past the end of the volume")
    mode, uid, size_lo, _, _, mtime, _, gid = _INODE.unpack_from(raw)
    (size_hi,) = struct.unpack_from("<I", raw, _SIZE_HIGH_AT)
    uid_hi, gid_hi = struct.unpack_from("<HH", raw, _IDS_HIGH_AT)
    return InodeStat(mode=mode, uid=uid | uid_hi << 16, gid=gid | gid_hi << 16, size=size_hi << 32 | size_lo,
                     mtime=mtime)
