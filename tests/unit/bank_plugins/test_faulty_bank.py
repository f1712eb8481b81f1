"""strongroom.testing.faults: the fault-injecting bank that tests and plugin authors wrap around a bank."""

from __future__ import annotations

import io

import pytest

from strongroom import exceptions
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.testing.faults import OPERATIONS, Call, Fault, FaultyBank, fails_transiently


class Pipe(io.RawIOBase):
    """An empty stream that cannot seek back."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        return 0


def test_without_rules_it_is_the_inner_bank() -> None:
    inner = MemoryBank()
    bank = FaultyBank(inner)
    bank.put_object("a/b", b"v", {"m": "1"})
    assert inner.get_object("a/b") == b"v"
    assert (bank.get_object("a/b"), bank.head_object("a/b").metadata, bank.object_exists("a/b")) == (
        b"v", {"m": "1"}, True)
    assert bank.open_object("a/b").read() == b"v"
    assert bank.list_objects("a/") == ["a/b"] and list(bank.iter_objects()) == ["a/b"]
    assert bank.server_time() is None
    bank.delete_object("a/b")
    assert bank.calls["put_object"] == 1 and bank.total_calls == 9
    assert not bank.injected and bank.options is inner.options and "FaultyBank(" in repr(bank)


def test_faults_before_a_call_leave_the_bank_untouched() -> None:
    bank = FaultyBank(MemoryBank())
    bank.inject(Fault.TRANSIENT, operations={"put_object"}, times=2)
    for _ in range(2):
        with pytest.raises(exceptions.BankTransientError, match=r"before put_object 'k' \(call \d\)"):
            bank.put_object("k", b"v")
        assert not bank.object_exists("k")
    bank.put_object("k", b"v")
    assert bank.get_object("k") == b"v"
    assert bank.injected == {Fault.TRANSIENT: 2}
    assert [(fault, call.operation, call.key) for fault, call in bank.log] == [
        (Fault.TRANSIENT, "put_object", "k")] * 2


def test_faults_after_a_call_lose_its_answer() -> None:
    bank = FaultyBank(MemoryBank())
    bank.inject(Fault.PERMANENT, operations={"put_object", "open_object"}, after=True, times=2)
    with pytest.raises(exceptions.BankError) as excinfo:
        bank.put_object("k", b"v")
    assert not isinstance(excinfo.value, exceptions.BankTransientError)
    assert bank.get_object("k") == b"v"  # it took effect
    with pytest.raises(exceptions.BankError, match="after open_object"):
        bank.open_object("k")  # the stream opened is closed, not leaked
    assert bank.open_object("k").read() == b"v"


def test_predicates_choose_calls() -> None:
    bank = FaultyBank(MemoryBank())
    bank.inject(Fault.TRANSIENT, when=lambda call: call.key.startswith("leases/"))
    bank.put_object("checkpoints/x", b"")
    with pytest.raises(exceptions.BankTransientError):
        bank.put_object("leases/svc", b"")
    with pytest.raises(exceptions.BankTransientError):
        bank.list_objects("leases/")
    bank.clear()
    bank.put_object("leases/svc", b"")


def test_rates_are_seeded() -> None:
    def failures(seed: int) -> list[int]:
        bank = FaultyBank(MemoryBank(), seed=seed)
        bank.inject(Fault.TRANSIENT, rate=0.3)
        failed = []
        for i in range(200):
            try:
                bank.get_object("missing")
            except exceptions.BankTransientError:
                failed.append(i)
            except exceptions.BankObjectNotFound:
                pass
        return failed

    assert failures(1) == failures(1) != failures(2)
    assert 30 < len(failures(1)) < 90


def test_latency_sleeps_then_proceeds() -> None:
    slept: list[float] = []
    bank = FaultyBank(MemoryBank(), sleep=slept.append)
    bank.inject(Fault.LATENCY, operations={"get_object"}, delay=2.5)
    bank.put_object("k", b"v")
    assert bank.get_object("k") == b"v"
    assert slept == [2.5] and bank.injected == {Fault.LATENCY: 1}


def test_a_streamed_put_may_consume_part_of_the_stream_before_failing() -> None:
    bank = FaultyBank(MemoryBank())
    bank.inject(Fault.TRANSIENT, times=1, consume=3)
    stream = io.BytesIO(b"payload")
    with pytest.raises(exceptions.BankTransientError):
        bank.put_object("k", stream)
    assert stream.tell() == 3


def test_calls_know_whether_a_wrapper_could_replay_them() -> None:
    assert Call("get_object", "k").replayable and not Call("get_object", "k").streamed
    assert Call("put_object", "k", b"v").replayable
    assert Call("put_object", "k", io.BytesIO(b"v")).replayable
    assert not Call("put_object", "k", Pipe()).replayable  # type: ignore[arg-type]


def test_fails_transiently_spares_what_cannot_be_replayed() -> None:
    bank = fails_transiently(MemoryBank(), rate=1.0)
    bank.put_object("from-a-pipe", Pipe())  # type: ignore[arg-type]
    with pytest.raises(exceptions.BankTransientError):
        bank.put_object("k", b"v")


def test_rules_are_checked() -> None:
    bank = FaultyBank(MemoryBank())
    with pytest.raises(ValueError, match="not bank operations"):
        bank.inject(Fault.TRANSIENT, operations={"put"})
    with pytest.raises(ValueError, match="rate"):
        bank.inject(Fault.TRANSIENT, rate=1.5)
    assert "put_object" in OPERATIONS
