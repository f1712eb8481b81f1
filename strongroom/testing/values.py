"""Deterministic values, keys and streams that the bank conformance suites write (and plugin tests reuse)."""

from __future__ import annotations

import hashlib
import io
import random

MiB = 1 << 20


def pattern(length: int, seed: int = 1) -> bytes:
    """Deterministic pseudo-random bytes (every byte value occurs; distinct per seed)."""
    return random.Random(seed).randbytes(length)


def byte_order(keys: list[str]) -> list[str]:
    """``keys`` sorted the way a bank must list them: by their UTF-8 bytes."""
    return sorted(keys, key=lambda k: k.encode("utf-8", "surrogatepass"))


def digest(data: bytes) -> str:
    """Compare big values by digest so that a failure does not print megabytes."""
    return hashlib.sha256(data).hexdigest()


class TrickleStream(io.RawIOBase):
    """A non-seekable stream that returns at most ``step`` bytes per read (like a socket)."""

    def __init__(self, data: bytes, step: int = 65_521, fail_after: int | None = None) -> None:
        super().__init__()
        self._data = memoryview(data)
        self._pos = 0
        self._step = step
        self._fail_after = fail_after

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._fail_after is not None and self._pos >= self._fail_after:
            raise StreamBroke(f"source stream broke after {self._pos} bytes")
        n = min(len(buffer), self._step, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


class PatternStream(io.RawIOBase):
    """A non-seekable stream of ``size`` deterministic bytes, generated 1 MiB at a time (never held whole)."""

    def __init__(self, size: int, seed: int = 1) -> None:
        super().__init__()
        self._size = size
        self._seed = seed
        self._pos = 0
        self._block = b""
        self._block_start = 0

    @staticmethod
    def block(seed: int, index: int) -> bytes:
        return random.Random(seed * 1_000_003 + index).randbytes(MiB)

    @classmethod
    def expected_digest(cls, size: int, seed: int = 1) -> str:
        h = hashlib.sha256()
        for index in range((size + MiB - 1) // MiB):
            h.update(cls.block(seed, index)[: min(MiB, size - index * MiB)])
        return h.hexdigest()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._pos >= self._size:
            return 0
        index, offset = divmod(self._pos, MiB)
        if not self._block or self._block_start != index * MiB:
            self._block, self._block_start = self.block(self._seed, index), index * MiB
        n = min(len(buffer), MiB - offset, self._size - self._pos)
        buffer[:n] = self._block[offset:offset + n]
        self._pos += n
        return n


class StreamBroke(Exception):
    """Raised by a :class:`TrickleStream` told to fail (a client that went away mid-upload)."""


# Keys whose byte order differs from a naive directory walk, and non-ASCII keys.
ORDER_TRAP_KEYS = [
    "a", "a-b", "a/b", "a/b/c", "a/b-c", "a.b", "a0", "a/c", "ab", "A",
    "caf\u00e9", "cafe", "cafe/x", "caf\u00e9/x", "\u00ff", "z", "\u4e2d\u6587/\u952e",
    "\U0001f600", "~tilde", ".dot", "x.obj", "x/.tmp-not-a-temp-file",
]
