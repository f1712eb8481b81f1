"""The files of a backed-up volume: pick a partition, open its filesystem, list, stat and read.

Readable here: ext2, ext3 and ext4, through the ``ext4`` package (MIT, pure
Python, reads from any seekable file object: here a page cache over the
:class:`~strongroom.datamover.reader.BlockReader`, :mod:`strongroom.files.ext4io`, which also parses
directories and inodes' ``ls -l`` fields once each rather than through the package); FAT and NTFS
through The Sleuth Kit's ``pytsk3`` (:mod:`strongroom.files.tsk`), XFS through
libyal's ``pyfsxfs`` (:mod:`strongroom.files.xfs`), over the reader's buffered
stream.  Other filesystems are recognised by their signature and refused with
what was found (``doc/file-restore.md`` says which libraries and why: the
dissect family, which reads more, is AGPL).

Paths are absolute POSIX paths inside the chosen filesystem.  Errors are the
project's: ``NotFound`` (kind ``File``) for a missing path, ``InvalidInput``
for a path that is not what the call needs (a file listed as a directory) and
for a volume or partition with nothing readable, ``DataIntegrityError`` for a
filesystem whose structures do not parse.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import errno
import io
import posixpath
import stat as _stat
from collections.abc import Iterator
from typing import Any, BinaryIO

from strongroom import exceptions
from strongroom.datamover.reader import BlockReader
from strongroom.files import ext4io, partitions

READABLE = ("ext2", "ext3", "ext4", "fat", "ntfs", "xfs")
#: Symbolic links followed while resolving one path, at most (as Linux's MAXSYMLINKS).
MAX_SYMLINKS = 40
#: Directories whose entries a tree keeps parsed.
DIRECTORIES_KEPT = 1024
#: Read-ahead of the buffered stream the filesystem library reads through.
BUFFER = 256 * 1024


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """What ``ls -l`` shows of one entry."""

    path: str
    name: str
    type: str  # file, directory, symlink, fifo, socket, char-device, block-device
    size: int
    mode: int  # permission bits and set-id/sticky bits (no type bits)
    uid: int
    gid: int
    mtime: _dt.datetime
    target: str | None = None  # a symlink's target

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mode"] = f"{self.mode:04o}"
        data["mtime"] = self.mtime.isoformat()
        if self.target is None:
            data.pop("target")
        return data


@dataclasses.dataclass(frozen=True)
class Located:
    """Where the filesystem was found on the volume."""

    table: str  # gpt, mbr, none
    partition: int | None
    offset: int
    filesystem: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def normalize(path: str) -> str:
    """An absolute, normalised POSIX path; ``InvalidInput`` for anything else."""
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise exceptions.InvalidInput(reason=f"path: {path!r} is not an absolute path")
    return posixpath.normpath(path).replace("//", "/")


def describe(reader: BlockReader) -> dict[str, Any]:
    """The volume's partition table and what each partition (or the whole volume) holds."""
    f = _stream(reader)
    table = partitions.read_table(f, reader.size)
    found = ([{**p.to_dict(), "filesystem": partitions.probe(f, p.offset)} for p in table.partitions]
             if table.partitions else [])
    whole = partitions.probe(f, 0) if table.kind == "none" else None
    return {"size": reader.size, "table": table.kind, "partitions": found,
            **({"filesystem": whole} if table.kind == "none" else {})}


def open_tree(reader: BlockReader, partition: int | None = None) -> Tree:
    """The filesystem of ``partition`` (a number as the kernel gives it), or, without one, of the whole
    volume when it has no table, else of the largest partition holding a readable filesystem.

    ``InvalidInput`` names what was found when nothing chosen is readable.
    """
    f = _stream(reader)
    table = partitions.read_table(f, reader.size)
    if table.kind == "none":
        if partition not in (None, 0):
            raise exceptions.InvalidInput(reason=f"partition {partition}: the volume has no partition table")
        return _tree(reader, Located("none", None, 0, _readable(f, 0, "the volume")))
    if partition is not None:
        chosen = next((p for p in table.partitions if p.number == partition), None)
        if chosen is None:
            numbers = ", ".join(str(p.number) for p in table.partitions) or "none"
            raise exceptions.InvalidInput(
                reason=f"partition {partition}: no such partition in the {table.kind.upper()} table "
                       f"(partitions: {numbers})")
        name = f"partition {chosen.number}"
        return _tree(reader, Located(table.kind, chosen.number, chosen.offset, _readable(f, chosen.offset, name)))
    kinds = {p.number: partitions.probe(f, p.offset) for p in table.partitions}
    readable = sorted((p for p in table.partitions if kinds[p.number] in READABLE), key=lambda p: -p.size)
    if not readable:
        seen = "; ".join(f"partition {p.number}: {_what(kinds[p.number])}" for p in table.partitions)
        raise exceptions.InvalidInput(
            reason=f"no readable filesystem on the volume's {table.kind.upper()} table ({seen or 'no partitions'}); "
                   f"readable here: {', '.join(READABLE)}")
    best = readable[0]
    return _tree(reader, Located(table.kind, best.number, best.offset, str(kinds[best.number])))


def _tree(reader: BlockReader, located: Located) -> Tree:
    """The tree of the library that reads ``located.filesystem``."""
    if located.filesystem in ("fat", "ntfs"):
        from strongroom.files.tsk import TskTree

        return TskTree(reader, located)
    if located.filesystem == "xfs":
        from strongroom.files.xfs import XfsTree

        return XfsTree(reader, located)
    return Tree(reader, located)


def _what(kind: str | None) -> str:
    return f"{kind.upper() if kind in ('xfs', 'ntfs', 'luks', 'lvm2') else kind} superblock" if kind else \
        "no filesystem signature"


def _readable(f: BinaryIO, offset: int, name: str) -> str:
    kind = partitions.probe(f, offset)
    if kind not in READABLE:
        raise exceptions.InvalidInput(
            reason=f"{name}: {_what(kind)}, not readable here (readable: {', '.join(READABLE)})")
    return kind


def _stream(reader: BlockReader) -> io.BufferedReader:
    return io.BufferedReader(reader.file(), buffer_size=BUFFER)


_TYPES = ((_stat.S_ISDIR, "directory"), (_stat.S_ISREG, "file"), (_stat.S_ISLNK, "symlink"),
          (_stat.S_ISFIFO, "fifo"), (_stat.S_ISSOCK, "socket"), (_stat.S_ISCHR, "char-device"),
          (_stat.S_ISBLK, "block-device"))


class Tree:
    """One filesystem of a backed-up volume.  Not thread-safe (one stream position): one per request."""

    def __init__(self, reader: BlockReader, located: Located) -> None:
        import ext4  # imported when a tree is opened, never at import time

        self._ext4 = ext4
        self.reader = reader
        self.located = located
        self._stream: ext4io.PageCache | io.BufferedReader = ext4io.PageCache(reader)
        self._names: dict[int, dict[bytes, int]] = {}
        try:
            self._volume = ext4.Volume(self._stream, offset=located.offset)
        except (ext4.struct.MagicError, ext4.struct.ChecksumError, ValueError) as err:  # type: ignore[attr-defined]
            raise exceptions.DataIntegrityError(
                what=f"the {located.filesystem} filesystem at offset {located.offset}", reason=str(err)) from err

    # -- resolution ----------------------------------------------------------

    def _inode_at(self, path: str, follow: bool) -> tuple[str, Any]:
        """``(resolved path, inode)``: intermediate symlinks always followed, the last one if ``follow``."""
        path = normalize(path)
        parts = [p for p in path.split("/") if p]
        hops = 0
        current = "/"
        inode = self._root()
        while parts:
            name = parts.pop(0)
            if self._type(inode) != "directory":
                raise exceptions.InvalidInput(reason=f"path: {current} is not a directory")
            child = self._child(inode, name)
            if child is None:
                raise exceptions.NotFound(kind="File", id=posixpath.join(current, name))
            if self._type(child) == "symlink" and (parts or follow):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise exceptions.InvalidInput(reason=f"path: {path}: too many levels of symbolic links")
                target = self._target(child)
                base = "/" if target.startswith("/") else current
                parts = [p for p in normalize(posixpath.join(base, target)).split("/") if p] + parts
                current, inode = "/", self._root()
                continue
            current = posixpath.join(current, name)
            inode = child
        return current, inode

    def _root(self) -> Any:
        return self._volume.root

    def _type(self, inode: Any) -> str:
        """What :meth:`_inode_at` needs to know of an inode: ``directory``, ``symlink``, ``file`` or ``other``."""
        if isinstance(inode, self._ext4.Directory):
            return "directory"
        if isinstance(inode, self._ext4.SymbolicLink):
            return "symlink"
        return "file" if isinstance(inode, self._ext4.File) else "other"

    def _child(self, directory: Any, name: str) -> Any:
        """The inode ``name`` names in ``directory``; each directory is parsed once per tree (a walk or a
        restore of a large directory would otherwise re-read it for every entry)."""
        names = self._names.get(directory.i_no)
        if names is None:
            if len(self._names) >= DIRECTORIES_KEPT:
                self._names.clear()
            names = dict(ext4io.entries(directory))
            self._names[directory.i_no] = names
        number = names.get(name.encode("utf-8", "surrogateescape"))
        return None if number is None else self._volume.inodes[number]

    def _target(self, inode: Any) -> str:
        return bytes(inode.readlink()).decode("utf-8", "surrogateescape")

    def _info(self, path: str, name: str, number: int, inode: Any = None) -> FileInfo:
        """The entry of inode ``number`` (``inode``: the package's parsed one, if the caller has it)."""
        st = ext4io.inode_stat(self._volume, number)
        kind = next((label for test, label in _TYPES if test(st.mode)), "unknown")
        mtime = _dt.datetime.fromtimestamp(st.mtime, _dt.UTC)
        target = self._target(self._volume.inodes[number] if inode is None else inode) if kind == "symlink" \
            else None
        return FileInfo(path=path, name=name, type=kind, size=st.size, mode=_stat.S_IMODE(st.mode), uid=st.uid,
                        gid=st.gid, mtime=mtime, target=target)

    # -- the calls -------------------------------------------------------------

    def stat(self, path: str, *, follow: bool = False) -> FileInfo:
        """The entry at ``path`` (a symlink itself unless ``follow``)."""
        resolved, inode = self._guard(lambda: self._inode_at(path, follow))
        shown = normalize(path)
        shown, name = (shown, posixpath.basename(shown) or "/") if not follow else \
            (resolved, posixpath.basename(resolved) or "/")
        return self._guard(lambda: self._stat_info(shown, name, inode))

    def _stat_info(self, path: str, name: str, inode: Any) -> FileInfo:
        """The entry of a resolved inode, as :meth:`stat` shows it (each reader's own)."""
        return self._info(path, name, inode.i_no, inode)

    def list(self, path: str) -> list[FileInfo]:
        """The entries of directory ``path`` (symlinks followed to get there), sorted by name."""
        resolved, inode = self._guard(lambda: self._inode_at(path, True))
        if not isinstance(inode, self._ext4.Directory):
            raise exceptions.InvalidInput(reason=f"path: {normalize(path)} is not a directory")
        shown = normalize(path)

        def entries() -> list[FileInfo]:
            out = []
            for raw, number in ext4io.entries(inode):
                if raw in (b".", b".."):
                    continue
                name = raw.decode("utf-8", "surrogateescape")
                out.append(self._info(posixpath.join(shown, name), name, number))
            return sorted(out, key=lambda i: i.name)
        return self._guard(entries)

    def open(self, path: str) -> tuple[FileInfo, BinaryIO]:
        """A regular file's info and a stream of its bytes (symlinks followed)."""
        resolved, inode = self._guard(lambda: self._inode_at(path, True))
        if not isinstance(inode, self._ext4.File):
            raise exceptions.InvalidInput(reason=f"path: {normalize(path)} is not a regular file")
        info = self._guard(lambda: self._info(resolved, posixpath.basename(resolved), inode.i_no, inode))
        return info, self._guard(lambda: inode.open())

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes of a regular file."""
        info, stream = self.open(path)
        stream.seek(offset)
        return self._guard(lambda: stream.read(info.size - offset if length is None else length))

    def walk(self, path: str) -> Iterator[FileInfo]:
        """``path`` and, for a directory, everything under it, depth first (symlinks not followed)."""
        top = self.stat(path)
        yield top
        if top.type != "directory":
            return
        stack = [top.path]
        while stack:
            directory = stack.pop()
            for entry in self.list(directory):
                yield entry
                if entry.type == "directory":
                    stack.append(entry.path)

    def _guard(self, call: Any) -> Any:
        """Run ``call``, turning the library's errors into the project's."""
        try:
            return call()
        except exceptions.StrongroomError:
            raise
        except FileNotFoundError as err:
            raise exceptions.NotFound(kind="File", id=str(err.args[0]) if err.args else "?") from None
        except OSError as err:
            if err.errno == errno.ENOTDIR:
                raise exceptions.InvalidInput(reason="path: not a directory") from None
            raise exceptions.DataIntegrityError(what=f"the {self.located.filesystem} filesystem",
                                                reason=str(err)) from err
        except Exception as err:  # noqa: BLE001 - a structure the library cannot parse is a damaged filesystem
            raise exceptions.DataIntegrityError(what=f"the {self.located.filesystem} filesystem",
                                                reason=f"{type(err).__name__}: {err}") from err
