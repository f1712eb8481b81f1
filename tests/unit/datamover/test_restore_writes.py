"""What a block backend sees of a restore: neighbouring chunks gathered into one write per window, holes
left out, and writes from several workers at once only for a writer that takes them."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from strongroom.bank_plugins.bank import Bank
from strongroom.block.base import BlockWriter
from strongroom.block.loopback import LoopbackBackend
from strongroom.datamover import ChunkStore, backup, restore
from strongroom.datamover.mover import RESTORE_WINDOW

from .conftest import CHUNK, manifest_section


class RecordingWriter(BlockWriter):
    """A volume in memory that records each write's ``(offset, length)``; with ``meet`` set, its first two
    writes each wait (up to 30 s) for the other to be in progress too."""

    def __init__(self, size: int, parallel: bool = False, meet: bool = False) -> None:
        self.size = size
        self.parallel_writes = parallel
        self.data = bytearray(size)
        self.writes: list[tuple[int, int]] = []
        self.flushed = False
        self._lock = threading.Lock()
        self._meet = threading.Barrier(2, timeout=30) if meet else None

    def write(self, offset: int, data: bytes) -> None:
        self.write_pieces(offset, [data])

    def write_pieces(self, offset: int, pieces: Sequence[bytes | memoryview]) -> None:
        data = b"".join(pieces)
        with self._lock:
            self.writes.append((offset, len(data)))
            meet = self._meet if len(self.writes) <= 2 else None
        if meet is not None:
            meet.wait()
        self.data[offset:offset + len(data)] = data

    def flush(self) -> None:
        self.flushed = True


def _protect(backend: LoopbackBackend, bank: Bank, store: ChunkStore, content: bytes) -> None:
    backend.create_volume(len(content), name="src")
    path = Path(backend.options["path"]) / "src"
    path.write_bytes(content)
    with backend.reading_snapshot(backend.create_snapshot("src").id) as reader:
        backup(reader, store, manifest_section(bank), chunk_size=CHUNK, workers=2)


def test_neighbouring_chunks_are_one_write_per_window_and_holes_split_them(
        backend: LoopbackBackend, bank: Bank, store: ChunkStore) -> None:
    size = 2 * RESTORE_WINDOW + 3 * CHUNK + 1000
    content = bytearray(os.urandom(size))
    hole = RESTORE_WINDOW + 5 * CHUNK + 4096  # one all-zero 4 KiB block inside a chunk
    content[hole:hole + 4096] = bytes(4096)
    content[RESTORE_WINDOW - CHUNK:RESTORE_WINDOW] = bytes(CHUNK)  # a whole zero chunk: a zero run
    _protect(backend, bank, store, bytes(content))

    writer = RecordingWriter(size)
    result = restore(manifest_section(bank), store, writer, workers=3)

    assert bytes(writer.data) == bytes(content)
    assert writer.flushed
    assert sorted(writer.writes) == [
        (0, RESTORE_WINDOW - CHUNK),
        (RESTORE_WINDOW, hole - RESTORE_WINDOW),
        (hole + 4096, 2 * RESTORE_WINDOW - hole - 4096),
        (2 * RESTORE_WINDOW, 3 * CHUNK + 1000),
    ]
    assert result.bytes_written == size - CHUNK - 4096


def test_a_writer_that_takes_parallel_writes_gets_them_from_several_workers(
        backend: LoopbackBackend, bank: Bank, store: ChunkStore) -> None:
    size = 4 * RESTORE_WINDOW
    content = os.urandom(size)
    _protect(backend, bank, store, content)

    writer = RecordingWriter(size, parallel=True, meet=True)  # serialised writes would break the barrier
    restore(manifest_section(bank), store, writer, workers=2)

    assert bytes(writer.data) == content
    assert sorted(writer.writes) == [(n * RESTORE_WINDOW, RESTORE_WINDOW) for n in range(4)]
