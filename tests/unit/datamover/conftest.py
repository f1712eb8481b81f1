"""Shared fixtures: a real in-memory bank and a real loopback block backend in a temp dir."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.bank_plugins.bank import Bank, BankSection
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.block.base import BlockReader, Extent
from strongroom.block.loopback import LoopbackBackend
from strongroom.datamover import ChunkStore

CHUNK = 64 * 1024  # small chunks keep the tests fast; the logic does not depend on the size


class CountingReader(BlockReader):
    """A reader that records every range read (to prove unchanged slots are not) and every prefetch hint,
    with how many bytes had been hinted when each read began."""

    def __init__(self, inner: BlockReader) -> None:
        self.inner = inner
        self.size = inner.size
        self.reads: list[tuple[int, int]] = []
        self.prefetched: list[tuple[int, int]] = []
        self.hinted_at_read: list[int] = []
        self._unhinted: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def allocated_extents(self) -> Iterator[Extent]:
        return self.inner.allocated_extents()

    def read(self, offset: int, length: int) -> bytes:
        with self._lock:
            self.reads.append((offset, length))
            self.hinted_at_read.append(sum(n for _, n in self.prefetched))
            if not any(start <= offset and offset + length <= start + n for start, n in self.prefetched):
                self._unhinted.append((offset, length))
        return self.inner.read(offset, length)

    def prefetch(self, offset: int, length: int) -> None:
        with self._lock:
            self.prefetched.append((offset, length))

    def unprefetched_reads(self) -> list[tuple[int, int]]:
        """Reads that no earlier prefetch hint covered."""
        return list(self._unhinted)


@pytest.fixture
def bank() -> Bank:
    return Bank(MemoryBank(), name="test")


@pytest.fixture
def store(bank: Bank) -> ChunkStore:
    return ChunkStore(bank.section("projects/p1/chunks"))


def manifest_section(bank: Bank, checkpoint: str = "c1") -> BankSection:
    return bank.section(f"checkpoints/{checkpoint}/resources/volume#v1/data")


@pytest.fixture
def backend(tmp_path: Path) -> LoopbackBackend:
    return LoopbackBackend({"path": str(tmp_path / "volumes")})


def write_mixed_image(path: Path, chunks: int = 40, seed: int = 7) -> None:
    """A sparse image of ``chunks`` CHUNK-sized slots: random data, text, written zeros and holes.

    Some slots are only partly written (data next to a hole inside one slot), and
    the last slot is short so the volume size is not a multiple of the chunk size.
    """
    rng = random.Random(seed)
    size = chunks * CHUNK - 1000
    with open(path, "wb") as f:
        f.truncate(size)
        for slot in range(chunks):
            kind = slot % 5
            offset = slot * CHUNK
            length = min(CHUNK, size - offset)
            if kind == 0:
                f.seek(offset)
                f.write(rng.randbytes(length))
            elif kind == 1:
                f.seek(offset)
                line = f"line {slot} of some very compressible text\n".encode()
                f.write((line * (length // len(line) + 1))[:length])
            elif kind == 2:
                f.seek(offset)
                f.write(bytes(length))  # written zeros: allocated, but all zero
            elif kind == 3:
                # half data, half hole inside one slot
                f.seek(offset + length // 2)
                f.write(rng.randbytes(length - length // 2 - 8192 if length > 16384 else 1))
            # kind 4: a hole
        f.flush()
        os.fsync(f.fileno())
