"""FAT (12, 16, 32) and NTFS, read through The Sleuth Kit's Python bindings (``pytsk3``).

``pytsk3`` (Apache-2.0 bindings, bundling libtsk under the CPL-1.0 and IBM
Public License and talloc under the LGPL-3.0) reads from any Python object
that answers ``read(offset, length)`` and ``get_size()``: an ``Img_Info``
subclass over the volume's buffered :class:`BlockReader` stream, the
filesystem at the partition's offset.  ``doc/file-restore.md`` says why this
library and not another.

What is shown: allocated entries only (TSK also lists deleted ones, and
virtual ones of its own such as ``$FAT1`` or ``$OrphanFiles``: left out), and
on NTFS the metadata files of the root (``$MFT``, ``$Bitmap``..., MFT records
below 24) are left out as Windows leaves them out.  Names are matched
case-insensitively when no entry has the exact name.  FAT and NTFS have no
POSIX owner: uid and gid are 0; the mode is 0777, or 0555 for a read-only
entry (FAT's attribute; NTFS's as TSK gives it).  Only an NTFS file's unnamed data stream is read
(alternate data streams are not).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, BinaryIO

from strongroom.files.nodes import NodeTree, RandomAccessFile
from strongroom.files.tree import FileInfo

#: Filesystems this module reads, as :func:`strongroom.files.partitions.probe` names them.
FILESYSTEMS = ("fat", "ntfs")
#: NTFS MFT records reserved for the filesystem's own files ($MFT .. $Extend and the spare ones).
NTFS_RESERVED = 24
#: How TSK names a FAT volume's label entry in the root directory.
FAT_LABEL = " (Volume Label Entry)"


def _image_class() -> Any:
    import pytsk3  # imported when a tree is opened, never at import time

    class StreamImage(pytsk3.Img_Info):  # type: ignore[misc,name-defined]
        """The volume as libtsk sees it: reads answered from the buffered reader stream."""

        def __init__(self, stream: BinaryIO, size: int) -> None:
            self._f = stream
            self._size = size
            super().__init__(url="", type=pytsk3.TSK_IMG_TYPE_EXTERNAL)

        def read(self, offset: int, length: int) -> bytes:
            self._f.seek(offset)
            return self._f.read(length)

        def get_size(self) -> int:
            return self._size

        def close(self) -> None:
            pass

    return StreamImage


class TskTree(NodeTree):
    """A FAT or NTFS filesystem of a backed-up volume."""

    CASE_INSENSITIVE = True

    def _open(self) -> None:
        import pytsk3

        self._tsk = pytsk3
        self._image = _image_class()(self._stream, self.reader.size)
        kind = pytsk3.TSK_FS_TYPE_NTFS_DETECT if self.located.filesystem == "ntfs" else \
            pytsk3.TSK_FS_TYPE_FAT_DETECT
        self._fs = pytsk3.FS_Info(self._image, offset=self.located.offset, type=kind)
        self._root_node = self._fs.open_meta(inode=self._fs.info.root_inum)
        m = pytsk3
        self._kinds = {m.TSK_FS_META_TYPE_REG: "file", m.TSK_FS_META_TYPE_DIR: "directory",
                       m.TSK_FS_META_TYPE_LNK: "symlink", m.TSK_FS_META_TYPE_FIFO: "fifo",
                       m.TSK_FS_META_TYPE_SOCK: "socket", m.TSK_FS_META_TYPE_CHR: "char-device",
                       m.TSK_FS_META_TYPE_BLK: "block-device"}

    def _root(self) -> Any:
        return self._root_node

    def _key(self, node: Any) -> Any:
        return int(node.info.meta.addr)

    def _entries(self, directory: Any) -> dict[str, Any]:
        tsk = self._tsk
        root = self._key(directory) == int(self._fs.info.root_inum)
        out: dict[str, Any] = {}
        for entry in directory.as_directory():
            meta = entry.info.meta
            name = entry.info.name
            if meta is None or int(name.flags) & int(tsk.TSK_FS_NAME_FLAG_UNALLOC):
                continue  # deleted: its name or its record may be reused
            text = name.name.decode("utf-8", "surrogateescape")
            if text in (".", "..") or meta.type in (tsk.TSK_FS_META_TYPE_VIRT, tsk.TSK_FS_META_TYPE_VIRT_DIR):
                continue
            if root and self.located.filesystem == "ntfs" and text.startswith("$") and \
                    int(meta.addr) < NTFS_RESERVED:
                continue
            if root and self.located.filesystem == "fat" and text.endswith(FAT_LABEL):
                continue  # the volume label, which TSK shows as an empty file of the root
            out[text] = entry
        return out

    def _type(self, node: Any) -> str:
        return self._kinds.get(node.info.meta.type, "unknown")

    def _describe(self, path: str, name: str, node: Any) -> FileInfo:
        meta = node.info.meta
        kind = self._type(node)
        mtime = _dt.datetime.fromtimestamp(int(meta.mtime), _dt.UTC) + \
            _dt.timedelta(microseconds=int(getattr(meta, "mtime_nano", 0) or 0) // 1000)
        mode = int(meta.mode) & 0o7777
        if self.located.filesystem == "fat":
            # TSK's FAT mode drops the read bits for the read-only attribute (and the write bits for the
            # hidden one): shown here as a vfat mount shows them, 0555 read-only, 0777 else
            mode = 0o777 if mode & 0o444 or not mode else 0o555
        return FileInfo(path=path, name=name, type=kind, size=int(meta.size) if kind != "directory" else 0,
                        mode=mode, uid=0, gid=0, mtime=mtime,
                        target=self._target(node) if kind == "symlink" else None)

    def _target(self, node: Any) -> str:
        size = int(node.info.meta.size)
        return bytes(node.read_random(0, size)).decode("utf-8", "surrogateescape") if size else ""

    def _content(self, node: Any, size: int) -> BinaryIO:
        def read_at(offset: int, length: int) -> bytes:
            return bytes(node.read_random(offset, length))
        return RandomAccessFile(read_at, size)  # type: ignore[return-value]
