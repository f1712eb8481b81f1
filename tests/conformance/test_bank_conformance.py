"""The bank conformance suite on every bank that needs no external server, and on the retrying wrapper."""

from __future__ import annotations

import pathlib

from strongroom.bank_plugins.base import BankPlugin
from strongroom.bank_plugins.fs import FilesystemBank
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.bank_plugins.retry import RetryingBank
from strongroom.testing.bank import BankConformance
from strongroom.testing.faults import Fault, FaultyBank, fails_transiently


class TestMemoryBank(BankConformance):
    stream_memory_limit = None  # it keeps every value in memory by design
    def make_bank(self, tmp_path: pathlib.Path) -> BankPlugin:
        return MemoryBank({})


class TestFilesystemBank(BankConformance):
    def make_bank(self, tmp_path: pathlib.Path) -> BankPlugin:
        return FilesystemBank({"path": str(tmp_path / "bank")})


class TestRetryingBankOverTransientFaults(BankConformance):
    """RetryingBank keeps every promise of the contract over a store that fails often.

    Before a call takes effect, one call in five fails; after it took effect, one
    answer in ten is lost.  Only puts from streams that cannot seek back are
    spared: no wrapper can replay them.  With 30 attempts a call gives up once in
    about 10^17.
    """

    stream_memory_limit = None  # a memory bank inside

    def make_bank(self, tmp_path: pathlib.Path) -> BankPlugin:
        faulty = fails_transiently(MemoryBank({}), rate=0.2, lost_answers=0.1, seed=7)
        return RetryingBank(faulty, max_attempts=30, initial_delay=0.0, sleep=lambda _: None)

    def test_faults_were_injected_and_retried(self, bank: BankPlugin) -> None:
        assert isinstance(bank, RetryingBank) and isinstance(bank.inner, FaultyBank)
        keys = [f"k/{i:03d}" for i in range(200)]
        for key in keys:
            bank.put_object(key, key.encode(), {"k": key})
        assert bank.list_objects("k/") == keys
        assert all(bank.get_object(key) == key.encode() for key in keys)
        faulty = bank.inner
        assert faulty.injected[Fault.TRANSIENT] > 50
        assert {call.operation for _, call in faulty.log} >= {"put_object", "get_object"}
        assert faulty.total_calls == 400 + 1 + faulty.injected[Fault.TRANSIENT]
