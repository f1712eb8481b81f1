"""Retrying transient bank failures: a layer around any :class:`BankPlugin` (restic style).

Plugins raise :class:`~strongroom.exceptions.BankTransientError` for failures
that may pass (timeouts, 5xx, connection resets) and never retry themselves;
wrap them in :class:`RetryingBank` to retry with bounded exponential backoff::

    bank = RetryingBank(SwiftBank(options), max_attempts=5, initial_delay=0.5)

Permanent errors (``BankObjectNotFound``, ``BankError``...) are raised at once.
A ``put_object`` from a stream is retried only if the stream can seek back to
where it started; otherwise the first transient error is raised.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TypeVar

from strongroom import exceptions, metrics
from strongroom.bank_plugins.base import BankPlugin, ObjectInfo

LOG = logging.getLogger(__name__)
T = TypeVar("T")


class RetryingBank(BankPlugin):
    """Delegates to ``inner``, retrying each call that raises ``BankTransientError``.

    The n-th retry waits ``initial_delay * multiplier ** (n - 1)`` seconds, at
    most ``max_delay``; after ``max_attempts`` attempts the last error is raised.
    ``sleep`` is injectable so that tests never wait; ``name`` labels its errors in the metrics.
    """

    def __init__(self, inner: BankPlugin, *, max_attempts: int = 5, initial_delay: float = 0.5,
                 max_delay: float = 30.0, multiplier: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep, name: str = "") -> None:
        if max_attempts < 1:
            raise exceptions.ConfigError(reason=f"max_attempts must be at least 1, not {max_attempts}")
        if initial_delay < 0 or max_delay < 0 or multiplier < 1:
            raise exceptions.ConfigError(
                reason="retry delays must not be negative, nor the multiplier below 1")
        super().__init__()
        self.options = inner.options  # the same mapping: no second copy of credentials
        self.inner = inner
        self.supports_expiry = inner.supports_expiry
        self.supports_object_lock = inner.supports_object_lock
        self.max_attempts = max_attempts
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.multiplier = multiplier
        self._sleep = sleep
        self.name = name  # how the bank errors metric names this bank

    def __repr__(self) -> str:
        return f"RetryingBank({self.inner!r}, max_attempts={self.max_attempts})"

    def delays(self) -> list[float]:
        """The waits between attempts, in order (``max_attempts - 1`` of them)."""
        return [min(self.initial_delay * self.multiplier ** n, self.max_delay)
                for n in range(self.max_attempts - 1)]

    def _call(self, operation: str, what: str, func: Callable[[], T],
              before_retry: Callable[[], None] | None = None, *, attempts: int | None = None) -> T:
        """``func()``, retried while it raises ``BankTransientError``; a bank error it ends with (a missing
        object is an answer, not an error) is counted by bank and ``operation`` (:mod:`strongroom.metrics`)."""
        try:
            return self._attempts(what, func, before_retry, attempts or self.max_attempts)
        except exceptions.BankObjectNotFound:
            raise
        except exceptions.BankError:
            metrics.bank_error(self.name, operation)
            raise

    def _attempts(self, what: str, func: Callable[[], T], before_retry: Callable[[], None] | None,
                  attempts: int) -> T:
        waits = self.delays()
        for attempt in range(1, attempts + 1):
            try:
                return func()
            except exceptions.BankTransientError as err:
                if attempt == attempts:
                    raise
                delay = waits[attempt - 1]
                LOG.warning("%s failed (attempt %d of %d), retrying in %.2fs: %s",
                            what, attempt, self.max_attempts, delay, err)
                self._sleep(delay)
                if before_retry is not None:
                    before_retry()
        raise AssertionError("unreachable")  # pragma: no cover

    def put_object(self, key: str, data: bytes | IO[bytes],
                   metadata: Mapping[str, str] | None = None) -> None:
        rewind: Callable[[], None] | None = None
        if not isinstance(data, bytes | bytearray | memoryview):
            rewind = _rewinder(data)
            if rewind is None:
                # A stream we cannot rewind: one attempt only.
                self._call("put_object", f"put {key!r}", lambda: self.inner.put_object(key, data, metadata),
                           attempts=1)
                return
        self._call("put_object", f"put {key!r}", lambda: self.inner.put_object(key, data, metadata), rewind)

    def put_object_deferred(self, key: str, data: bytes, metadata: Mapping[str, str] | None = None) -> None:
        self._call("put_object_deferred", f"put {key!r}",
                   lambda: self.inner.put_object_deferred(key, data, metadata))

    def barrier(self) -> None:
        self._call("barrier", "make the bank's recent writes durable", self.inner.barrier)

    def reclaim_temporaries(self, prefix: str, dry_run: bool = False) -> list[str]:
        return self._call("reclaim_temporaries", f"remove unfinished writes under {prefix!r}",
                          lambda: self.inner.reclaim_temporaries(prefix, dry_run=dry_run))

    def get_object(self, key: str) -> bytes:
        return self._call("get_object", f"get {key!r}", lambda: self.inner.get_object(key))

    def open_object(self, key: str) -> IO[bytes]:
        return self._call("open_object", f"open {key!r}", lambda: self.inner.open_object(key))

    def head_object(self, key: str) -> ObjectInfo:
        return self._call("head_object", f"head {key!r}", lambda: self.inner.head_object(key))

    def object_exists(self, key: str) -> bool:
        return self._call("object_exists", f"exists {key!r}", lambda: self.inner.object_exists(key))

    def objects_exist(self, keys: Sequence[str]) -> list[bool]:
        if type(self.inner).objects_exist is BankPlugin.objects_exist:
            return BankPlugin.objects_exist(self, keys)  # concurrent questions, each retried on its own
        return self._call("objects_exist", f"exists ({len(keys)} keys)", lambda: self.inner.objects_exist(keys))

    def delete_object(self, key: str) -> None:
        self._call("delete_object", f"delete {key!r}", lambda: self.inner.delete_object(key))

    def list_objects(self, prefix: str = "", marker: str | None = None,
                     limit: int | None = None) -> list[str]:
        return self._call("list_objects", f"list {prefix!r}",
                          lambda: self.inner.list_objects(prefix, marker, limit))

    def put_expiring_object(self, key: str, data: bytes, metadata: Mapping[str, str] | None,
                            delete_after: int) -> None:
        self._call("put_expiring_object", f"put {key!r}",
                   lambda: self.inner.put_expiring_object(key, data, metadata, delete_after))

    def server_time(self) -> _dt.datetime | None:
        return self._call("server_time", "read the bank's clock", self.inner.server_time)

    def lock_object(self, key: str, until: _dt.datetime, mode: str | None = None) -> _dt.datetime:
        return self._call("lock_object", f"lock {key!r}", lambda: self.inner.lock_object(key, until, mode))

    def object_lock(self, key: str) -> _dt.datetime | None:
        return self._call("object_lock", f"read the lock of {key!r}", lambda: self.inner.object_lock(key))

    def close(self) -> None:
        self.inner.close()


def _rewinder(stream: IO[bytes]) -> Callable[[], None] | None:
    """A function that seeks ``stream`` back to where it is now, or None if it cannot."""
    try:
        if not stream.seekable():
            return None
        position = stream.tell()
    except (OSError, AttributeError, ValueError):
        return None

    def rewind() -> None:
        stream.seek(position)

    return rewind
