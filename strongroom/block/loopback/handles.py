"""The loopback backend's open readers and writers: one descriptor each, kept for the handle's life."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

import fasteners

from strongroom import exceptions
from strongroom.block.base import BlockReader, BlockWriter, Extent, check_range
from strongroom.block.loopback.extents import (
    data_extents,
    pread_exact,
    pwrite_all,
    pwritev_all,
    start_writeback,
)


class VolumeLock:
    """One volume's lock: writes share it, what must see no write in flight (a snapshot's copy, publishing,
    discarding, growing or destroying the volume) holds it alone.

    Writers of one volume write disjoint ranges (a restore's workers) or race as any two writers of a disk
    do, so they need not wait for each other: serialised, a restore's workers spent more time waiting for
    this lock than writing.  fasteners' reader-writer lock (taskflow's and oslo.concurrency's): its "readers"
    are the writers here.
    """

    def __init__(self) -> None:
        self._lock = fasteners.ReaderWriterLock()

    def shared(self) -> contextlib.AbstractContextManager[object]:
        """Held by each write."""
        return self._lock.read_lock()

    def exclusive(self) -> contextlib.AbstractContextManager[object]:
        """Held while nothing may write."""
        return self._lock.write_lock()


class LoopbackReader(BlockReader):
    """``pread`` on a descriptor kept open for the reader's life."""

    def __init__(self, path: str, what: str) -> None:
        self._fd: int | None = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.size = os.fstat(self._fd).st_size
        self._what = what

    def _check_open(self) -> int:
        if self._fd is None:
            raise exceptions.BlockError(reason=f"reader of {self._what} is closed")
        return self._fd

    def allocated_extents(self) -> Iterator[Extent]:
        fd = self._check_open()
        return iter(list(data_extents(fd, self.size)))

    def read(self, offset: int, length: int) -> bytes:
        fd = self._check_open()
        if offset < 0 or length < 0:
            raise exceptions.InvalidInput(
                reason=f"read of {self._what}: offset {offset} and length {length} must not be negative"
            )
        length = max(min(length, self.size - offset), 0)
        data = pread_exact(fd, offset, length)
        if len(data) < length:  # the file shrank under us; what is missing reads as zeros
            data += bytes(length - len(data))
        return data

    def prefetch(self, offset: int, length: int) -> None:
        """``POSIX_FADV_WILLNEED``: the kernel starts reading the range into the page cache.  (Its own
        readahead follows one reader's sequential reads; the data mover's workers read slots side by side,
        and an incremental's slots are far apart.)"""
        fd = self._fd
        if fd is None or length <= 0:
            return
        try:
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass  # a hint only

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            self.close()


class LoopbackWriter(BlockWriter):
    """``pwrite`` within the file's size; ``flush`` is ``fsync``.  Writes from several threads are safe and
    run side by side: each is one ``pwrite``/``pwritev`` holding the volume's lock shared, which a
    snapshot's copy holds alone."""

    parallel_writes = True

    def __init__(self, path: str, volume_id: str, lock: VolumeLock) -> None:
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        self.size = os.fstat(self._fd).st_size
        self._volume_id = volume_id
        self._lock = lock

    def _check_open(self) -> int:
        if self._fd is None:
            raise exceptions.BlockError(reason=f"writer of volume {self._volume_id} is closed")
        return self._fd

    def write(self, offset: int, data: bytes) -> None:
        fd = self._check_open()
        check_range(self.size, offset, len(data), f"volume {self._volume_id}")
        with self._lock.shared():
            pwrite_all(fd, data, offset)

    def write_pieces(self, offset: int, pieces: Sequence[bytes | memoryview]) -> None:
        fd = self._check_open()
        length = sum(len(piece) for piece in pieces)
        check_range(self.size, offset, length, f"volume {self._volume_id}")
        with self._lock.shared():
            pwritev_all(fd, pieces, offset)
        start_writeback(fd, offset, length)

    def flush(self) -> None:
        os.fsync(self._check_open())

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:  # dropped without close(): release the descriptor, skip the fsync
            os.close(fd)
            self._fd = None
