"""Files of a backed-up volume as a tar stream written into a block volume (a file-level restore run).

The volume is created before the tar is written, so its size is an upper bound computed from the entries:
per entry a header block, a pax header block and its records, the data padded to 512 bytes, then the
end-of-archive blocks, rounded up to a MiB.  What follows the end-of-archive marker is zeros, which every
tar reader stops before.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Sequence
from typing import Any

from strongroom import exceptions
from strongroom.files.tree import FileInfo, Tree

BLOCK = tarfile.BLOCKSIZE
MIB = 1024 * 1024
_TYPES = {"file": tarfile.REGTYPE, "directory": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
          "fifo": tarfile.FIFOTYPE}
#: Entries one restore archives at most.
MAX_ENTRIES = 100_000


def collect(tree: Tree, paths: Sequence[str]) -> list[FileInfo]:
    """Every entry to archive, each path with everything under it, once each, in walk order."""
    seen: set[str] = set()
    out: list[FileInfo] = []
    for path in paths:
        for info in tree.walk(path):
            if info.path in seen or info.type not in _TYPES:
                continue
            seen.add(info.path)
            out.append(info)
            if len(out) > MAX_ENTRIES:
                raise exceptions.InvalidInput(reason=f"paths: more than {MAX_ENTRIES} entries; name smaller trees")
    return out


def bound(entries: Sequence[FileInfo]) -> int:
    """Bytes a pax tar of ``entries`` takes at most, rounded up to a MiB."""
    total = 2 * BLOCK * 10  # end of archive, and the record padding tarfile adds
    for info in entries:
        pax = len(info.path.encode()) + len((info.target or "").encode()) + 256
        total += 2 * BLOCK + -(-pax // BLOCK) * BLOCK
        if info.type == "file":
            total += -(-info.size // BLOCK) * BLOCK
    return -(-total // MIB) * MIB


class _At:
    """A write-only file over a block writer, from offset 0, gathering writes into 1 MiB pieces."""

    def __init__(self, writer: Any, limit: int) -> None:
        self.writer = writer
        self.limit = limit
        self.offset = 0
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: Any) -> int:
        data = bytes(data)
        self._pending.append(data)
        self._size += len(data)
        if self._size >= MIB:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        if self.offset + len(data) > self.limit:
            raise exceptions.InvalidInput(reason="the files grew past the size computed for their archive")
        self.writer.write(self.offset, data)
        self.offset += len(data)
        self._pending, self._size = [], 0


def write_tar(tree: Tree, entries: Sequence[FileInfo], writer: Any, limit: int,
              progress: Callable[[int], None] | None = None) -> int:
    """Write a pax tar of ``entries`` into ``writer`` from offset 0; the bytes written."""
    sink = _At(writer, limit)
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for info in entries:
            member = tarfile.TarInfo(info.path.lstrip("/") or ".")
            member.type = _TYPES[info.type]
            member.mode, member.uid, member.gid = info.mode, info.uid, info.gid
            member.mtime = info.mtime.timestamp()
            if info.type == "symlink":
                member.linkname = info.target or ""
            if info.type == "file":
                member.size = info.size
                _, stream = tree.open(info.path)
                tar.addfile(member, stream)
                if progress is not None:
                    progress(info.size)
            else:
                tar.addfile(member)
    sink.flush()
    return sink.offset
