"""Conformance suite for bank plugins (after restic's generic backend tests).

A bank author subclasses :class:`BankConformance` in a test module and
provides a factory returning a fresh, *empty* bank::

    from strongroom.testing.bank import BankConformance

    class TestMyBank(BankConformance):
        def make_bank(self, tmp_path):
            return MyBank({"endpoint": ..., "container": f"test-{tmp_path.name}"})

pytest then runs every ``test_*`` method below and in the mixins against it; each test gets its
own bank from ``make_bank`` and closes it afterwards.  Class attributes tune
the suite for slow backends (``large_object_size``, ``paging_key_count``,
``writer_threads``, ``lease_windows``...).  Parts of the suite live in their own
modules and are mixed in: the lease tests (:mod:`strongroom.testing.bank_leases`)
and the facade tests (:mod:`strongroom.testing.bank_facade`); the values and
streams they write are in :mod:`strongroom.testing.values`.  A fault-injecting
bank to wrap around a plugin is in :mod:`strongroom.testing.faults`.

The suite talks to the plugin directly (the raw contract of
:class:`strongroom.bank_plugins.base.BankPlugin`) except in the ``facade``
tests, which go through :class:`strongroom.bank_plugins.bank.Bank` as
components do.
"""

from __future__ import annotations

import concurrent.futures
import datetime as _dt
import hashlib
import io
import pathlib
import random
import tracemalloc
from collections.abc import Iterator
from typing import ClassVar

import pytest

from strongroom import exceptions
from strongroom.bank_plugins.bank import Bank
from strongroom.bank_plugins.base import BankPlugin
from strongroom.testing.bank_facade import FacadeConformance
from strongroom.testing.bank_leases import LeaseConformance
from strongroom.testing.values import (
    ORDER_TRAP_KEYS,
    MiB,
    PatternStream,
    StreamBroke,
    TrickleStream,
    byte_order,
    digest,
    pattern,
)

__all__ = [
    "ORDER_TRAP_KEYS",
    "BankConformance",
    "FacadeConformance",
    "LeaseConformance",
    "MiB",
    "PatternStream",
    "StreamBroke",
    "TrickleStream",
    "byte_order",
    "digest",
    "pattern",
]


class BankConformance(LeaseConformance, FacadeConformance):
    """Every behaviour :class:`BankPlugin` promises.  Subclass it as ``Test<YourBank>``."""

    #: Size of the big round-trip objects; lower it for slow remote banks.
    large_object_size: ClassVar[int] = 8 * MiB
    #: Number of keys written for the paging test.
    paging_key_count: ClassVar[int] = 2500
    #: Threads used by the concurrency test (and to write many keys quickly).
    writer_threads: ClassVar[int] = 8
    #: How far ``last_modified`` may be from this machine's clock.
    clock_skew_tolerance: ClassVar[_dt.timedelta] = _dt.timedelta(minutes=5)
    #: Size of the object streamed in and out in bounded memory.
    streamed_object_size: ClassVar[int] = 64 * MiB
    #: Python memory a streamed put or get may hold at its peak (None: not checked; the memory bank
    #: necessarily holds every value).
    stream_memory_limit: ClassVar[int | None] = 40 * MiB

    def make_bank(self, tmp_path: pathlib.Path) -> BankPlugin:
        """Return a fresh, empty bank.  Subclasses must override this."""
        raise NotImplementedError(f"{type(self).__name__} must define make_bank(tmp_path)")

    @pytest.fixture
    def bank(self, tmp_path: pathlib.Path) -> Iterator[BankPlugin]:
        plugin = self.make_bank(tmp_path)
        try:
            yield plugin
        finally:
            plugin.close()

    @pytest.fixture
    def facade(self, bank: BankPlugin) -> Bank:
        return Bank(bank, name="conformance")

    # -- helpers ------------------------------------------------------------

    def put_many(self, bank: BankPlugin, keys: list[str], value: bytes | None = None) -> None:
        """Write ``keys`` from several threads (each value defaults to the key itself)."""
        def put(key: str) -> None:
            bank.put_object(key, key.encode("utf-8", "surrogatepass") if value is None else value)

        with concurrent.futures.ThreadPoolExecutor(self.writer_threads) as pool:
            for future in [pool.submit(put, key) for key in keys]:
                future.result()

    # -- binary round trips -------------------------------------------------

    def test_new_bank_is_empty(self, bank: BankPlugin) -> None:
        assert bank.list_objects() == []

    @pytest.mark.parametrize("value", [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00", id="nul"),
        pytest.param(b"x", id="one-byte"),
        pytest.param(bytes(range(256)), id="all-bytes"),
        pytest.param(bytes(range(255, -1, -1)) * 3, id="all-bytes-reversed"),
        pytest.param(b"\xff\xfe\x00\x00invalid utf-8 \xc3\x28\r\n\x1a", id="invalid-utf8"),
    ])
    def test_binary_round_trip(self, bank: BankPlugin, value: bytes) -> None:
        bank.put_object("k/value", value)
        got = bank.get_object("k/value")
        assert type(got) is bytes
        assert got == value
        assert bank.head_object("k/value").size == len(value)
        with bank.open_object("k/value") as stream:
            assert stream.read() == value

    def test_large_value_round_trip(self, bank: BankPlugin) -> None:
        value = pattern(self.large_object_size, seed=7)
        bank.put_object("large", value)
        assert digest(bank.get_object("large")) == digest(value)
        assert bank.head_object("large").size == len(value)

    def test_value_given_as_stream(self, bank: BankPlugin) -> None:
        value = pattern(self.large_object_size + 12_345, seed=3)
        bank.put_object("from-bytesio", io.BytesIO(value), {"kind": "bytesio"})
        bank.put_object("from-socket-like", TrickleStream(value))  # type: ignore[arg-type]
        for key in ("from-bytesio", "from-socket-like"):
            assert digest(bank.get_object(key)) == digest(value), key
            assert bank.head_object(key).size == len(value)
        assert bank.head_object("from-bytesio").metadata == {"kind": "bytesio"}
        bank.put_object("empty-stream", io.BytesIO(b""))
        assert bank.get_object("empty-stream") == b""

    def test_large_object_streams_in_bounded_memory(self, bank: BankPlugin) -> None:
        size = self.streamed_object_size
        expected = PatternStream.expected_digest(size, seed=5)
        tracemalloc.start()
        try:
            bank.put_object("streamed/large", PatternStream(size, seed=5), {"kind": "large"})  # type: ignore[arg-type]
            _, put_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            h = hashlib.sha256()
            read = 0
            with bank.open_object("streamed/large") as stream:
                while piece := stream.read(MiB):
                    h.update(piece)
                    read += len(piece)
            _, get_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert read == size
        assert h.hexdigest() == expected
        info = bank.head_object("streamed/large")
        assert (info.size, dict(info.metadata)) == (size, {"kind": "large"})
        assert bank.list_objects(prefix="streamed/") == ["streamed/large"]
        if self.stream_memory_limit is not None:
            for what, peak in (("put", put_peak), ("get", get_peak)):
                assert peak < self.stream_memory_limit, f"{what} held {peak / MiB:.0f} MiB of {size // MiB} MiB"
        bank.delete_object("streamed/large")
        assert bank.list_objects() == []

    def test_open_object_streams_in_pieces(self, bank: BankPlugin) -> None:
        value = pattern(3 * MiB + 17, seed=11)
        bank.put_object("streamed", value, {"a": "b"})
        with bank.open_object("streamed") as stream:
            pieces = []
            while piece := stream.read(256 * 1024):
                assert len(piece) <= 256 * 1024
                pieces.append(piece)
        assert digest(b"".join(pieces)) == digest(value)

    def test_failed_put_leaves_previous_value(self, bank: BankPlugin) -> None:
        bank.put_object("stable", b"old value", {"v": "1"})
        broken = TrickleStream(pattern(2 * MiB), fail_after=MiB)
        with pytest.raises((StreamBroke, exceptions.BankError)):
            bank.put_object("stable", broken, {"v": "2"})  # type: ignore[arg-type]
        with pytest.raises((StreamBroke, exceptions.BankError)):
            bank.put_object("never-written", TrickleStream(pattern(2 * MiB), fail_after=MiB))  # type: ignore[arg-type]
        assert bank.get_object("stable") == b"old value"
        assert bank.head_object("stable").metadata == {"v": "1"}
        assert not bank.object_exists("never-written")
        assert bank.list_objects() == ["stable"]

    # -- overwrite, missing keys, delete ------------------------------------

    def test_overwrite_replaces_value_and_metadata(self, bank: BankPlugin) -> None:
        bank.put_object("k", b"first, longer value", {"colour": "red", "size": "big"})
        bank.put_object("k", b"second", {"colour": "blue"})
        assert bank.get_object("k") == b"second"
        info = bank.head_object("k")
        assert info.size == len(b"second")
        assert dict(info.metadata) == {"colour": "blue"}
        bank.put_object("k", b"")
        assert bank.get_object("k") == b""
        assert dict(bank.head_object("k").metadata) == {}
        assert bank.list_objects() == ["k"]

    @pytest.mark.parametrize("operation", ["get_object", "open_object", "head_object"])
    def test_missing_key_raises_not_found_naming_it(self, bank: BankPlugin, operation: str) -> None:
        bank.put_object("present/child", b"x")
        for missing in ("absent", "present", "present/child/deeper", "present/chil"):
            with pytest.raises(exceptions.BankObjectNotFound) as excinfo:
                getattr(bank, operation)(missing)
            assert missing in str(excinfo.value)

    def test_object_exists(self, bank: BankPlugin) -> None:
        assert not bank.object_exists("k")
        bank.put_object("k/child", b"v")
        assert bank.object_exists("k/child")
        assert not bank.object_exists("k")
        assert not bank.object_exists("k/chil")
        bank.put_object("k", b"")
        assert bank.object_exists("k")
        bank.delete_object("k/child")
        assert not bank.object_exists("k/child")
        assert bank.object_exists("k")

    def test_objects_exist_answers_each_key_in_order(self, bank: BankPlugin) -> None:
        keys = [f"many/{n:03d}" for n in range(40)]
        for key in keys[::3]:
            bank.put_object(key, b"v")
        bank.put_object_deferred("many/deferred", b"v")
        long_name = "many/" + "x" * 300  # longer than a file name may be
        bank.put_object(long_name, b"v")
        bank.put_object("many/sub/leaf", b"v")
        asked = [*keys, "many/deferred", "many", "many/0", long_name, long_name + "y", "many/sub", "many/sub/leaf"]
        assert bank.objects_exist(asked) == [bank.object_exists(key) for key in asked]
        assert bank.objects_exist(asked) == ([n % 3 == 0 for n in range(40)]
                                             + [True, False, False, True, False, False, True])
        assert bank.objects_exist([]) == []

    def test_deferred_put_is_seen_at_once_and_durable_after_barrier(self, bank: BankPlugin) -> None:
        bank.barrier()  # nothing deferred: a no-op
        bank.put_object_deferred("d/a", b"first", {"size": "5"})
        bank.put_object_deferred("d/b", b"second")
        assert bank.object_exists("d/a")
        assert bank.get_object("d/a") == b"first"
        assert dict(bank.head_object("d/a").metadata) == {"size": "5"}
        bank.put_object_deferred("d/b", b"again")  # idempotent; the last value wins
        bank.delete_object("d/a")
        assert not bank.object_exists("d/a")
        bank.barrier()
        assert bank.list_objects("d/") == ["d/b"]
        assert bank.get_object("d/b") == b"again"
        bank.barrier()

    def test_delete_is_idempotent_and_spares_neighbours(self, bank: BankPlugin) -> None:
        keys = ["a", "a/b", "a/b/c", "a-b", "ab"]
        for key in keys:
            bank.put_object(key, key.encode())
        bank.delete_object("a/b")
        bank.delete_object("a/b")
        bank.delete_object("never/existed/at/all")
        assert bank.list_objects() == byte_order(["a", "a/b/c", "a-b", "ab"])
        bank.delete_object("a/b/c")
        bank.delete_object("a")
        assert bank.list_objects() == ["a-b", "ab"]
        assert bank.get_object("ab") == b"ab"
        bank.put_object("a/b/c", b"again")  # the directories it lived in may have been removed
        assert bank.get_object("a/b/c") == b"again"

    # -- metadata, head -------------------------------------------------------

    def test_metadata_round_trip(self, bank: BankPlugin) -> None:
        metadata = {"status": "available", "owner-id": "7f9c", "empty": "", "unicode": "caf\u00e9 \u2713",
                    "long": "v" * 200, "spaces": " padded value "}
        bank.put_object("with-meta", b"value", metadata)
        assert dict(bank.head_object("with-meta").metadata) == metadata
        assert bank.get_object("with-meta") == b"value"
        bank.put_object("without-meta", b"value")
        assert dict(bank.head_object("without-meta").metadata) == {}

    def test_head_reports_size_and_aware_last_modified(self, bank: BankPlugin) -> None:
        before = _dt.datetime.now(_dt.UTC)
        bank.put_object("dir/obj", pattern(1000))
        info = bank.head_object("dir/obj")
        assert info.key == "dir/obj"
        assert info.size == 1000
        assert info.last_modified is not None
        assert info.last_modified.tzinfo is not None
        assert info.last_modified.utcoffset() is not None
        assert abs(info.last_modified - before) <= self.clock_skew_tolerance

    # -- listing --------------------------------------------------------------

    def test_listing_is_in_byte_order(self, bank: BankPlugin) -> None:
        shuffled = list(ORDER_TRAP_KEYS)
        random.Random(5).shuffle(shuffled)
        for key in shuffled:
            bank.put_object(key, key.encode())
        assert bank.list_objects() == byte_order(ORDER_TRAP_KEYS)
        # The trap: "-" (0x2d) sorts before "/" (0x2f), so "a-b" comes before everything under "a/".
        listed = bank.list_objects(prefix="a")
        assert listed.index("a-b") < listed.index("a/b") < listed.index("a/b-c") < listed.index("a/b/c")

    def test_listing_non_ascii_in_utf8_order(self, bank: BankPlugin) -> None:
        keys = ["\u00e9", "e", "f", "\u0100", "\u00ff", "\uffee", "\U00010000", "~", "\x7e\u00e9"]
        for key in keys:
            bank.put_object(f"n/{key}", b"")
        assert bank.list_objects(prefix="n/") == [f"n/{k}" for k in byte_order(keys)]

    def test_prefix_is_a_string_prefix(self, bank: BankPlugin) -> None:
        for key in ["a/b", "a/bc", "a/b/c", "a/b-c", "a/c", "ab", "b"]:
            bank.put_object(key, b"")
        assert bank.list_objects(prefix="a/b") == ["a/b", "a/b-c", "a/b/c", "a/bc"]
        assert bank.list_objects(prefix="a/b/") == ["a/b/c"]
        assert bank.list_objects(prefix="a/") == ["a/b", "a/b-c", "a/b/c", "a/bc", "a/c"]
        assert bank.list_objects(prefix="a") == ["a/b", "a/b-c", "a/b/c", "a/bc", "a/c", "ab"]
        assert bank.list_objects(prefix="a/x") == []
        assert bank.list_objects(prefix="nothing/here/") == []
        assert bank.list_objects(prefix="") == bank.list_objects()

    def test_prefix_inside_a_multibyte_segment(self, bank: BankPlugin) -> None:
        for key in ["caf\u00e9/1", "caf\u00e9s/2", "cafe/3", "caf/4"]:
            bank.put_object(key, b"")
        assert bank.list_objects(prefix="caf\u00e9") == ["caf\u00e9/1", "caf\u00e9s/2"]
        everything = byte_order(["caf\u00e9/1", "caf\u00e9s/2", "cafe/3", "caf/4"])
        assert bank.list_objects(prefix="caf") == everything

    def test_marker_excludes_itself(self, bank: BankPlugin) -> None:
        keys = byte_order(["a", "a-b", "a/b", "a/b/c", "a/c", "b", "b/a"])
        for key in keys:
            bank.put_object(key, b"")
        for i, marker in enumerate(keys):
            assert bank.list_objects(marker=marker) == keys[i + 1:], marker
        # A marker that is not a key: listing resumes right after where it would be.
        assert bank.list_objects(marker="a/a") == ["a/b", "a/b/c", "a/c", "b", "b/a"]
        assert bank.list_objects(marker="a/b/") == ["a/b/c", "a/c", "b", "b/a"]
        assert bank.list_objects(marker="a0") == ["b", "b/a"]
        assert bank.list_objects(marker="") == keys
        assert bank.list_objects(marker="zzz") == []
        assert bank.list_objects(prefix="a/", marker="a/b") == ["a/b/c", "a/c"]
        assert bank.list_objects(prefix="b", marker="a") == ["b", "b/a"]
        assert bank.list_objects(prefix="a/", marker="b") == []

    def test_limit(self, bank: BankPlugin) -> None:
        keys = [f"k/{i:03d}" for i in range(20)]
        for key in keys:
            bank.put_object(key, b"")
        assert bank.list_objects(limit=0) == []
        assert bank.list_objects(limit=1) == ["k/000"]
        assert bank.list_objects(limit=7) == keys[:7]
        assert bank.list_objects(limit=100) == keys
        assert bank.list_objects(prefix="k/01", limit=3) == ["k/010", "k/011", "k/012"]
        assert bank.list_objects(marker="k/005", limit=2) == ["k/006", "k/007"]

    def test_paging_returns_every_key_once_in_order(self, bank: BankPlugin) -> None:
        # A tree with fan-out at several levels and "-"/"/" traps at each of them.
        keys = []
        for i in range(self.paging_key_count):
            top = f"p{i % 3}" + ("-x" if i % 7 == 0 else "")
            keys.append(f"{top}/{i % 11:02d}/{i:05d}" if i % 5 else f"{top}/{i % 11:02d}-{i:05d}")
        self.put_many(bank, keys)
        expected = byte_order(keys)
        for page_size in (1000, 97):
            seen: list[str] = []
            marker: str | None = None
            while True:
                page = bank.list_objects(marker=marker, limit=page_size)
                assert len(page) <= page_size
                seen.extend(page)
                if len(page) < page_size:
                    break
                marker = page[-1]
            assert len(seen) == len(set(seen))
            assert seen == expected
        assert bank.list_objects(prefix="p1/") == [k for k in expected if k.startswith("p1/")]

    def test_iter_objects(self, bank: BankPlugin) -> None:
        keys = [f"it/{i:04d}" for i in range(45)] + ["it-x", "it/0007/sub", "other"]
        self.put_many(bank, keys)
        assert list(bank.iter_objects(prefix="it/", page_size=7)) == byte_order(
            [k for k in keys if k.startswith("it/")])
        assert list(bank.iter_objects(page_size=1)) == byte_order(keys)
        assert list(bank.iter_objects(prefix="none/")) == []

    # -- concurrency ----------------------------------------------------------

    def test_concurrent_writers_on_distinct_keys(self, bank: BankPlugin) -> None:
        per_thread = 40

        def writer(thread: int) -> None:
            for i in range(per_thread):
                # Threads share directories, and write then delete scratch keys next to each other.
                key = f"shared/{i % 4}/t{thread}-{i}"
                bank.put_object(key, pattern(1000 + i, seed=thread * 1000 + i), {"thread": str(thread)})
                bank.put_object(f"shared/{i % 4}/scratch/t{thread}", b"scratch")
                bank.delete_object(f"shared/{i % 4}/scratch/t{thread}")

        with concurrent.futures.ThreadPoolExecutor(self.writer_threads) as pool:
            for future in [pool.submit(writer, t) for t in range(self.writer_threads)]:
                future.result()
        expected = byte_order([f"shared/{i % 4}/t{t}-{i}" for t in range(self.writer_threads)
                               for i in range(per_thread)])
        assert bank.list_objects(prefix="shared/") == expected
        for t in range(self.writer_threads):
            for i in range(per_thread):
                key = f"shared/{i % 4}/t{t}-{i}"
                assert bank.get_object(key) == pattern(1000 + i, seed=t * 1000 + i), key
                assert bank.head_object(key).metadata == {"thread": str(t)}
