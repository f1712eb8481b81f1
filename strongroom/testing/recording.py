"""A bank that records every key it is asked about, for tests of who touches which keys.

:class:`RecordingBank` is a :class:`~strongroom.bank_plugins.memory.MemoryBank`
that notes each key read, written, headed or deleted, and each prefix listed.
Register it as a bank plugin (``strongroom.plugins.register_test_plugin``) and
replay a workload; then compare :attr:`RecordingBank.keys` with the patterns
the bank layout declares (:func:`strongroom.bank_plugins.layout.classify`), so
that a stray key fails the test.  Plugin authors can do the same to check that
their plugin writes only inside the resource section it is given.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import IO, Any

from strongroom.bank_plugins.base import ObjectInfo
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.clock import Clock


class RecordingBank(MemoryBank):
    """Every instance appends to :attr:`keys` (``(operation, key)``) and :attr:`prefixes` (listings)."""

    def __init__(self, options: Mapping[str, Any] | None = None, clock: Clock | None = None) -> None:
        super().__init__(options, clock)
        self._record_lock = threading.Lock()
        self.keys: list[tuple[str, str]] = []
        self.prefixes: list[str] = []

    def _note(self, operation: str, key: str) -> None:
        with self._record_lock:
            self.keys.append((operation, key))

    def put_object(self, key: str, data: bytes | IO[bytes], metadata: Mapping[str, str] | None = None) -> None:
        self._note("put", key)
        super().put_object(key, data, metadata)

    def get_object(self, key: str) -> bytes:
        self._note("get", key)
        return super().get_object(key)

    def head_object(self, key: str) -> ObjectInfo:
        self._note("head", key)
        return super().head_object(key)

    def delete_object(self, key: str) -> None:
        self._note("delete", key)
        super().delete_object(key)

    def list_objects(self, prefix: str = "", marker: str | None = None, limit: int | None = None) -> list[str]:
        with self._record_lock:
            self.prefixes.append(prefix)
        return super().list_objects(prefix, marker, limit)

    def touched(self) -> set[str]:
        """Every key read, written, headed or deleted so far."""
        with self._record_lock:
            return {key for _, key in self.keys}
