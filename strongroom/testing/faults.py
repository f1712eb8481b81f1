"""A fault-injecting bank: wraps any :class:`BankPlugin` and makes chosen calls fail or wait.

For tests of what sits above a bank (retries, leases, garbage collection, the
data mover) and for plugin authors who want to see their wrappers survive a
flaky store (after kopia's ``blobtesting`` fakes)::

    from strongroom.testing.faults import Fault, FaultyBank

    faulty = FaultyBank(MemoryBank(), seed=7)
    faulty.inject(Fault.TRANSIENT, rate=0.2)                      # one call in five, seeded
    faulty.inject(Fault.PERMANENT, operations={"put_object"},
                  when=lambda call: call.key.startswith("leases/"))  # by a predicate
    faulty.inject(Fault.TRANSIENT, times=2, after=True)            # the next two answers are lost
    faulty.inject(Fault.OS_ERROR, errno=errno.ENOSPC,              # a full disk, as a file-backed
                  operations={"put_object"})                      # bank reports it (BankFull)
    ...
    assert faulty.injected[Fault.TRANSIENT] > 0

Rules are checked in the order they were added; the first that fires decides.
A fault *before* the call leaves the bank untouched (a put from a stream may
first consume ``consume`` bytes of it, like a dropped upload); a fault
``after`` it loses the answer of a call that took effect.  Latency sleeps
through the injected ``sleep`` and then lets the call proceed.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import enum
import os
import random
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import IO, TypeVar

from strongroom import exceptions
from strongroom.bank_plugins.base import BankPlugin, ObjectInfo

T = TypeVar("T")

#: The bank operations a rule can target.
OPERATIONS = frozenset({"put_object", "put_expiring_object", "get_object", "open_object", "head_object",
                        "object_exists", "delete_object", "list_objects", "server_time", "lock_object",
                        "object_lock"})


class Fault(enum.Enum):
    TRANSIENT = "transient"  #: ``BankTransientError``: a retry may succeed
    PERMANENT = "permanent"  #: ``BankError``: retrying is pointless
    LATENCY = "latency"  #: the call waits ``delay`` seconds, then proceeds
    #: The ``OSError`` of ``errno`` as a file-backed bank maps it (``exceptions.bank_error_from_os``):
    #: ``ENOSPC`` is ``BankFull``, ``EROFS`` ``BankNotWritable``, ``EAGAIN`` transient, ``EIO`` a ``BankError``.
    OS_ERROR = "os-error"


@dataclasses.dataclass(frozen=True)
class Call:
    """One call to the bank, as a rule's predicate sees it."""

    operation: str
    #: The object's key (the prefix for ``list_objects``; ``""`` for ``server_time``).
    key: str
    #: The value of a put (bytes or a stream); None for other operations.
    data: bytes | IO[bytes] | None = None
    #: How many calls the bank had seen before this one.
    number: int = 0

    @property
    def streamed(self) -> bool:
        """A put whose value is a stream (not bytes)."""
        return self.data is not None and not isinstance(self.data, bytes | bytearray | memoryview)

    @property
    def replayable(self) -> bool:
        """False for a put from a stream that cannot seek back (no wrapper can retry it)."""
        if not self.streamed:
            return True
        try:
            return bool(self.data.seekable())  # type: ignore[union-attr]
        except (AttributeError, OSError, ValueError):
            return False


@dataclasses.dataclass
class Rule:
    """When to inject one kind of fault (see :meth:`FaultyBank.inject`)."""

    fault: Fault
    operations: frozenset[str]
    rate: float = 1.0
    when: Callable[[Call], bool] | None = None
    times: int | None = None
    after: bool = False
    delay: float = 0.0
    consume: int = 0
    errno: int = 0
    #: How many times this rule fired.
    fired: int = 0

    def matches(self, call: Call) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.operations and call.operation not in self.operations:
            return False
        return self.when is None or self.when(call)


class FaultyBank(BankPlugin):
    """Delegates every call to ``inner``, injecting the faults its rules choose.

    ``seed`` makes rate-based faults reproducible (per sequence of calls);
    ``sleep`` is what latency waits with (inject a fake clock's in unit tests).
    Counters: :attr:`calls` per operation, :attr:`injected` per fault kind,
    :attr:`log` the injected faults in order.
    """

    def __init__(self, inner: BankPlugin, *, seed: int = 0, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        self.options = inner.options
        self.inner = inner
        self.supports_expiry = inner.supports_expiry
        self.supports_object_lock = inner.supports_object_lock
        self.rules: list[Rule] = []
        self.calls: collections.Counter[str] = collections.Counter()
        self.injected: collections.Counter[Fault] = collections.Counter()
        self.log: list[tuple[Fault, Call]] = []
        self._random = random.Random(seed)
        self._sleep = sleep
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FaultyBank({self.inner!r}, rules={len(self.rules)})"

    # -- rules ----------------------------------------------------------------

    def inject(self, fault: Fault, *, operations: Collection[str] = (), rate: float = 1.0,
               when: Callable[[Call], bool] | None = None, times: int | None = None, after: bool = False,
               delay: float = 0.0, consume: int = 0, errno: int = 0) -> Rule:
        """Add a rule: inject ``fault`` into calls of ``operations`` (empty: every operation).

        It fires on a call with probability ``rate`` (seeded), if ``when(call)``
        holds, at most ``times`` times; ``after`` makes it fire once the call
        took effect.  ``delay`` is the latency of :attr:`Fault.LATENCY`;
        ``consume`` bytes of a streamed put are read before a fault before it;
        ``errno`` is the error number of :attr:`Fault.OS_ERROR`.
        """
        unknown = set(operations) - OPERATIONS
        if unknown:
            raise ValueError(f"not bank operations: {sorted(unknown)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], not {rate}")
        if (fault is Fault.OS_ERROR) != bool(errno):
            raise ValueError("errno is given with Fault.OS_ERROR, and only with it")
        rule = Rule(fault, frozenset(operations), rate=rate, when=when, times=times, after=after,
                    delay=delay, consume=consume, errno=errno)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule (the counters stay)."""
        with self._lock:
            self.rules.clear()

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def _choose(self, call: Call, after: bool) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.after != after or not rule.matches(call):
                    continue
                if rule.rate < 1.0 and self._random.random() >= rule.rate:
                    continue
                rule.fired += 1
                self.injected[rule.fault] += 1
                self.log.append((rule.fault, call))
                return rule
        return None

    def _fire(self, rule: Rule, call: Call) -> None:
        if rule.fault is Fault.LATENCY:
            self._sleep(rule.delay)
            return
        where = "after" if rule.after else "before"
        reason = f"injected {rule.fault.value} fault {where} {call.operation} {call.key!r} (call {call.number})"
        if rule.fault is Fault.TRANSIENT:
            raise exceptions.BankTransientError(reason=reason)
        if rule.fault is Fault.OS_ERROR:
            cause = os.strerror(rule.errno)
            raise exceptions.bank_error_from_os(OSError(rule.errno, cause), f"{reason}: {cause}")
        raise exceptions.BankError(reason=reason)

    def _run(self, operation: str, key: str, func: Callable[[], T], data: bytes | IO[bytes] | None = None,
             discard: Callable[[T], None] | None = None) -> T:
        with self._lock:
            self.calls[operation] += 1
            number = sum(self.calls.values())
        call = Call(operation, key, data, number)
        rule = self._choose(call, after=False)
        if rule is not None:
            if rule.consume and call.streamed and rule.fault is not Fault.LATENCY:
                data.read(rule.consume)  # type: ignore[union-attr]
            self._fire(rule, call)
        result = func()
        rule = self._choose(call, after=True)
        if rule is not None:
            try:
                self._fire(rule, call)
            except exceptions.BankError:
                if discard is not None:
                    discard(result)
                raise
        return result

    # -- the bank interface ------------------------------------------------------

    def put_object(self, key: str, data: bytes | IO[bytes], metadata: Mapping[str, str] | None = None) -> None:
        self._run("put_object", key, lambda: self.inner.put_object(key, data, metadata), data)

    def put_expiring_object(self, key: str, data: bytes, metadata: Mapping[str, str] | None,
                            delete_after: int) -> None:
        self._run("put_expiring_object", key,
                  lambda: self.inner.put_expiring_object(key, data, metadata, delete_after), data)

    def get_object(self, key: str) -> bytes:
        return self._run("get_object", key, lambda: self.inner.get_object(key))

    def open_object(self, key: str) -> IO[bytes]:
        return self._run("open_object", key, lambda: self.inner.open_object(key), discard=lambda s: s.close())

    def head_object(self, key: str) -> ObjectInfo:
        return self._run("head_object", key, lambda: self.inner.head_object(key))

    def object_exists(self, key: str) -> bool:
        return self._run("object_exists", key, lambda: self.inner.object_exists(key))

    def delete_object(self, key: str) -> None:
        self._run("delete_object", key, lambda: self.inner.delete_object(key))

    def list_objects(self, prefix: str = "", marker: str | None = None, limit: int | None = None) -> list[str]:
        return self._run("list_objects", prefix, lambda: self.inner.list_objects(prefix, marker, limit))

    def lock_object(self, key: str, until: _dt.datetime, mode: str | None = None) -> _dt.datetime:
        return self._run("lock_object", key, lambda: self.inner.lock_object(key, until, mode))

    def object_lock(self, key: str) -> _dt.datetime | None:
        return self._run("object_lock", key, lambda: self.inner.object_lock(key))

    def server_time(self) -> _dt.datetime | None:
        return self._run("server_time", "", self.inner.server_time)

    def close(self) -> None:
        self.inner.close()


def fails_transiently(inner: BankPlugin, rate: float, *, seed: int = 0, lost_answers: float = 0.0) -> FaultyBank:
    """``inner`` failing a ``rate`` of its calls with ``BankTransientError`` before they take effect, and
    losing the answer of a ``lost_answers`` rate after, wherever a retrying wrapper can replay the call."""
    faulty = FaultyBank(inner, seed=seed)
    faulty.inject(Fault.TRANSIENT, rate=rate, when=lambda call: call.replayable, consume=3)
    if lost_answers:
        faulty.inject(Fault.TRANSIENT, rate=lost_answers, after=True, when=lambda call: call.replayable)
    return faulty
