"""A bank in a local (or shared, POSIX) directory.

On-disk layout
--------------
Everything lives under ``<path>/objects``.  A key ``a/b/c`` is stored in the
file ``objects/a/b/c.obj``: one directory per key segment but the last, and a
data file whose name is the last segment plus ``.obj``.  The suffix lets a key
and its "children" coexist (``a`` is ``objects/a.obj``, ``a/b`` is
``objects/a/b.obj``).

A segment is used as a file name as it is unless it is *unsafe*: longer than
200 UTF-8 bytes, starting with ``.`` (reserved for temp files) or ``~``
(reserved for encoded names), ending with ``.obj``, or not encodable as strict
UTF-8.  An unsafe segment is encoded reversibly: its UTF-8 bytes are cut into
pieces of at most 150 bytes, each written as lower-case unpadded base32; every
piece but the last is a directory ``~~<base32>``, the last one is
``~<base32>`` (plus ``.obj`` for a data file).  Listing decodes names back, so
it always returns the original keys.

Data file format
----------------
Metadata is stored *inside* the data file, in a small header, so that a value
and its metadata are replaced by one atomic rename and can never disagree::

    b"SRBANK1\\n" | uint32 big-endian N | N bytes of JSON metadata | value

``head_object`` reads only the header; ``open_object`` returns a buffered file
object over the value part (offsets are relative to the value).
``last_modified`` is the file's mtime in UTC (the bank's clock).  When a
:class:`~strongroom.clock.Clock` is injected, the mtime of each written file is
set from it instead, so that tests can age objects without waiting.

Writes and deletes
------------------
A put writes ``.tmp-<random>`` in the target directory, ``fsync``\\ s it,
``os.replace``\\ s it over the data file and ``fsync``\\ s the directory: a crash
leaves the old value or the new one, plus at worst a stray temp file that
listings ignore.  Delete unlinks the data file and removes parent directories
that became empty; a writer whose directory vanished under it recreates it and
retries.  Several processes may write distinct keys at once.

Deferred puts and the barrier
-----------------------------
``put_object_deferred`` (the data mover's chunks) writes the temp file without
``fsync`` and does not rename it yet: until the next ``barrier()`` the object
exists only for this plugin instance (its reads, heads and deletes find the temp
file), not for listings or other processes.  ``barrier()`` then ``fsync``\\ s
every temp file it covers (several at once, so the journal commits them
together), renames each over its data file, and ``fsync``\\ s every directory
renamed into or created since the last barrier.  So a data file under its final
name always holds durable bytes, as with ``put_object``: a crash before the
barrier loses deferred objects (leaving temp files), never leaves a name over
bytes the disk may not have (a later backup that finds a chunk by name and
skips writing it can trust it).  At most :data:`MAX_DEFERRED` objects wait; the
put that reaches it runs the barrier itself.  ``close()`` removes the temp files
of deferred objects no barrier covered; ``reclaim_temporaries(prefix)`` removes
every temp file under a prefix (what a killed writer left), for a caller that
knows no live writer puts there (the chunk sweep).  A barrier ``fsync``\\ s only what this
instance wrote, not the whole filesystem (``syncfs``), which would also wait
for unrelated dirty data there, such as a loopback snapshot just copied.

Listing walks straight to the prefix's directory, sorts each directory's
entries as their keys would sort (a directory ``d`` sorts like ``d/``), skips
whole subtrees at or below the marker and stops after ``limit`` keys.

Name encoding and the data file format are in :mod:`~strongroom.bank_plugins.fs_format`,
deferred puts, the barrier and the temp file reclaim in :mod:`~strongroom.bank_plugins.fs_deferred`.

The layout assumes a case-sensitive filesystem that does not normalise
Unicode names (ext4, xfs, btrfs, NFS, CephFS; not macOS APFS by default).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import stat
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any, ClassVar

from strongroom import exceptions
from strongroom.bank_plugins.base import LEASE_OPTIONS, ObjectInfo
from strongroom.bank_plugins.fs_deferred import MAX_DEFERRED, SYNC_THREADS, DeferringBank, unlink_quietly
from strongroom.bank_plugins.fs_format import (
    DATA_SUFFIX,
    HEADER_LEN,
    MAGIC,
    MAX_PLAIN_SEGMENT,
    PREFIX_LEN,
    TMP_PREFIX,
    ValueReader,
    encode_segment,
    is_plain,
    unb32,
)
from strongroom.clock import Clock

#: :meth:`FilesystemBank.objects_exist` lists a directory it is asked about this many keys of, or more...
LIST_AT_LEAST = 8
#: ... unless the directory is larger than this many bytes per key asked (a directory's size grows with its
#: entries, some 40-80 bytes each on ext4 and XFS for chunk names): then a stat per key costs less.
LIST_BYTES_PER_ASKED = 1024

__all__ = ["COPY_CHUNK", "MAGIC", "MAX_DEFERRED", "MAX_PLAIN_SEGMENT", "SYNC_THREADS", "FilesystemBank",
           "encode_segment"]

#: Streams are copied in pieces of this size, so memory stays bounded.
COPY_CHUNK = 1024 * 1024
_MKDIR_ATTEMPTS = 50

#: A directory entry as listing sees it: (sort key, is a directory, path relative to the scanned one).
_Entry = tuple[bytes, bool, str]


class FilesystemBank(DeferringBank):
    """Objects as files under ``options["path"]`` (see the module docstring for the layout)."""

    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "minLength": 1},
            **LEASE_OPTIONS,
        },
        "required": ["path"],
        "additionalProperties": False,
    }

    def __init__(self, options: Mapping[str, Any] | None = None, clock: Clock | None = None,
                 *, fsync: bool = True, syscalls: Any = os) -> None:
        """``fsync=False`` skips every ``fsync`` (tests and scratch banks only: a crash
        may then lose recent writes); it is not a provider option on purpose.  ``syscalls``
        provides ``fsync``, ``replace`` and ``mkdir`` (``os``; tests inject one that records their order)."""
        super().__init__(options)
        self._fsync = fsync
        self._os = syscalls
        path = self.options.get("path")
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise exceptions.ConfigError(reason="the fs bank needs option 'path' (a directory)")
        self.path = os.path.abspath(os.fspath(path))
        self._clock = clock
        self._root = os.path.join(self.path, "objects")
        try:
            os.makedirs(self._root, exist_ok=True)
        except OSError as err:
            raise exceptions.ConfigError(
                reason=f"fs bank directory {self._root} cannot be created: {err.strerror}") from err

    def __repr__(self) -> str:
        return f"FilesystemBank(path={self.path!r})"

    # -- paths ------------------------------------------------------------

    def _locate(self, key: str) -> tuple[list[str], str]:
        """The directory names and the data file name that store ``key``."""
        prefix, _, last = key.rpartition("/")
        dirs = _prefix_dirs(prefix)
        names = encode_segment(last, data_file=True)
        dirs.extend(names[:-1])
        return dirs, names[-1]

    def _data_path(self, key: str) -> str:
        dirs, name = self._locate(key)
        return os.path.join(self._root, *dirs, name)

    # -- errors -----------------------------------------------------------

    def _error(self, err: OSError, key: str, action: str) -> exceptions.BankError:
        return exceptions.bank_error_from_os(err, f"cannot {action} {key!r} in {self.path}: {err.strerror or err}")

    # -- writing ----------------------------------------------------------

    def put_object(self, key: str, data: bytes | IO[bytes],
                   metadata: Mapping[str, str] | None = None) -> None:
        directory, tmp, final = self._write_temp(key, data, metadata, deferred=False)
        try:
            with self._lock:
                self._os.replace(tmp, final)
                stale = self._deferred.pop(final, None)  # an older deferred value must not come back
        except BaseException as err:
            unlink_quietly(tmp)
            if isinstance(err, OSError):
                raise self._error(err, key, "write") from err
            raise
        if stale is not None:
            unlink_quietly(stale)
        self._fsync_dir(directory)

    def _write_temp(self, key: str, data: bytes | IO[bytes], metadata: Mapping[str, str] | None,
                    *, deferred: bool) -> tuple[str, str, str]:
        r"""Write ``key``'s new data file as a temp file: (directory, temp path, data file path).

        ``fsync``\ ed unless ``deferred`` (then new directories are left for the barrier too).
        """
        dirs, name = self._locate(key)
        directory = os.path.join(self._root, *dirs)
        header = json.dumps(dict(metadata or {}), sort_keys=True, separators=(",", ":")).encode("utf-8")
        try:
            fd, tmp = self._open_temp(directory, dirs, key, deferred)
        except OSError as err:
            raise self._error(err, key, "write") from err
        try:
            with open(fd, "wb", closefd=True) as out:
                out.write(MAGIC + HEADER_LEN.pack(len(header)) + header)
                if isinstance(data, bytes | bytearray | memoryview):
                    out.write(data)
                else:
                    while piece := data.read(COPY_CHUNK):
                        out.write(piece)
                out.flush()
                if self._fsync and not deferred:
                    self._os.fsync(out.fileno())
            if self._clock is not None:
                stamp = self._clock.now().timestamp()
                os.utime(tmp, (stamp, stamp))
        except BaseException as err:
            unlink_quietly(tmp)
            if isinstance(err, OSError):
                raise self._error(err, key, "write") from err
            raise
        return directory, tmp, os.path.join(directory, name)

    def _open_temp(self, directory: str, dirs: list[str], key: str, deferred: bool) -> tuple[int, str]:
        """Create a temp file in ``directory``, (re)creating the directory if it vanished."""
        for _ in range(_MKDIR_ATTEMPTS):
            tmp = os.path.join(directory, f"{TMP_PREFIX}{uuid.uuid4().hex}")
            try:
                return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644), tmp
            except FileNotFoundError:
                self._make_dirs(dirs, deferred)
        raise exceptions.BankTransientError(
            reason=f"directory for {key!r} in {self.path} keeps vanishing (concurrent deletes)")

    def _make_dirs(self, dirs: list[str], deferred: bool = False) -> None:
        """Create the directory chain, ``fsync``-ing the parent of each new one (or, if
        ``deferred``, leaving that to the next barrier).

        A concurrent delete may remove a parent between two ``mkdir``\\ s: then
        this returns early and the caller, finding no directory, starts over.
        """
        os.makedirs(self._root, exist_ok=True)
        current = self._root
        for name in dirs:
            parent, current = current, os.path.join(current, name)
            try:
                self._os.mkdir(current)
            except FileExistsError:
                continue
            except FileNotFoundError:
                return
            if deferred:
                with self._lock:
                    self._dirty_dirs.add(parent)
            else:
                self._fsync_dir(parent)

    def _fsync_dir(self, directory: str) -> None:
        if not self._fsync:
            return
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return  # removed meanwhile by a delete: nothing left to make durable
        try:
            self._os.fsync(fd)
        except OSError:
            pass  # some filesystems refuse fsync on directories
        finally:
            os.close(fd)

    def delete_object(self, key: str) -> None:
        dirs, name = self._locate(key)
        directory = os.path.join(self._root, *dirs)
        with self._lock:
            pending = self._deferred.pop(os.path.join(directory, name), None)
        if pending is not None:
            unlink_quietly(pending)
        try:
            os.unlink(os.path.join(directory, name))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as err:
            raise self._error(err, key, "delete") from err
        self._fsync_dir(directory)
        for depth in range(len(dirs), 0, -1):
            try:
                os.rmdir(os.path.join(self._root, *dirs[:depth]))
            except OSError:
                break  # not empty (or already gone): parents are not empty either

    # -- reading ----------------------------------------------------------

    def _open_data(self, key: str) -> tuple[int, int, dict[str, str], os.stat_result]:
        """Open ``key``'s data file: (fd, value offset, metadata, stat)."""
        path = self._data_path(key)
        try:
            fd = self._open_file(path)
        except (FileNotFoundError, NotADirectoryError):
            raise exceptions.BankObjectNotFound(key=key) from None
        except OSError as err:
            raise self._error(err, key, "read") from err
        try:
            st = os.fstat(fd)
            prefix = os.pread(fd, PREFIX_LEN, 0)
            if len(prefix) != PREFIX_LEN or not prefix.startswith(MAGIC):
                raise exceptions.BankObjectCorrupt(key=key, reason=f"no valid header (in {self.path})")
            (length,) = HEADER_LEN.unpack_from(prefix, len(MAGIC))
            raw = os.pread(fd, length, PREFIX_LEN)
            try:
                metadata = json.loads(raw)
            except ValueError as err:
                raise exceptions.BankObjectCorrupt(
                    key=key, reason=f"its metadata is not JSON (in {self.path}): {err}") from err
            if len(raw) != length or not isinstance(metadata, dict):
                raise exceptions.BankObjectCorrupt(key=key, reason=f"its metadata is cut short (in {self.path})")
        except BaseException as err:
            os.close(fd)
            if isinstance(err, OSError):
                raise self._error(err, key, "read") from err
            raise
        return fd, PREFIX_LEN + length, metadata, st

    def _open_file(self, path: str) -> int:
        """Open the data file at ``path``, or the temp file of a deferred put not yet published."""
        with self._lock:
            pending = self._deferred.get(path)
        if pending is not None:
            try:
                return os.open(pending, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                pass  # published (or deleted) meanwhile
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def get_object(self, key: str) -> bytes:
        with self.open_object(key) as stream:
            return stream.read()

    def open_object(self, key: str) -> IO[bytes]:
        fd, start, _metadata, st = self._open_data(key)
        return io.BufferedReader(ValueReader(fd, start, st.st_size - start), buffer_size=COPY_CHUNK)

    def object_exists(self, key: str) -> bool:
        """One ``stat`` (the data file, or a deferred put's temp file), not the header's read: a protect asks
        this of every chunk an incremental reuses."""
        path = self._data_path(key)
        with self._lock:
            candidates = [p for p in (self._deferred.get(path), path) if p is not None]
        for candidate in candidates:
            try:
                if stat.S_ISREG(os.stat(candidate).st_mode):
                    return True
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as err:
                raise self._error(err, key, "read") from err
        return False

    def objects_exist(self, keys: Sequence[str]) -> list[bool]:
        """Keys grouped by directory: a directory asked about many of its files is listed once (one
        ``scandir``, the regular files' names in a set), the others ``stat``\\ ed key by key.  An incremental
        asks about every chunk it reuses, thousands in a few hundred chunk directories: a listing each is
        several times cheaper than a path built and a ``stat`` made per key (threads contending for the
        interpreter were slower still)."""
        by_dir: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            by_dir.setdefault(key.rpartition("/")[0], []).append(i)
        found = [False] * len(keys)
        for prefix, indices in by_dir.items():
            directory = os.path.join(self._root, *_prefix_dirs(prefix))
            names = self._listed_names(directory, len(indices)) if len(indices) >= LIST_AT_LEAST else None
            for i in indices:
                name = _data_name(keys[i])
                if names is None or not name:  # key by key, or stored deeper than the listed directory
                    found[i] = self.object_exists(keys[i])
                    continue
                with self._lock:
                    tmp = self._deferred.get(os.path.join(directory, name))
                found[i] = name in names or (tmp is not None and os.path.basename(tmp) in names)
        return found

    @staticmethod
    def _listed_names(directory: str, asked: int) -> set[str] | None:
        """The names of the regular files in ``directory``, or None where listing it would cost more than
        ``asked`` stats (a directory of many more entries: its size says so) or it cannot be listed."""
        try:
            if os.stat(directory).st_size > asked * LIST_BYTES_PER_ASKED:
                return None
            with os.scandir(directory) as entries:
                return {entry.name for entry in entries if entry.is_file()}
        except (FileNotFoundError, NotADirectoryError):
            return set()
        except OSError:
            return None  # key by key, where each error is told

    def head_object(self, key: str) -> ObjectInfo:
        fd, start, metadata, st = self._open_data(key)
        os.close(fd)
        modified = _dt.datetime.fromtimestamp(st.st_mtime, _dt.UTC)
        return ObjectInfo(key=key, size=st.st_size - start, metadata=metadata, last_modified=modified)

    # -- listing ----------------------------------------------------------

    def list_objects(self, prefix: str = "", marker: str | None = None,
                     limit: int | None = None) -> list[str]:
        if limit is not None and limit <= 0:
            return []
        *dir_segments, partial = prefix.split("/")
        dirs: list[str] = []
        for segment in dir_segments:
            dirs.extend(encode_segment(segment, data_file=False))
        base = "".join(segment + "/" for segment in dir_segments).encode("utf-8", "surrogatepass")
        bmarker = marker.encode("utf-8", "surrogatepass") if marker is not None else None
        walk = self._walk(os.path.join(self._root, *dirs), base,
                          partial.encode("utf-8", "surrogatepass"), bmarker)
        out: list[str] = []
        for key in walk:
            out.append(key.decode("utf-8", "surrogatepass"))
            if limit is not None and len(out) >= limit:
                break
        return out

    def _walk(self, directory: str, base: bytes, partial: bytes, marker: bytes | None) -> Iterator[bytes]:
        """Keys below ``directory`` (all of which start with ``base``) in byte order, > ``marker``."""
        if marker is not None and not marker.startswith(base):
            if marker > base:
                return  # every key in here sorts before the marker
            marker = None
        rest = marker[len(base):] if marker is not None else None
        entries = []
        for entry in self._scan(directory):
            key, is_dir, _ = entry
            if partial and not key.startswith(partial):
                continue
            # At or before the marker, unless it is the directory the marker lies in.
            if rest is not None and key <= rest and not (is_dir and rest.startswith(key)):
                continue
            entries.append(entry)
        entries.sort()
        for key, is_dir, relpath in entries:
            full = base + key
            if is_dir:
                yield from self._walk(os.path.join(directory, relpath), full, b"", marker)
            else:
                yield full

    def _scan(self, directory: str, continuation: bool = False) -> list[_Entry]:
        """Decode one directory's names into (sort key, is_dir, relative path) entries.

        The sort key is the segment's UTF-8 bytes, plus ``/`` for a directory;
        ``~~`` pieces of long segments are expanded into the segments they hold.
        """
        try:
            names = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return []  # gone (concurrent delete) or not ours
        entries: list[_Entry] = []
        for name in names:
            if name.startswith("."):
                continue  # temp files
            is_dir = not name.endswith(DATA_SUFFIX)
            body = name if is_dir else name[:-len(DATA_SUFFIX)]
            if body.startswith("~~"):
                piece = unb32(body[2:])
                if is_dir and piece is not None:
                    inner = self._scan(os.path.join(directory, name), continuation=True)
                    entries.extend((piece + key, sub_is_dir, os.path.join(name, relpath))
                                   for key, sub_is_dir, relpath in inner)
                continue
            if body.startswith("~"):
                raw = unb32(body[1:])
                if raw is None:
                    continue
            elif continuation or not is_plain(body):
                continue  # not a name we write
            else:
                raw = body.encode("utf-8")
            entries.append((raw + b"/" if is_dir else raw, is_dir, name))
        return entries


def _prefix_dirs(prefix: str) -> list[str]:
    """The directory names under ``objects/`` of the key prefix ``prefix`` (a key's segments but its last)."""
    dirs: list[str] = []
    for segment in prefix.split("/") if prefix else ():
        dirs.extend(encode_segment(segment, data_file=False))
    return dirs


def _data_name(key: str) -> str:
    """The data file's name of ``key`` in its prefix's directory, or "" where the name's encoding nests
    directories of its own."""
    names = encode_segment(key.rpartition("/")[2], data_file=True)
    return names[0] if len(names) == 1 else ""
