"""Readers and writers over an NBD export of the daemon, with libnbd (Debian's ``python3-libnbd``).

A reader asks the server for ``base:allocation`` and reports as allocated only what is neither a hole
nor known to read as zeros, so unwritten space is never read.  A writer sends a block of zeros as an NBD
*write zeroes* that may punch a hole (qcow2 then marks the clusters zero instead of storing them), so a
restore stays as thin as its source, whether into a new image or over an existing one.

``nbd`` is imported on first use, with an error naming the Debian package when it is missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from strongroom import exceptions
from strongroom.block.base import BlockReader, BlockWriter, Extent, check_range

PACKAGE = "python3-libnbd"
#: Largest request sent at once (qemu's NBD server takes up to 32 MiB).
MAX_REQUEST = 32 << 20
#: Zero detection granularity of writes: qcow2's default cluster.
ZERO_BLOCK = 64 << 10
#: Largest range asked of block_status at once.
STATUS_WINDOW = 1 << 30
STATE_HOLE = 1
STATE_ZERO = 2


def libnbd() -> Any:
    try:
        import nbd
    except ImportError as err:
        raise exceptions.ConfigError(
            reason=f"qcow2 block backend: the Python module 'nbd' is missing: install the Debian package {PACKAGE} "
            "(and run `make install`, which links it into the virtualenv)") from err
    return nbd


class _Handle:
    """One libnbd connection to one export; every libnbd error becomes ``BlockUnavailable`` naming the
    backend and what was being read or written."""

    size: int

    def __init__(self, socket_path: str, export: str, backend: str, what: str) -> None:
        self._nbd = libnbd()
        self._backend = backend
        self._what = what
        handle = self._nbd.NBD()
        handle.set_export_name(export)
        handle.add_meta_context("base:allocation")
        with self.errors("connecting to"):
            handle.connect_unix(socket_path)
        self._handle: Any = handle
        with self.errors("sizing"):
            self.size = int(handle.get_size())

    @contextlib.contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except self._nbd.Error as err:
            raise exceptions.BlockUnavailable(
                backend=self._backend, reason=f"{doing} {self._what}: {err.string}") from err

    def _open(self) -> Any:
        if self._handle is None:
            raise exceptions.BlockError(reason=f"{self._backend}: {self._what} is closed")
        return self._handle

    def _close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.shutdown()
            del handle  # libnbd 1.14's handle has no close(): it is closed when dropped


class NbdReader(_Handle, BlockReader):
    def allocated_extents(self) -> Iterator[Extent]:
        handle = self._open()
        pending: Extent | None = None
        offset = 0
        while offset < self.size:
            found: list[tuple[int, int]] = []

            def status(context: str, start: int, entries: list[int], err: Any, found: list = found) -> int:
                if context == "base:allocation":
                    pos = start
                    for i in range(0, len(entries) - 1, 2):
                        length, flags = entries[i], entries[i + 1]
                        if not flags & (STATE_HOLE | STATE_ZERO):
                            found.append((pos, length))
                        pos += length
                    found.append((pos, -1))  # where the answer ends
                return 0

            with self.errors(f"asking the allocation at offset {offset} of"):
                handle.block_status(min(STATUS_WINDOW, self.size - offset), offset, status)
            end = offset
            for start, length in found:
                if length < 0:
                    end = max(end, start)
                    continue
                length = min(length, self.size - start)
                if length <= 0:
                    continue
                if pending is not None and pending.end == start:
                    pending = Extent(pending.offset, pending.length + length)
                else:
                    if pending is not None:
                        yield pending
                    pending = Extent(start, length)
            if end <= offset:
                raise exceptions.BlockUnavailable(
                    backend=self._backend, reason=f"no allocation answer at offset {offset} of {self._what}")
            offset = end
        if pending is not None:
            yield pending

    def read(self, offset: int, length: int) -> bytes:
        handle = self._open()
        length = max(0, min(length, self.size - offset))
        parts = []
        pos = offset
        while pos < offset + length:
            count = min(MAX_REQUEST, offset + length - pos)
            with self.errors(f"reading {count} bytes at offset {pos} of"):
                parts.append(bytes(handle.pread(count, pos)))
            pos += count
        return b"".join(parts)

    def close(self) -> None:
        self._close()


class NbdWriter(_Handle, BlockWriter):
    def write(self, offset: int, data: bytes) -> None:
        handle = self._open()
        check_range(self.size, offset, len(data), self._what)
        raw = bytes(data)
        for start, end, zero in _runs(offset, raw):
            if zero:
                with self.errors(f"zeroing {end - start} bytes at offset {offset + start} of"):
                    handle.zero(end - start, offset + start)
            else:
                with self.errors(f"writing {end - start} bytes at offset {offset + start} of"):
                    handle.pwrite(raw[start:end], offset + start)

    def flush(self) -> None:
        handle = self._open()
        with self.errors("flushing"):
            handle.flush()

    def close(self) -> None:
        if self._handle is None:
            return
        try:
            self.flush()
        finally:
            self._close()


_ZEROS = bytes(ZERO_BLOCK)


def _runs(offset: int, data: bytes) -> Iterator[tuple[int, int, bool]]:
    """``data`` cut on the image's cluster boundaries into runs ``(start, end, all zero)`` of at most
    :data:`MAX_REQUEST` bytes, neighbouring blocks of the same kind merged."""
    run_start, run_zero = 0, None
    pos = 0
    while pos < len(data):
        step = min(ZERO_BLOCK - (offset + pos) % ZERO_BLOCK, len(data) - pos)
        zero = data[pos : pos + step] == _ZEROS[:step]
        if run_zero is not None and (zero != run_zero or pos - run_start >= MAX_REQUEST):
            yield run_start, pos, run_zero
            run_start = pos
        run_zero = zero
        pos += step
    if run_zero is not None:
        yield run_start, len(data), run_zero
