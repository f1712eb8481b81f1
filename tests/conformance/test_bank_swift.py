"""The bank conformance suite on a real Swift all-in-one (``tests/servers/swift.py``).

``TestSwiftBank`` runs it with the default large-object settings (values up to
16 MiB are single objects); ``TestSwiftBankSegmented`` runs it again with a
1 MiB threshold and 1 MiB segments, so that every big value of the suite is a
Static Large Object (except the tests that only write small values), and checks
that no segment outlives its value.  ``TestSwiftKeystoneBank`` runs it once more
on a second all-in-one whose proxy authenticates with keystonemiddleware's
``authtoken`` and ``keystoneauth`` against a real Keystone, the bank using
``auth_version = 3`` and finding its storage URL in Keystone's catalogue.
"""

from __future__ import annotations

import io
import pathlib
from typing import ClassVar

import pytest

from strongroom.bank_plugins.base import BankPlugin
from strongroom.bank_plugins.swift import SwiftBank
from strongroom.testing.bank import BankConformance, MiB, StreamBroke, TrickleStream, digest, pattern
from tests.servers.swift import SwiftServer


class TestSwiftBank(BankConformance):
    """Every test gets a fresh container of the session's Swift server."""

    server: ClassVar[SwiftServer]
    extra_options: ClassVar[dict[str, int]] = {}
    #: Over a thousand keys (more than one listing request of the bank's) at a fraction of the suite's 2,500
    #: PUTs, each a round trip through the one-process proxy.
    paging_key_count = 1200

    @pytest.fixture(autouse=True)
    def _server(self, swift_server: SwiftServer) -> None:
        type(self).server = swift_server

    def make_bank(self, tmp_path: pathlib.Path) -> BankPlugin:
        return SwiftBank(self.server.bank_options(self.server.new_container("conformance"), **self.extra_options))


class TestSwiftBankSegmented(TestSwiftBank):
    extra_options = {"large_object_threshold": MiB, "segment_size": MiB}

    # Small values only, already run by TestSwiftBank: not collected again (pytest
    # collects only callables).
    test_paging_returns_every_key_once_in_order = None  # type: ignore[assignment]
    test_concurrent_writers_on_distinct_keys = None  # type: ignore[assignment]
    test_lease_expires_by_the_bank_clock = None  # type: ignore[assignment]

    def segments(self, bank: BankPlugin) -> list[str]:
        """The names in the bank's segment container (behind the bank's back)."""
        assert isinstance(bank, SwiftBank)
        conn = self.server.connection()
        try:
            _, listing = conn.get_container(bank.segment_container, full_listing=True)
        except Exception as err:  # a bank that never segmented has no segment container
            if getattr(err, "http_status", None) == 404:
                return []
            raise
        finally:
            conn.close()
        return [item["name"] for item in listing]

    def manifest_header(self, bank: SwiftBank, key: str) -> str | None:
        conn = self.server.connection()
        try:
            return conn.head_object(bank.container, key).get("x-static-large-object")
        finally:
            conn.close()

    def test_big_values_are_segmented_and_segments_never_outlive_them(self, bank: BankPlugin) -> None:
        assert isinstance(bank, SwiftBank)
        value = pattern(3 * MiB + 5, seed=21)
        bank.put_object("big", io.BytesIO(value), {"v": "1"})
        assert self.manifest_header(bank, "big") == "True"
        assert len(self.segments(bank)) == 4
        assert digest(bank.get_object("big")) == digest(value)
        assert bank.head_object("big").size == len(value)
        assert bank.list_objects() == ["big"]
        # A segmented overwrite, then a small one: the replaced segments go.
        bigger = pattern(2 * MiB + 1, seed=22)
        bank.put_object("big", TrickleStream(bigger), {"v": "2"})  # type: ignore[arg-type]
        assert len(self.segments(bank)) == 3
        assert digest(bank.get_object("big")) == digest(bigger)
        bank.put_object("big", b"small now", {"v": "3"})
        assert self.segments(bank) == []
        assert self.manifest_header(bank, "big") is None
        assert (bank.get_object("big"), dict(bank.head_object("big").metadata)) == (b"small now", {"v": "3"})
        # Delete removes the segments with the manifest.
        bank.put_object("big", value)
        assert len(self.segments(bank)) == 4
        bank.delete_object("big")
        assert self.segments(bank) == []
        assert bank.list_objects() == []
        bank.delete_object("big")

    def test_value_exactly_at_the_threshold_and_segment_boundaries(self, bank: BankPlugin) -> None:
        for size, parts in ((MiB, 0), (MiB + 1, 2), (2 * MiB, 2), (2 * MiB + 1, 3)):
            value = pattern(size, seed=size)
            bank.put_object("edge", value)
            assert bank.get_object("edge") == value, size
            assert len(self.segments(bank)) == parts, size
            bank.put_object("edge", TrickleStream(value))  # type: ignore[arg-type]
            assert bank.get_object("edge") == value, size
            assert len(self.segments(bank)) == parts, size
        bank.delete_object("edge")
        assert self.segments(bank) == []

    def test_stream_failing_between_segments_leaves_old_value_and_no_segments(self, bank: BankPlugin) -> None:
        bank.put_object("stable", b"old value", {"v": "1"})
        broken = TrickleStream(pattern(5 * MiB), fail_after=3 * MiB)  # two segments are up when it breaks
        with pytest.raises(StreamBroke):
            bank.put_object("stable", broken, {"v": "2"})  # type: ignore[arg-type]
        assert bank.get_object("stable") == b"old value"
        assert dict(bank.head_object("stable").metadata) == {"v": "1"}
        assert self.segments(bank) == []
        assert bank.list_objects() == ["stable"]

    def test_missing_segment_container_is_made_again(self, bank: BankPlugin) -> None:
        assert isinstance(bank, SwiftBank)
        bank.put_object("a", pattern(MiB + 10))
        bank.delete_object("a")
        conn = self.server.connection()
        try:
            conn.delete_container(bank.segment_container)
        finally:
            conn.close()
        bank.put_object("b", pattern(MiB + 10))
        assert bank.get_object("b") == pattern(MiB + 10)


class TestSwiftKeystoneBank(TestSwiftBankSegmented):
    """The suite, and the segmented tests, with Keystone v3: every value above 1 MiB is a Static Large Object
    (the manifest and its segments checked behind the bank's back as the same Keystone user)."""

    # Leases (X-Delete-After) and concurrent connections sharing one Keystone session: run here too.
    test_lease_expires_by_the_bank_clock = BankConformance.test_lease_expires_by_the_bank_clock
    test_concurrent_writers_on_distinct_keys = BankConformance.test_concurrent_writers_on_distinct_keys

    @pytest.fixture(autouse=True)
    def _server(self, swift_keystone_server: SwiftServer) -> None:
        type(self).server = swift_keystone_server

    def test_the_bank_authenticates_with_keystone_v3(self, bank: BankPlugin) -> None:
        assert isinstance(bank, SwiftBank)
        assert bank.options["auth_version"] == "3" and bank.options["auth_url"] == self.server.keystone.url
        bank.put_object("k", b"v")
        # Through the catalogue, into the project's own account.
        conn = self.server.connection()
        try:
            url, _ = conn.get_auth()
            assert url == self.server.account_url()
            assert conn.get_object(bank.container, "k")[1] == b"v"
        finally:
            conn.close()
