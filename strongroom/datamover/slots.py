"""What the data mover's backup, restore and the source audit share: reading one slot of a snapshot, the
all-zero test, and a thread pool with a bounded number of tasks in flight."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable
from typing import Any

from strongroom import context as sr_context
from strongroom import exceptions
from strongroom.block.base import BlockReader
from strongroom.datamover import plan


def max_in_flight(workers: int) -> int:
    """Slots submitted but not yet recorded in the manifest, at most."""
    return 2 * workers + 2


def check_workers(workers: int) -> None:
    if not isinstance(workers, int) or workers < 1:
        raise exceptions.InvalidInput(reason=f"workers must be a positive integer, not {workers!r}")


class Zeros:
    """An all-zero buffer to compare slots against with one memcmp."""

    def __init__(self, chunk_size: int) -> None:
        self.full = bytes(chunk_size)

    def equal(self, data: Any) -> bool:
        n = len(data)
        return data == (self.full if n == len(self.full) else self.full[:n])


def read_slot(reader: BlockReader, slot: plan.Slot) -> tuple[Any, int]:
    ranges = slot.ranges
    if len(ranges) == 1 and ranges[0] == (slot.offset, slot.offset + slot.length):
        data = reader.read(slot.offset, slot.length)
        check_read(data, slot.offset, slot.length)
        return data, slot.length
    buf = bytearray(slot.length)
    read = 0
    for start, end in ranges:
        piece = reader.read(start, end - start)
        check_read(piece, start, end - start)
        buf[start - slot.offset:end - slot.offset] = piece
        read += end - start
    return buf, read


def check_read(data: Any, offset: int, length: int) -> None:
    if len(data) != length:
        raise exceptions.BlockError(reason=f"short read at offset {offset}: {len(data)} of {length} bytes")


class Bounded:
    """Run tasks on a pool with at most ``limit`` outstanding; results are handled as they finish."""

    def __init__(self, workers: int, name: str) -> None:
        self.executor = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self.limit = max_in_flight(workers)
        self.pending: set[cf.Future[Any]] = set()

    def submit(self, fn: Callable[..., Any], *args: Any, on_done: Callable[[Any], None]) -> None:
        while len(self.pending) >= self.limit:
            self._wait(on_done, cf.FIRST_COMPLETED)
        self.pending.add(self.executor.submit(sr_context.carrying(fn), *args))  # logs under the run's request

    def finish(self, on_done: Callable[[Any], None]) -> None:
        while self.pending:
            self._wait(on_done, cf.FIRST_COMPLETED)

    def _wait(self, on_done: Callable[[Any], None], how: str) -> None:
        done, self.pending = cf.wait(self.pending, return_when=how)
        for future in done:
            on_done(future.result())

    def close(self) -> None:
        for future in self.pending:
            future.cancel()
        self.executor.shutdown(wait=True, cancel_futures=True)
