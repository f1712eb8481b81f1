"""An in-memory bank: the reference implementation of the bank contract, for tests."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping
from typing import IO, Any

from strongroom import exceptions
from strongroom.bank_plugins.base import BankPlugin, ObjectInfo
from strongroom.clock import Clock


def _read_all(data: bytes | IO[bytes]) -> bytes:
    return bytes(data) if isinstance(data, bytes | bytearray | memoryview) else data.read()


def _sort_key(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


class MemoryBank(BankPlugin):
    """Keeps every object in a dict; lost when the process exits."""

    def __init__(self, options: Mapping[str, Any] | None = None, clock: Clock | None = None) -> None:
        super().__init__(options)
        self._clock = clock or Clock()
        self._lock = threading.Lock()
        self._objects: dict[str, tuple[bytes, dict[str, str], Any]] = {}
        self._sorted: list[bytes] = []

    def put_object(self, key: str, data: bytes | IO[bytes],
                   metadata: Mapping[str, str] | None = None) -> None:
        value = _read_all(data)
        with self._lock:
            if key not in self._objects:
                bisect.insort(self._sorted, _sort_key(key))
            self._objects[key] = (value, dict(metadata or {}), self._clock.now())

    def get_object(self, key: str) -> bytes:
        with self._lock:
            try:
                return self._objects[key][0]
            except KeyError:
                raise exceptions.BankObjectNotFound(key=key) from None

    def head_object(self, key: str) -> ObjectInfo:
        with self._lock:
            try:
                value, metadata, modified = self._objects[key]
            except KeyError:
                raise exceptions.BankObjectNotFound(key=key) from None
        return ObjectInfo(key=key, size=len(value), metadata=dict(metadata), last_modified=modified)

    def delete_object(self, key: str) -> None:
        with self._lock:
            if self._objects.pop(key, None) is not None:
                idx = bisect.bisect_left(self._sorted, _sort_key(key))
                del self._sorted[idx]

    def list_objects(self, prefix: str = "", marker: str | None = None,
                     limit: int | None = None) -> list[str]:
        bprefix = _sort_key(prefix)
        with self._lock:
            start = bprefix
            if marker is not None:
                start = max(start, _sort_key(marker) + b"\x00")
            idx = bisect.bisect_left(self._sorted, start)
            out: list[str] = []
            while idx < len(self._sorted) and (limit is None or len(out) < limit):
                candidate = self._sorted[idx]
                if not candidate.startswith(bprefix):
                    break
                out.append(candidate.decode("utf-8", "surrogatepass"))
                idx += 1
        return out
