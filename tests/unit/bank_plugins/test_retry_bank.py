"""RetryingBank: transient bank errors are retried with bounded exponential backoff, others are not."""

from __future__ import annotations

import io

import pytest

from strongroom import exceptions
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.bank_plugins.retry import RetryingBank
from strongroom.testing.faults import Fault, FaultyBank


def make(failures: int, **kwargs: float) -> tuple[RetryingBank, FaultyBank, list[float]]:
    """A RetryingBank over a memory bank whose next ``failures`` calls raise BankTransientError.

    A failing put from a stream first consumes part of it, like a dropped upload.
    """
    inner = FaultyBank(MemoryBank({"name": "flaky"}))
    fail_next(inner, failures)
    slept: list[float] = []
    return RetryingBank(inner, sleep=slept.append, **kwargs), inner, slept  # type: ignore[arg-type]


def fail_next(inner: FaultyBank, failures: int) -> None:
    inner.inject(Fault.TRANSIENT, times=failures, consume=3)


def test_transient_failures_are_retried_with_exponential_backoff() -> None:
    bank, inner, slept = make(3, initial_delay=0.5, multiplier=2.0, max_attempts=5)
    bank.put_object("k", b"value", {"a": "b"})
    assert inner.total_calls == 4
    assert slept == [0.5, 1.0, 2.0]
    assert bank.get_object("k") == b"value"


def test_backoff_is_bounded_by_max_delay() -> None:
    bank, _, _ = make(0, initial_delay=1.0, multiplier=10.0, max_delay=30.0, max_attempts=5)
    assert bank.delays() == [1.0, 10.0, 30.0, 30.0]


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    bank, inner, slept = make(10, max_attempts=3, initial_delay=0.1)
    with pytest.raises(exceptions.BankTransientError, match="call 3"):
        bank.get_object("k")
    assert inner.total_calls == 3
    assert len(slept) == 2


def test_permanent_errors_are_not_retried() -> None:
    bank, inner, slept = make(0)
    with pytest.raises(exceptions.BankObjectNotFound):
        bank.get_object("missing")
    assert inner.total_calls == 1 and slept == []


def test_every_operation_is_retried() -> None:
    bank, inner, slept = make(0)
    bank.put_object("a/b", b"x")
    for call, expected in [(lambda: bank.get_object("a/b"), b"x"),
                           (lambda: bank.head_object("a/b").size, 1),
                           (lambda: bank.object_exists("a/b"), True),
                           (lambda: bank.list_objects("a/"), ["a/b"]),
                           (lambda: list(bank.iter_objects("a/")), ["a/b"]),
                           (lambda: bank.open_object("a/b").read(), b"x")]:
        fail_next(inner, 1)
        assert call() == expected
    fail_next(inner, 1)
    bank.delete_object("a/b")
    assert not bank.object_exists("a/b")
    assert len(slept) == 7


def test_seekable_stream_is_rewound_before_a_retry() -> None:
    bank, inner, _ = make(2)
    stream = io.BytesIO(b"##payload")
    stream.seek(2)
    bank.put_object("k", stream)
    assert inner.get_object("k") == b"payload"


def test_unseekable_stream_is_tried_once() -> None:
    class Pipe(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            return 0

    bank, inner, slept = make(1)
    with pytest.raises(exceptions.BankTransientError):
        bank.put_object("k", Pipe())  # type: ignore[arg-type]
    assert inner.total_calls == 1 and slept == []


def test_invalid_settings_are_config_errors() -> None:
    with pytest.raises(exceptions.ConfigError, match="max_attempts"):
        RetryingBank(MemoryBank({}), max_attempts=0)
    with pytest.raises(exceptions.ConfigError):
        RetryingBank(MemoryBank({}), initial_delay=-1)


def test_repr_and_close_delegate() -> None:
    bank, _, _ = make(0)
    assert "RetryingBank(" in repr(bank)
    bank.close()
