"""The flaky block backend injects what it is told to, where it is told to, and counts it."""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable

import pytest

from strongroom import exceptions
from strongroom.block.loopback import METHOD_SPARSE_COPY, LoopbackBackend
from strongroom.block.memory import MemoryBlockBackend
from strongroom.testing.block import MiB, pattern
from strongroom.testing.flaky_block import (
    Call,
    Fault,
    FaultKind,
    FlakyBlockBackend,
    InjectedPermanentError,
    InjectedTransientError,
    Method,
    on,
)


def flaky(*faults: Fault, seed: int = 0, sleep: Callable[[float], None] = time.sleep) -> FlakyBlockBackend:
    return FlakyBlockBackend(MemoryBlockBackend(), faults, seed=seed, sleep=sleep)


def test_transient_and_permanent_faults_are_told_apart() -> None:
    backend = flaky(Fault(on("create_volume")), Fault(on("create_snapshot"), kind=FaultKind.PERMANENT))
    with pytest.raises(InjectedTransientError, match="injected transient fault in create_volume of v1") as info:
        backend.create_volume(MiB, name="v1")
    assert isinstance(info.value, exceptions.TransientError)
    assert isinstance(info.value, exceptions.BlockError)
    assert backend.inner.list_volumes() == []  # the call was not made

    volume = backend.inner.create_volume(MiB, name="v2")
    with pytest.raises(InjectedPermanentError, match=f"create_snapshot of {volume.id}") as err:
        backend.create_snapshot(volume.id)
    assert not isinstance(err.value, exceptions.TransientError)
    assert backend.inner.list_snapshots() == []
    assert backend.injected == {Method.CREATE_VOLUME: 1, Method.CREATE_SNAPSHOT: 1}
    assert [c.method for c in backend.injections] == [Method.CREATE_VOLUME, Method.CREATE_SNAPSHOT]


def test_only_the_chosen_methods_fail() -> None:
    backend = flaky(Fault(on("write")))
    volume = backend.create_volume(MiB)
    with backend.writing_volume(volume.id) as writer:
        with pytest.raises(InjectedTransientError, match=f"write of {volume.id}"):
            writer.write(0, b"data")
        writer.flush()
    with backend.reading_snapshot(backend.create_snapshot(volume.id).id) as reader:
        assert reader.read(0, 4) == bytes(4)  # the failed write wrote nothing
        assert list(reader.allocated_extents()) == []
    assert backend.injected_total == 1
    assert backend.calls[Method.WRITE] == backend.calls[Method.READ] == backend.calls[Method.ALLOCATED_EXTENTS] == 1


def test_seeded_rate_is_reproducible_and_about_right() -> None:
    def outcomes(seed: int) -> list[bool]:
        backend = flaky(Fault(on("get_volume"), rate=0.3), seed=seed)
        volume = backend.create_volume(MiB)
        results = []
        for _ in range(1000):
            try:
                backend.get_volume(volume.id)
                results.append(True)
            except InjectedTransientError:
                results.append(False)
        assert backend.injected[Method.GET_VOLUME] == results.count(False)
        return results

    first = outcomes(seed=42)
    assert outcomes(seed=42) == first
    assert outcomes(seed=43) != first
    assert 230 <= first.count(False) <= 370


def test_zero_rate_never_fires_and_rate_one_always_does() -> None:
    backend = flaky(Fault(on("stats"), rate=0.0), Fault(on("list_volumes"), rate=1.0))
    for _ in range(50):
        backend.stats()
        with pytest.raises(InjectedTransientError):
            backend.list_volumes()
    assert backend.injected == {Method.LIST_VOLUMES: 50}
    assert backend.calls[Method.STATS] == 50


def test_reads_fail_once_enough_bytes_were_read() -> None:
    backend = flaky(Fault(on("read"), kind=FaultKind.PERMANENT, after_bytes=3 * 4096))
    volume = backend.create_volume(MiB)
    with backend.writing_volume(volume.id) as writer:
        writer.write(0, pattern(MiB))
    reader = backend.open_volume_reader(volume.id)
    with reader:
        for n in range(3):
            assert reader.read(n * 4096, 4096) == pattern(MiB)[n * 4096:(n + 1) * 4096]
        with pytest.raises(InjectedPermanentError) as info:
            reader.read(3 * 4096, 4096)
    assert backend.bytes_read == 3 * 4096
    [call] = backend.injections
    assert call == Call(Method.READ, volume.id, 3 * 4096, (3 * 4096, 4096))
    assert "read of" in str(info.value)


def test_writes_fail_once_enough_bytes_were_written_and_write_nothing() -> None:
    backend = flaky(Fault(on("write"), after_bytes=10_000))
    volume = backend.create_volume(MiB)
    with backend.writing_volume(volume.id) as writer:
        writer.write(0, pattern(6000))
        writer.write(6000, pattern(6000, seed=2))  # 6000 written before it: still below the threshold
        with pytest.raises(InjectedTransientError):
            writer.write(12_000, pattern(100, seed=3))
    assert backend.bytes_written == 12_000
    with backend.inner.reading_snapshot(backend.inner.create_snapshot(volume.id).id) as reader:
        assert reader.read(12_000, 100) == bytes(100)


def test_predicate_and_times_pick_the_calls() -> None:
    inner = MemoryBlockBackend()
    a, b = inner.create_volume(MiB), inner.create_volume(MiB)
    backend = FlakyBlockBackend(inner, [Fault(on("create_snapshot"), when=lambda c: c.target == b.id, times=2)])
    backend.create_snapshot(a.id)
    for _ in range(2):
        with pytest.raises(InjectedTransientError):
            backend.create_snapshot(b.id)
    assert backend.create_snapshot(b.id).volume_id == b.id  # spent
    assert backend.injected[Method.CREATE_SNAPSHOT] == 2
    assert {c.target for c in backend.injections} == {b.id}


def test_first_matching_fault_decides() -> None:
    backend = flaky(Fault(on("get_volume"), kind=FaultKind.PERMANENT, times=1), Fault(on("get_volume")))
    volume = backend.inner.create_volume(MiB)
    with pytest.raises(InjectedPermanentError):
        backend.get_volume(volume.id)
    with pytest.raises(InjectedTransientError):
        backend.get_volume(volume.id)


def test_custom_error() -> None:
    def pool_full(call: Call) -> Exception:
        return exceptions.BlockError(reason=f"snapshot of {call.target} failed: pool is full")

    backend = flaky(Fault(on("create_snapshot"), kind=FaultKind.PERMANENT, error=pool_full))
    volume = backend.create_volume(MiB, name="v")
    with pytest.raises(exceptions.BlockError, match=f"snapshot of {volume.id} failed: pool is full"):
        backend.create_snapshot(volume.id)


def test_delay_sleeps_through_the_injected_sleep_then_calls() -> None:
    slept: list[float] = []
    backend = flaky(Fault(on("open_volume_reader"), kind=FaultKind.DELAY, delay=2.5), sleep=slept.append)
    volume = backend.create_volume(MiB)
    with backend.open_volume_reader(volume.id) as reader:
        assert reader.size == MiB
    assert slept == [2.5]
    assert backend.injected[Method.OPEN_VOLUME_READER] == 1


def test_faults_are_checked_when_made() -> None:
    with pytest.raises(ValueError):
        on("reed")
    with pytest.raises(ValueError):
        Fault(rate=1.5)
    with pytest.raises(ValueError):
        Fault(after_bytes=-1)
    with pytest.raises(ValueError):
        Fault(kind=FaultKind.DELAY)
    assert Fault(methods=frozenset({"read"})).methods == {Method.READ}  # type: ignore[arg-type]


def test_wraps_any_backend_and_delegates_its_extras(tmp_path: pathlib.Path) -> None:
    inner = LoopbackBackend({"path": str(tmp_path / "images")})
    backend = FlakyBlockBackend(inner)
    volume = backend.create_volume(MiB, name="disk")
    snapshot = backend.create_snapshot(volume.id)
    assert backend.snapshot_method(snapshot.id) in (METHOD_SPARSE_COPY, "reflink")
    assert backend.describe()["backend"] == "loopback"
    assert backend.options == inner.options
    assert repr(backend) == f"FlakyBlockBackend({inner!r})"
    backend.delete_snapshot(snapshot.id)
    backend.destroy_volume(volume.id)
    assert backend.injected_total == 0


def test_secrets_stay_hidden() -> None:
    backend = FlakyBlockBackend(MemoryBlockBackend({"password": "hunter2"}))
    assert "hunter2" not in repr(backend)
