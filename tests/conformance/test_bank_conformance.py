"""The bank conformance suite on every bank that needs no external server."""

from __future__ import annotations

import pathlib

from strongroom.bank_plugins.base import BankPlugin
from strongroom.bank_plugins.fs import FilesystemBank
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.testing.bank import BankConformance


class TestMemoryBank(BankConformance):
    stream_memory_limit = None  # it keeps every value in memory by design
    def make_bank(self, tmp_path: pathlib.Path) -> BankPlugin:
        return MemoryBank({})


class TestFilesystemBank(BankConformance):
    def make_bank(self, tmp_path: pathlib.Path) -> BankPlugin:
        return FilesystemBank({"path": str(tmp_path / "bank")})
