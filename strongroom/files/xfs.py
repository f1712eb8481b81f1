"""XFS, read through libyal's ``libfsxfs`` (``pyfsxfs`` from the ``libfsxfs-python`` wheel, LGPL-3.0+).

``pyfsxfs.volume.open_file_object`` reads from any seekable Python file
object: here a view of the volume's buffered :class:`BlockReader` stream that
starts at the partition's offset.  The log is not replayed; extended
attributes are not shown.  ``doc/file-restore.md`` says why this library (and
its status).
"""

from __future__ import annotations

import datetime as _dt
import stat as _stat
from typing import Any, BinaryIO

from strongroom.files.nodes import NodeTree, RandomAccessFile
from strongroom.files.tree import _TYPES, FileInfo

FILESYSTEMS = ("xfs",)


class XfsTree(NodeTree):
    """An XFS filesystem of a backed-up volume."""

    def _open(self) -> None:
        import pyfsxfs  # imported when a tree is opened, never at import time

        stream, start = self._stream, self.located.offset

        def read_at(offset: int, length: int) -> bytes:
            stream.seek(start + offset)
            return stream.read(length)

        self._view = RandomAccessFile(read_at, self.reader.size - start)
        self._volume = pyfsxfs.volume()
        self._volume.open_file_object(self._view)
        self._root_node = self._volume.get_root_directory()

    def _root(self) -> Any:
        return self._root_node

    def _key(self, node: Any) -> Any:
        return int(node.inode_number)

    def _entries(self, directory: Any) -> dict[str, Any]:
        return {str(entry.name): entry for entry in directory.sub_file_entries}

    def _type(self, node: Any) -> str:
        mode = int(node.file_mode)
        return next((label for test, label in _TYPES if test(mode)), "unknown")

    def _describe(self, path: str, name: str, node: Any) -> FileInfo:
        kind = self._type(node)
        mtime = node.modification_time
        mtime = mtime.replace(tzinfo=_dt.UTC) if mtime is not None else _dt.datetime.fromtimestamp(0, _dt.UTC)
        return FileInfo(path=path, name=name, type=kind, size=int(node.size), mode=_stat.S_IMODE(int(node.file_mode)),
                        uid=int(node.owner_identifier), gid=int(node.group_identifier), mtime=mtime,
                        target=self._target(node) if kind == "symlink" else None)

    def _target(self, node: Any) -> str:
        return str(node.symbolic_link_target or "")

    def _content(self, node: Any, size: int) -> BinaryIO:
        def read_at(offset: int, length: int) -> bytes:
            return bytes(node.read_buffer_at_offset(length, offset))
        return RandomAccessFile(read_at, size)  # type: ignore[return-value]
