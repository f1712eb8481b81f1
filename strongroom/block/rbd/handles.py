"""Readers and writers over RBD images: one librbd image handle each, kept for the handle's life.

:class:`RbdReader` reads an image at a snapshot (or the live image).  Its allocated extents come from
librbd's diff from the beginning of the image (``diff_iterate(0, size, None, ...)``): with the
``fast-diff`` feature that is the object map, exact to the object for a snapshot, without reading data;
without it librbd asks the OSDs which objects exist.  Either way unwritten space is never read.

Reads are parallel but bounded: the data mover calls :meth:`RbdReader.read` from several threads, and a
large read is split at object boundaries; at most ``workers`` librbd reads of one reader are in flight.
Anything that opens an image by name (another backend reading a Cinder volume's image) can use them,
and :func:`changed_extents` (librbd's diff between two snapshots of one image), which both backends'
changed-block tracking is.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from strongroom import exceptions
from strongroom.block.base import BlockReader, BlockWriter, Extent, check_range, merge_extents
from strongroom.block.rbd.connection import RbdConnection, librbd

#: Reads longer than this are split into pieces read in parallel.
PIECE = 4 << 20


def open_image(connection: RbdConnection, image: str, snapshot: str | None, read_only: bool,
               not_found: exceptions.StrongroomError) -> Any:
    """A librbd image handle, or ``not_found`` (also for a snapshot that is gone)."""
    rbd = librbd()
    doing = f"opening image {image}" + (f" at snapshot {snapshot}" if snapshot else "")
    with connection.errors(doing, not_found=lambda: not_found):
        return rbd.Image(connection.ioctx(), image, snapshot=snapshot, read_only=read_only)


class RbdReader(BlockReader):
    """An image (at ``snapshot``, if given) read through librbd."""

    def __init__(self, connection: RbdConnection, image: str, snapshot: str | None, what: str,
                 not_found: exceptions.StrongroomError, workers: int = 4) -> None:
        self._connection = connection
        self._what = what
        self._image: Any = open_image(connection, image, snapshot, True, not_found)
        self.size = _size(connection, self._image, what)
        self._slots = threading.BoundedSemaphore(workers)
        self._workers = workers
        self._pool: cf.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _check_open(self) -> Any:
        image = self._image
        if image is None:
            raise exceptions.BlockError(reason=f"reader of {self._what} is closed")
        return image

    def allocated_extents(self) -> Iterator[Extent]:
        image = self._check_open()
        found: list[Extent] = []

        def seen(offset: int, length: int, exists: bool) -> None:
            if not exists or length <= 0:
                return
            if found and found[-1].end >= offset:
                last = found.pop()
                found.append(Extent(last.offset, max(last.end, offset + length) - last.offset))
            else:
                found.append(Extent(offset, length))

        with self._connection.errors(f"listing the allocated extents of {self._what}"):
            # With the parent's data: a clone (a volume made from an image) reads through to its parent.
            image.diff_iterate(0, self.size, None, seen, include_parent=True)
        found.sort()
        return iter(found)

    def read(self, offset: int, length: int) -> bytes:
        image = self._check_open()
        if offset < 0 or length < 0:
            raise exceptions.InvalidInput(
                reason=f"read of {self._what}: offset {offset} and length {length} must not be negative")
        length = max(min(length, self.size - offset), 0)
        if length <= PIECE:
            return self._read_piece(image, offset, length)
        pieces = [(start, min(PIECE - start % PIECE, offset + length - start))
                  for start in _piece_starts(offset, length)]
        futures = [self._executor().submit(self._read_piece, image, start, size) for start, size in pieces]
        return b"".join(future.result() for future in futures)

    def _read_piece(self, image: Any, offset: int, length: int) -> bytes:
        if length == 0:
            return b""
        with self._slots, self._connection.errors(f"reading {self._what} at offset {offset}"):
            data = bytes(image.read(offset, length))
        if len(data) < length:  # librbd returns what the image holds; the rest reads as zeros
            data += bytes(length - len(data))
        return data

    def _executor(self) -> cf.ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = cf.ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="rbd-read")
            return self._pool

    def close(self) -> None:
        image, self._image = self._image, None
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if image is not None:
            with self._connection.errors(f"closing {self._what}"):
                image.close()


def _size(connection: RbdConnection, image: Any, what: str) -> int:
    """The image's size; the handle is closed if even that fails."""
    try:
        with connection.errors(f"sizing {what}"):
            return int(image.size())
    except BaseException:
        with contextlib.suppress(Exception):
            image.close()
        raise


def _piece_starts(offset: int, length: int) -> Iterator[int]:
    start = offset
    while start < offset + length:
        yield start
        start += PIECE - start % PIECE


class RbdWriter(BlockWriter):
    """Writes into an image through librbd; ``flush`` is librbd's flush (acknowledged by the OSDs).  librbd's
    image handle takes writes from several threads at once, so the data mover keeps one in flight per worker
    (each a whole 4 MiB object when it gathers neighbouring chunks) instead of waiting for each in turn."""

    parallel_writes = True

    def __init__(self, connection: RbdConnection, image: str, what: str,
                 not_found: exceptions.StrongroomError) -> None:
        self._connection = connection
        self._what = what
        self._image: Any = open_image(connection, image, None, False, not_found)
        self.size = _size(connection, self._image, what)

    def _check_open(self) -> Any:
        image = self._image
        if image is None:
            raise exceptions.BlockError(reason=f"writer of {self._what} is closed")
        return image

    def write(self, offset: int, data: bytes) -> None:
        image = self._check_open()
        check_range(self.size, offset, len(data), self._what)
        if not data:
            return
        with self._connection.errors(f"writing {self._what} at offset {offset}"):
            image.write(data if isinstance(data, bytes) else bytes(data), offset)

    def flush(self) -> None:
        image = self._check_open()
        with self._connection.errors(f"flushing {self._what}"):
            image.flush()

    def resize(self, size: int) -> None:
        """Grow the image to ``size`` bytes (librbd's ``resize``, never shrinking; the new bytes read as
        zeros, snapshots keep their size)."""
        image = self._check_open()
        with self._connection.errors(f"resizing {self._what} to {size} bytes"):
            image.resize(size, allow_shrink=False)
            self.size = int(image.size())

    def write_zeros(self, offset: int, length: int) -> None:
        """librbd's ``write_zeroes``: whole objects are deallocated, partial ones zeroed (a discard may skip
        those: ``rbd_skip_partial_discard``)."""
        image = self._check_open()
        check_range(self.size, offset, length, self._what)
        if length:
            with self._connection.errors(f"writing zeros to {self._what} at offset {offset}"):
                image.write_zeroes(offset, length)

    def close(self) -> None:
        image, self._image = self._image, None
        if image is None:
            return
        try:
            with self._connection.errors(f"flushing {self._what}"):
                image.flush()
        finally:
            with self._connection.errors(f"closing {self._what}"):
                image.close()


def open_overwriter(connection: RbdConnection, image: str, what: str, not_found: exceptions.StrongroomError,
                    in_use: exceptions.StrongroomError) -> RbdWriter:
    """An :class:`RbdWriter` of ``image`` for a restore that overwrites it, or ``in_use`` if another client
    watches the image: one that has it open for writing (another overwriter, a VM's librbd) or mapped
    (krbd, rbd-nbd).  The writer's own open is one watch; a second is someone else's.  Two overwriters
    opening at once may both refuse, never both write."""
    writer = RbdWriter(connection, image, what, not_found)
    try:
        with connection.errors(f"listing the clients watching {what}"):
            watchers = list(writer._check_open().watchers_list())
    except BaseException:
        writer.close()
        raise
    if len(watchers) > 1:
        writer.close()
        raise in_use
    return writer


def changed_extents(connection: RbdConnection, image: str, snapshot: str, base_snapshot: str, what: str,
                    not_found: exceptions.StrongroomError, base_not_found: exceptions.StrongroomError,
                    size: int | None = None, base_size: int | None = None) -> list[Extent] | None:
    """Where RBD snapshot ``snapshot`` of ``image`` may differ from its earlier snapshot ``base_snapshot``:
    librbd's ``diff_iterate(0, size, from_snapshot=base_snapshot)`` on the image opened at ``snapshot``,
    sorted and merged, with everything past the base's end added when the image grew between them.

    Data written and discarded (``exists=False``) are both changes.  With a valid ``fast-diff`` object map,
    a first pass (``whole_object=True``) compares the two object maps without an OSD request, and only
    the runs of objects it reports are then diffed exactly (an OSD request per object: a 4 KiB write is
    4 KiB), so an unchanged image costs about a millisecond whatever its size; librbd's exact diff alone
    asks every object.  Without ``fast-diff`` that one exact pass is what is done: the same answer,
    slower.  ``size``/``base_size`` cap the two snapshots' sizes (a Cinder volume of a size it cannot
    express is an image rounded up to a GiB).  None when ``base_snapshot`` is not older than ``snapshot``
    (the question has no answer librbd gives); ``not_found``/``base_not_found`` when either is gone."""
    handle = open_image(connection, image, snapshot, True, not_found)
    try:
        with connection.errors(f"comparing {what} with its base", not_found=lambda: not_found):
            snaps = {str(s["name"]): (int(s["id"]), int(s["size"])) for s in handle.list_snaps()}
            if base_snapshot not in snaps:
                raise base_not_found
            if snapshot not in snaps:
                raise not_found
            if snaps[base_snapshot][0] > snaps[snapshot][0]:
                return None
            end = min(int(handle.size()), size if size is not None else snaps[snapshot][1])
            base_end = min(snaps[base_snapshot][1], base_size if base_size is not None else snaps[base_snapshot][1])
            found: list[Extent] = []

            def seen(offset: int, length: int, exists: bool) -> None:
                found.append(Extent(offset, length))  # a write or a discard: both are changes

            if base_snapshot != snapshot:
                for start, stop in _objects_to_diff(handle, end, base_snapshot):
                    handle.diff_iterate(start, stop - start, base_snapshot, seen)
    finally:
        with contextlib.suppress(Exception):
            handle.close()
    if end > base_end:  # grown: the base never had these bytes
        found.append(Extent(base_end, end - base_end))
    return list(merge_extents(found, end))


def _objects_to_diff(handle: Any, end: int, base_snapshot: str) -> list[tuple[int, int]]:
    """``[start, stop)`` runs of ``[0, end)`` to diff exactly: where the object maps say objects changed
    (with a valid fast-diff map, which costs no OSD request), else the whole range."""
    rbd = librbd()
    invalid = rbd.RBD_FLAG_FAST_DIFF_INVALID | rbd.RBD_FLAG_OBJECT_MAP_INVALID
    if not int(handle.features()) & rbd.RBD_FEATURE_FAST_DIFF or int(handle.flags()) & invalid:
        return [(0, end)] if end > 0 else []
    objects: list[Extent] = []
    handle.diff_iterate(0, end, base_snapshot, lambda offset, length, exists: objects.append(Extent(offset, length)),
                        whole_object=True)
    return [(e.offset, e.end) for e in merge_extents(objects, end)]
