"""RetryingBank: transient bank errors are retried with bounded exponential backoff, others are not."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import IO

import pytest

from strongroom import exceptions
from strongroom.bank_plugins.base import ObjectInfo
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.bank_plugins.retry import RetryingBank


class FlakyFakeBank(MemoryBank):
    """A fake: a real MemoryBank whose next ``failures`` calls raise BankTransientError."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__({"name": "flaky"})
        self.failures = failures
        self.calls = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise exceptions.BankTransientError(reason=f"simulated 503 (call {self.calls})")

    def put_object(self, key: str, data: bytes | IO[bytes],
                   metadata: Mapping[str, str] | None = None) -> None:
        if self.failures > 0 and not isinstance(data, bytes):
            data.read(3)  # consume part of the stream before failing, like a dropped upload
        self._maybe_fail()
        super().put_object(key, data, metadata)

    def get_object(self, key: str) -> bytes:
        self._maybe_fail()
        return super().get_object(key)

    def head_object(self, key: str) -> ObjectInfo:
        self._maybe_fail()
        return super().head_object(key)

    def delete_object(self, key: str) -> None:
        self._maybe_fail()
        super().delete_object(key)

    def list_objects(self, prefix: str = "", marker: str | None = None,
                     limit: int | None = None) -> list[str]:
        self._maybe_fail()
        return super().list_objects(prefix, marker, limit)


def make(failures: int, **kwargs: float) -> tuple[RetryingBank, FlakyFakeBank, list[float]]:
    inner = FlakyFakeBank(failures)
    slept: list[float] = []
    return RetryingBank(inner, sleep=slept.append, **kwargs), inner, slept  # type: ignore[arg-type]


def test_transient_failures_are_retried_with_exponential_backoff() -> None:
    bank, inner, slept = make(3, initial_delay=0.5, multiplier=2.0, max_attempts=5)
    bank.put_object("k", b"value", {"a": "b"})
    assert inner.calls == 4
    assert slept == [0.5, 1.0, 2.0]
    assert bank.get_object("k") == b"value"


def test_backoff_is_bounded_by_max_delay() -> None:
    bank, _, _ = make(0, initial_delay=1.0, multiplier=10.0, max_delay=30.0, max_attempts=5)
    assert bank.delays() == [1.0, 10.0, 30.0, 30.0]


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    bank, inner, slept = make(10, max_attempts=3, initial_delay=0.1)
    with pytest.raises(exceptions.BankTransientError, match="call 3"):
        bank.get_object("k")
    assert inner.calls == 3
    assert len(slept) == 2


def test_permanent_errors_are_not_retried() -> None:
    bank, inner, slept = make(0)
    with pytest.raises(exceptions.BankObjectNotFound):
        bank.get_object("missing")
    assert inner.calls == 1 and slept == []


def test_every_operation_is_retried() -> None:
    bank, inner, slept = make(0)
    bank.put_object("a/b", b"x")
    for call, expected in [(lambda: bank.get_object("a/b"), b"x"),
                           (lambda: bank.head_object("a/b").size, 1),
                           (lambda: bank.object_exists("a/b"), True),
                           (lambda: bank.list_objects("a/"), ["a/b"]),
                           (lambda: list(bank.iter_objects("a/")), ["a/b"]),
                           (lambda: bank.open_object("a/b").read(), b"x")]:
        inner.failures = 1
        assert call() == expected
    inner.failures = 1
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
    assert inner.calls == 1 and slept == []


def test_invalid_settings_are_config_errors() -> None:
    with pytest.raises(exceptions.ConfigError, match="max_attempts"):
        RetryingBank(MemoryBank({}), max_attempts=0)
    with pytest.raises(exceptions.ConfigError):
        RetryingBank(MemoryBank({}), initial_delay=-1)


def test_repr_and_close_delegate() -> None:
    bank, _, _ = make(0)
    assert "RetryingBank(" in repr(bank)
    bank.close()
