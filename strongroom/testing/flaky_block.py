"""A flaky block backend: wraps any :class:`~strongroom.block.base.BlockBackend` and injects faults.

The fake that ships beside :mod:`strongroom.testing.block` (as kopia's ``blobtesting`` does beside its
storage tests), so retry layers, the data mover and the protection flows can be tested against failures a
real array produces, and so a wrapper is checked by the same conformance suite as a backend::

    from strongroom.testing.flaky_block import Fault, FaultKind, FlakyBlockBackend, Method, on

    backend = FlakyBlockBackend(MemoryBlockBackend(), [
        Fault(on("read"), rate=0.1),                                         # 10 % of reads, transient
        Fault(on("write"), kind=FaultKind.PERMANENT, after_bytes=64 << 20),  # every write past 64 MiB
        Fault(on("create_snapshot"), when=lambda call: call.target == "vol-2", times=1),
    ], seed=7)
    ...
    assert backend.injected[Method.READ] > 0

Each call on the backend, and on the readers and writers it opens, is checked against the faults in order;
the first that matches decides.  A fault matches a call when the method is one of its ``methods`` (all
methods if empty), its ``when`` predicate (if any; called under the backend's lock) accepts the
:class:`Call`, the bytes read (for ``read``/``allocated_extents``) or written (for ``write``/``flush``)
through the backend so far reach ``after_bytes`` (if set), it has fired fewer than ``times`` times (if set),
and a draw from the backend's own ``random.Random(seed)`` falls under ``rate`` (no draw at rate 1).

A matching fault raises :class:`InjectedTransientError` (a :class:`~strongroom.exceptions.TransientError`,
so retry wrappers retry it), :class:`InjectedPermanentError`, or the exception its ``error`` factory builds,
before the call reaches the wrapped backend (a failed write writes nothing); a ``DELAY`` fault sleeps
``delay`` seconds through the injected ``sleep`` and then makes the call.  With no faults, or only zero
rates, the wrapper is transparent.

Counters (all under one lock, so threads may share the backend): :attr:`FlakyBlockBackend.calls` and
:attr:`FlakyBlockBackend.injected` per method, :attr:`FlakyBlockBackend.injections` (the calls that were
hit), and the bytes read and written through it.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from strongroom import exceptions
from strongroom.block.base import BackendStats, BlockBackend, BlockReader, BlockWriter, Extent, Snapshot, Volume


class Method(enum.StrEnum):
    """A call a fault can be injected into: the backend's methods and its handles'."""

    CREATE_VOLUME = "create_volume"
    PUBLISH_VOLUME = "publish_volume"
    DISCARD_VOLUME = "discard_volume"
    LIST_STAGED_VOLUMES = "list_staged_volumes"
    RECLAIM_LEFTOVERS = "reclaim_leftovers"
    LIST_VOLUMES = "list_volumes"
    GET_VOLUME = "get_volume"
    DESTROY_VOLUME = "destroy_volume"
    CREATE_SNAPSHOT = "create_snapshot"
    LIST_SNAPSHOTS = "list_snapshots"
    DELETE_SNAPSHOT = "delete_snapshot"
    CHANGED_EXTENTS = "changed_extents"
    EXTEND_VOLUME = "extend_volume"
    OPEN_SNAPSHOT = "open_snapshot"
    OPEN_VOLUME_READER = "open_volume_reader"
    OPEN_VOLUME_WRITER = "open_volume_writer"
    CHECK_OVERWRITE = "check_overwrite"
    OPEN_VOLUME_OVERWRITER = "open_volume_overwriter"
    STATS = "stats"
    #: ``BlockReader.allocated_extents``
    ALLOCATED_EXTENTS = "allocated_extents"
    #: ``BlockReader.read``
    READ = "read"
    #: ``BlockWriter.write``
    WRITE = "write"
    #: ``BlockWriter.flush``
    FLUSH = "flush"


class FaultKind(enum.Enum):
    TRANSIENT = "transient"  # raise InjectedTransientError: a retry may succeed
    PERMANENT = "permanent"  # raise InjectedPermanentError: it will not
    DELAY = "delay"  # sleep, then make the call (a slow array)


class InjectedPermanentError(exceptions.BlockError):
    """Block backend error: {reason}"""


class InjectedTransientError(exceptions.BlockError, exceptions.TransientError):
    """Block backend error: {reason}"""


@dataclasses.dataclass(frozen=True)
class Call:
    """One call as a fault sees it."""

    method: Method
    #: The volume or snapshot id the call is about (None for listings and ``stats``).
    target: str | None
    #: Bytes read (for reads and extent queries) or written (for writes and flushes) through the backend
    #: before this call; 0 for other methods.
    bytes_before: int
    #: The positional arguments after the target (e.g. ``(offset, length)`` of a read).
    args: tuple[Any, ...] = ()


@dataclasses.dataclass(frozen=True)
class Fault:
    """When to fail (or slow down) a call, and how."""

    methods: frozenset[Method] = frozenset()  # empty: every method
    rate: float = 1.0  # chance per matching call
    kind: FaultKind = FaultKind.TRANSIENT
    when: Callable[[Call], bool] | None = None
    after_bytes: int | None = None
    times: int | None = None  # fire at most this often
    delay: float = 0.0  # seconds, for FaultKind.DELAY
    error: Callable[[Call], Exception] | None = None  # replaces the Injected*Error of a failing kind

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", frozenset(Method(m) for m in self.methods))
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate {self.rate} must be within [0, 1]")
        if self.after_bytes is not None and self.after_bytes < 0:
            raise ValueError(f"after_bytes {self.after_bytes} must not be negative")
        if self.times is not None and self.times < 0:
            raise ValueError(f"times {self.times} must not be negative")
        if self.kind is FaultKind.DELAY and self.delay <= 0:
            raise ValueError("a DELAY fault needs a positive delay")

    def matches(self, call: Call) -> bool:
        """Everything but the count and the draw (which :class:`FlakyBlockBackend` owns)."""
        if self.methods and call.method not in self.methods:
            return False
        if self.after_bytes is not None and call.bytes_before < self.after_bytes:
            return False
        return self.when is None or self.when(call)

    def exception(self, call: Call) -> Exception:
        if self.error is not None:
            return self.error(call)
        what = f"{call.method.value} of {call.target}" if call.target else call.method.value
        reason = f"injected {self.kind.value} fault in {what}"
        if self.kind is FaultKind.PERMANENT:
            return InjectedPermanentError(reason=reason)
        return InjectedTransientError(reason=reason)


class FlakyBlockBackend(BlockBackend):
    """``inner`` with :class:`Fault` s injected; every other attribute (``describe``, ...) is ``inner``'s."""

    def __init__(self, inner: BlockBackend, faults: Sequence[Fault] = (), *, seed: int = 0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        self.inner = inner
        self.options = inner.options
        self.faults = tuple(faults)
        self._sleep = sleep
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._fired = [0] * len(self.faults)
        self.calls: collections.Counter[Method] = collections.Counter()
        self.injected: collections.Counter[Method] = collections.Counter()
        self.injections: list[Call] = []
        self.bytes_read = 0
        self.bytes_written = 0

    @property
    def placement_keys(self) -> frozenset[str]:  # type: ignore[override]  # the inner backend's
        return self.inner.placement_keys

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.inner.kind

    def __repr__(self) -> str:  # the inner repr already hides secrets
        return f"{type(self).__name__}({self.inner!r})"

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (half-built): never recurse
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def injected_total(self) -> int:
        with self._lock:
            return sum(self.injected.values())

    # -- the one place a fault is decided --------------------------------------

    def check(self, method: Method, target: str | None = None, *args: Any) -> None:
        """Count the call; raise (or sleep) if a fault fires.  Handles call this before each operation."""
        delay = 0.0
        with self._lock:
            self.calls[method] += 1
            if method in (Method.READ, Method.ALLOCATED_EXTENTS):
                moved = self.bytes_read
            elif method in (Method.WRITE, Method.FLUSH):
                moved = self.bytes_written
            else:
                moved = 0
            call = Call(method, target, moved, args)
            fault = self._pick(call)
            if fault is None:
                return
            self.injected[method] += 1
            self.injections.append(call)
            if fault.kind is FaultKind.DELAY:
                delay = fault.delay
            else:
                raise fault.exception(call)
        self._sleep(delay)

    def _pick(self, call: Call) -> Fault | None:
        for i, fault in enumerate(self.faults):
            if not fault.matches(call):
                continue
            if fault.times is not None and self._fired[i] >= fault.times:
                continue
            if fault.rate < 1.0 and self._random.random() >= fault.rate:
                continue
            self._fired[i] += 1
            return fault
        return None

    def moved(self, method: Method, nbytes: int) -> None:
        with self._lock:
            if method is Method.READ:
                self.bytes_read += nbytes
            else:
                self.bytes_written += nbytes

    # -- volumes -----------------------------------------------------------

    def create_volume(self, size: int, name: str | None = None, *, staged: bool = False,
                      placement: Mapping[str, str] | None = None) -> Volume:
        self.check(Method.CREATE_VOLUME, name, size)
        return self.inner.create_volume(size, name, staged=staged, placement=placement)

    def publish_volume(self, volume_id: str) -> Volume:
        self.check(Method.PUBLISH_VOLUME, volume_id)
        return self.inner.publish_volume(volume_id)

    def discard_volume(self, volume_id: str) -> None:
        self.check(Method.DISCARD_VOLUME, volume_id)
        self.inner.discard_volume(volume_id)

    def list_staged_volumes(self) -> list[Volume]:
        self.check(Method.LIST_STAGED_VOLUMES)
        return self.inner.list_staged_volumes()

    def reclaim_leftovers(self) -> list[str]:
        self.check(Method.RECLAIM_LEFTOVERS)
        return self.inner.reclaim_leftovers()

    def list_volumes(self) -> list[Volume]:
        self.check(Method.LIST_VOLUMES)
        return self.inner.list_volumes()

    def get_volume(self, volume_id: str) -> Volume:
        self.check(Method.GET_VOLUME, volume_id)
        return self.inner.get_volume(volume_id)

    def destroy_volume(self, volume_id: str) -> None:
        self.check(Method.DESTROY_VOLUME, volume_id)
        self.inner.destroy_volume(volume_id)

    # -- snapshots ---------------------------------------------------------

    def create_snapshot(self, volume_id: str, tags: Mapping[str, str] | None = None) -> Snapshot:
        self.check(Method.CREATE_SNAPSHOT, volume_id)
        return self.inner.create_snapshot(volume_id, tags)

    def list_snapshots(self, volume_id: str | None = None) -> list[Snapshot]:
        self.check(Method.LIST_SNAPSHOTS, volume_id)
        return self.inner.list_snapshots(volume_id)

    def delete_snapshot(self, snapshot_id: str) -> None:
        self.check(Method.DELETE_SNAPSHOT, snapshot_id)
        self.inner.delete_snapshot(snapshot_id)

    def changed_extents(self, snapshot_id: str, base_snapshot_id: str) -> Iterator[Extent] | None:
        self.check(Method.CHANGED_EXTENTS, snapshot_id)
        return self.inner.changed_extents(snapshot_id, base_snapshot_id)

    def extend_volume(self, volume_id: str, size: int) -> Volume:
        self.check(Method.EXTEND_VOLUME, volume_id)
        return self.inner.extend_volume(volume_id, size)

    # -- data --------------------------------------------------------------

    def open_snapshot(self, snapshot_id: str) -> BlockReader:
        self.check(Method.OPEN_SNAPSHOT, snapshot_id)
        return FlakyReader(self, self.inner.open_snapshot(snapshot_id), snapshot_id)

    def open_volume_reader(self, volume_id: str) -> BlockReader:
        self.check(Method.OPEN_VOLUME_READER, volume_id)
        return FlakyReader(self, self.inner.open_volume_reader(volume_id), volume_id)

    def open_volume_writer(self, volume_id: str) -> BlockWriter:
        self.check(Method.OPEN_VOLUME_WRITER, volume_id)
        return FlakyWriter(self, self.inner.open_volume_writer(volume_id), volume_id)

    def check_overwrite(self, volume_id: str) -> Volume:
        self.check(Method.CHECK_OVERWRITE, volume_id)
        return self.inner.check_overwrite(volume_id)

    def open_volume_overwriter(self, volume_id: str) -> BlockWriter:
        self.check(Method.OPEN_VOLUME_OVERWRITER, volume_id)
        return FlakyWriter(self, self.inner.open_volume_overwriter(volume_id), volume_id)

    # -- capacity ----------------------------------------------------------

    def stats(self) -> BackendStats:
        self.check(Method.STATS)
        return self.inner.stats()

    def close(self) -> None:
        self.inner.close()


class FlakyReader(BlockReader):
    def __init__(self, backend: FlakyBlockBackend, inner: BlockReader, target: str) -> None:
        self._backend = backend
        self._inner = inner
        self._target = target
        self.size = inner.size

    def allocated_extents(self) -> Iterator[Extent]:
        self._backend.check(Method.ALLOCATED_EXTENTS, self._target)
        return self._inner.allocated_extents()

    def read(self, offset: int, length: int) -> bytes:
        self._backend.check(Method.READ, self._target, offset, length)
        data = self._inner.read(offset, length)
        self._backend.moved(Method.READ, len(data))
        return data

    def prefetch(self, offset: int, length: int) -> None:
        self._inner.prefetch(offset, length)  # a hint: never a fault

    def close(self) -> None:
        self._inner.close()


class FlakyWriter(BlockWriter):
    def __init__(self, backend: FlakyBlockBackend, inner: BlockWriter, target: str) -> None:
        self._backend = backend
        self._inner = inner
        self._target = target
        self.size = inner.size

    def write(self, offset: int, data: bytes) -> None:
        self._backend.check(Method.WRITE, self._target, offset, len(data))
        self._inner.write(offset, data)
        self._backend.moved(Method.WRITE, len(data))

    def write_zeros(self, offset: int, length: int) -> None:
        self._backend.check(Method.WRITE, self._target, offset, length)
        self._inner.write_zeros(offset, length)
        self._backend.moved(Method.WRITE, length)

    def flush(self) -> None:
        self._backend.check(Method.FLUSH, self._target)
        self._inner.flush()

    def close(self) -> None:
        self._inner.close()


def on(*methods: Method | str) -> frozenset[Method]:
    """``Fault(on("read", "write"), ...)``: the methods by name (unknown names raise ``ValueError``)."""
    return frozenset(Method(m) for m in methods)
