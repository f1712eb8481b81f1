"""The filesystem bank's deferred puts, their barrier, and the reclaim of a killed writer's temp files.

A deferred put (the data mover's chunks) is a temp file in the chunk's directory, written without
``fsync`` and known only to the plugin instance that wrote it, until a barrier ``fsync``\\ s it and
renames it into place (:mod:`strongroom.bank_plugins.fs`, "Deferred puts and the barrier").  A writer
killed before its barrier leaves its temp files behind; :meth:`DeferringBank.reclaim_temporaries`
removes them once the caller knows that no live writer may own any under the prefix (the chunk sweep).
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import os
import threading
from collections.abc import Mapping
from typing import IO, Any

from strongroom import exceptions
from strongroom.bank_plugins.base import BankPlugin
from strongroom.bank_plugins.fs_format import TMP_PREFIX, encode_segment

#: Deferred puts waiting for a barrier, at most; the put that reaches it runs the barrier.
MAX_DEFERRED = 1024
#: Files a barrier ``fsync``\ s at once (so that the filesystem's journal commits them together).
SYNC_THREADS = 8


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class DeferringBank(BankPlugin):
    """Deferred puts and the barrier of :class:`~strongroom.bank_plugins.fs.FilesystemBank`."""

    path: str
    _root: str
    _fsync: bool
    _os: Any

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self._lock = threading.Lock()
        self._barrier_lock = threading.Lock()
        #: Deferred puts not yet published: data file path -> its temp file.
        self._deferred: dict[str, str] = {}
        #: Directories whose entries the next barrier makes durable (created by deferred puts).
        self._dirty_dirs: set[str] = set()

    @abc.abstractmethod
    def _write_temp(self, key: str, data: bytes | IO[bytes], metadata: Mapping[str, str] | None,
                    *, deferred: bool) -> tuple[str, str, str]:
        """Write ``key``'s new data file as a temp file: (directory, temp path, data file path)."""

    @abc.abstractmethod
    def _fsync_dir(self, directory: str) -> None:
        """``fsync`` a directory, if it still exists and the bank ``fsync``\\ s at all."""

    def put_object_deferred(self, key: str, data: bytes, metadata: Mapping[str, str] | None = None) -> None:
        if not self._fsync:
            self.put_object(key, data, metadata)  # nothing to batch
            return
        _directory, tmp, final = self._write_temp(key, data, metadata, deferred=True)
        with self._lock:
            stale = self._deferred.get(final)
            self._deferred[final] = tmp
            waiting = len(self._deferred)
        if stale is not None:
            unlink_quietly(stale)
        if waiting >= MAX_DEFERRED:
            self.barrier()

    def barrier(self) -> None:
        with self._barrier_lock:
            with self._lock:
                batch = dict(self._deferred)
                dirs, self._dirty_dirs = self._dirty_dirs, set()
            if not batch and not dirs:
                return
            try:
                self._sync_all(list(batch.values()), self._fsync_pending)
            except OSError as err:
                with self._lock:
                    for final, tmp in batch.items():
                        if self._deferred.get(final) == tmp:
                            del self._deferred[final]
                for tmp in batch.values():
                    unlink_quietly(tmp)
                raise exceptions.bank_error_from_os(
                    err, f"cannot make recent writes durable in {self.path}: {err.strerror or err}") from err
            for final, tmp in batch.items():
                with self._lock:
                    if self._deferred.get(final) != tmp:
                        continue  # replaced or deleted meanwhile
                    try:
                        self._os.replace(tmp, final)
                    except OSError as err:
                        raise exceptions.bank_error_from_os(
                            err, f"cannot publish {final} in {self.path}: {err.strerror or err}") from err
                    del self._deferred[final]
                dirs.add(os.path.dirname(final))
            self._sync_all(sorted(dirs), self._fsync_dir)

    def _sync_all(self, paths: list[str], sync: Any) -> None:
        """``sync(path)`` for each path, :data:`SYNC_THREADS` at a time; the first error is raised."""
        if len(paths) <= 1:
            for path in paths:
                sync(path)
            return
        with cf.ThreadPoolExecutor(min(SYNC_THREADS, len(paths)), thread_name_prefix="fs-bank-sync") as pool:
            for _ in pool.map(sync, paths):
                pass

    def _fsync_pending(self, tmp: str) -> None:
        """``fsync`` a deferred put's temp file, unless a newer put of the same key replaced it (or a reclaim
        dropped it) since the barrier took its batch: its temp file is gone, and the newer one is the next
        barrier's.  (Two writers of one checkpoint may store the same new chunk at once.)"""
        try:
            self._fsync_file(tmp)
        except FileNotFoundError:
            with self._lock:
                if tmp in self._deferred.values():
                    raise

    def _fsync_file(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Remove the temp files of deferred puts that no barrier made durable."""
        with self._lock:
            pending, self._deferred = list(self._deferred.values()), {}
        for tmp in pending:
            unlink_quietly(tmp)

    def reclaim_temporaries(self, prefix: str, dry_run: bool = False) -> list[str]:
        """Remove every temp file in the directories of keys under ``prefix`` (``""`` or ending in ``/``).

        Deferred puts of this instance there are dropped too (a failed backup's chunks), and directories
        left empty are removed.  Returns the temp files' paths relative to the bank's directory.
        """
        dirs: list[str] = []
        for segment in prefix.split("/")[:-1]:
            dirs.extend(encode_segment(segment, data_file=False))
        top = os.path.join(self._root, *dirs)
        found: list[str] = []
        removed: set[str] = set()  # directories removed once their temp files went
        for directory, subdirs, names in os.walk(top, topdown=False):
            temps = sorted(os.path.join(directory, name) for name in names if name.startswith(TMP_PREFIX))
            found.extend(os.path.relpath(tmp, self.path) for tmp in temps)
            if dry_run or not (temps or removed.intersection(os.path.join(directory, d) for d in subdirs)):
                continue
            with self._lock:
                for final in [final for final, tmp in self._deferred.items() if tmp in temps]:
                    del self._deferred[final]
            for tmp in temps:
                unlink_quietly(tmp)
            if directory != top:
                try:
                    os.rmdir(directory)
                except OSError:
                    continue  # not empty: it holds objects too
                removed.add(directory)
        return sorted(found)
