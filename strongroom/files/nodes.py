"""A :class:`~strongroom.files.tree.Tree` over a filesystem library that hands out directory entries.

The ext4 tree resolves paths itself over the ``ext4`` package's inodes; the
other readers (:mod:`strongroom.files.tsk` for FAT and NTFS,
:mod:`strongroom.files.xfs` for XFS) answer the same calls through this base:
an adapter says what the root is, what a directory's entries are, what an
entry is (``ls -l``), a symlink's target and a regular file's bytes; path
resolution (symlinks, ``NotFound`` naming the missing path, "not a
directory"), listings, reads and walks are the same for all.
"""

from __future__ import annotations

import posixpath
from typing import Any, BinaryIO

from strongroom import exceptions
from strongroom.datamover.reader import BlockReader, SeekableStream
from strongroom.files.tree import DIRECTORIES_KEPT, FileInfo, Located, Tree, _stream, normalize


class NodeTree(Tree):
    """One filesystem read through an adapter's nodes (whatever its library gives for an entry)."""

    #: Names matched case-insensitively when no entry has the exact name (FAT and NTFS, as Windows does).
    CASE_INSENSITIVE = False

    def __init__(self, reader: BlockReader, located: Located) -> None:  # the ext4 tree's, without ext4
        self.reader = reader
        self.located = located
        self._stream = _stream(reader)
        self._names: dict[Any, dict[str, Any]] = {}  # type: ignore[assignment]
        self._guard(self._open)

    # -- what an adapter says ------------------------------------------------------

    def _open(self) -> None:
        raise NotImplementedError

    def _root(self) -> Any:
        raise NotImplementedError

    def _key(self, node: Any) -> Any:
        """What identifies a directory for the parsed-entries cache (its inode number)."""
        raise NotImplementedError

    def _entries(self, directory: Any) -> dict[str, Any]:
        """The entries of ``directory``, by name, without ``.`` and ``..``."""
        raise NotImplementedError

    def _type(self, node: Any) -> str:
        """``file``, ``directory``, ``symlink``... as :class:`FileInfo` names them."""
        raise NotImplementedError

    def _describe(self, path: str, name: str, node: Any) -> FileInfo:
        raise NotImplementedError

    def _target(self, node: Any) -> str:
        raise NotImplementedError

    def _content(self, node: Any, size: int) -> BinaryIO:
        raise NotImplementedError

    # -- resolution ---------------------------------------------------------------

    def _children(self, directory: Any) -> dict[str, Any]:
        key = self._key(directory)
        names = self._names.get(key)
        if names is None:
            if len(self._names) >= DIRECTORIES_KEPT:
                self._names.clear()
            names = self._entries(directory)
            self._names[key] = names
        return names

    def _child(self, directory: Any, name: str) -> Any:
        names = self._children(directory)
        found = names.get(name)
        if found is None and self.CASE_INSENSITIVE:
            folded = name.casefold()
            found = next((node for other, node in names.items() if other.casefold() == folded), None)
        return found

    def _stat_info(self, path: str, name: str, inode: Any) -> FileInfo:
        return self._describe(path, name, inode)

    # -- the calls ------------------------------------------------------------------

    def list(self, path: str) -> list[FileInfo]:
        _, node = self._guard(lambda: self._inode_at(path, True))
        if self._type(node) != "directory":
            raise exceptions.InvalidInput(reason=f"path: {normalize(path)} is not a directory")
        shown = normalize(path)
        return self._guard(lambda: sorted((self._describe(posixpath.join(shown, name), name, child)
                                           for name, child in self._children(node).items()),
                                          key=lambda i: i.name))

    def open(self, path: str) -> tuple[FileInfo, BinaryIO]:
        resolved, node = self._guard(lambda: self._inode_at(path, True))
        if self._type(node) != "file":
            raise exceptions.InvalidInput(reason=f"path: {normalize(path)} is not a regular file")
        info = self._guard(lambda: self._describe(resolved, posixpath.basename(resolved), node))
        return info, self._guard(lambda: self._content(node, info.size))


class RandomAccessFile(SeekableStream):
    """A seekable read-only stream over ``read_at(offset, length) -> bytes`` and a size."""

    def __init__(self, read_at: Any, size: int) -> None:
        super().__init__()
        self._read_at = read_at
        self.size = size
        self._pos = 0

    def readinto(self, buffer: Any) -> int:
        length = min(len(buffer), self.size - self._pos)
        if length <= 0:
            return 0
        data = self._read_at(self._pos, length)
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)
