"""The bank conformance suite on the s3 bank: against moto_server and against Swift's s3api.

Each test gets a fresh bucket, purged afterwards.  The multipart threshold and part
size are the S3 minimum (5 MiB), so that the suite's large objects (and every
stream above 5 MiB) go through multipart uploads on both servers.
"""

from __future__ import annotations

import datetime as _dt
import io
import logging
import pathlib
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from strongroom import exceptions
from strongroom.bank_plugins.base import BankPlugin
from strongroom.bank_plugins.s3 import S3Bank
from strongroom.testing.bank import BankConformance, MiB, StreamBroke, TrickleStream, digest, pattern
from tests.long import only_long
from tests.servers.moto import purge_bucket, s3_client

LOG = logging.getLogger(__name__)


class S3BankSuite(BankConformance):
    """The generic suite plus what is specific to S3 (multipart, metadata encoding, clock)."""

    part_size: ClassVar[int] = 5 * MiB
    #: Buckets holding more objects than this are not purged after a test (None: always purge).
    purge_max_objects: ClassVar[int | None] = None
    #: More keys than one ListObjectsV2 answer holds (1,000), at half the suite's 2,500 PUTs.
    paging_key_count = 1200

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str

    def new_bucket_name(self) -> str:
        raise NotImplementedError

    def bank_options(self, bucket: str, **extra: Any) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url, "region_name": self.region, "bucket": bucket,
                "access_key_id": self.access_key, "secret_access_key": self.secret_key,
                "addressing_style": "path", "multipart_threshold": self.part_size,
                "multipart_chunksize": self.part_size, **extra}

    @pytest.fixture(autouse=True)
    def _fresh_buckets(self, _server: None) -> Iterator[None]:
        self.buckets: list[str] = []
        yield
        if not self.buckets:
            return
        client = s3_client(self.endpoint_url, self.access_key, self.secret_key, self.region)
        try:
            for bucket in self.buckets:
                try:
                    purge_bucket(client, bucket, self.purge_max_objects)
                except Exception as err:  # cleaning up must not hide the test's own outcome
                    LOG.warning("could not purge bucket %s: %s", bucket, err)
        finally:
            client.close()

    def make_bank(self, tmp_path: pathlib.Path) -> BankPlugin:
        bucket = self.new_bucket_name()
        self.buckets.append(bucket)
        return S3Bank(self.bank_options(bucket))

    # -- S3-specific ---------------------------------------------------------

    def test_multipart_stream_round_trip(self, bank: S3Bank) -> None:
        value = pattern(2 * self.part_size + 12_345, seed=21)
        metadata = {"kind": "multipart", "note": "caf\u00e9  \u2713", "empty": ""}
        bank.put_object("mp/stream", TrickleStream(value), metadata)  # type: ignore[arg-type]
        bank.put_object("mp/bytes", value)
        for key in ("mp/stream", "mp/bytes"):
            assert digest(bank.get_object(key)) == digest(value), key
            assert bank.head_object(key).size == len(value)
            # An S3 multipart ETag is "<md5 of the part md5s>-<part count>".
            etag = bank.client().head_object(Bucket=bank.bucket, Key=key)["ETag"].strip('"')
            assert etag.endswith("-3"), (key, etag)
        assert dict(bank.head_object("mp/stream").metadata) == metadata
        # Exactly the threshold: one plain put.
        bank.put_object("mp/edge", io.BytesIO(value[:self.part_size]))
        assert "-" not in bank.client().head_object(Bucket=bank.bucket, Key="mp/edge")["ETag"]
        assert digest(bank.get_object("mp/edge")) == digest(value[:self.part_size])

    def test_broken_multipart_stream_leaves_old_value_and_no_upload(self, bank: S3Bank) -> None:
        bank.put_object("mp/stable", b"old value", {"v": "1"})
        broken = TrickleStream(pattern(3 * self.part_size, seed=4), fail_after=self.part_size + MiB)
        with pytest.raises(StreamBroke):
            bank.put_object("mp/stable", broken, {"v": "2"})  # type: ignore[arg-type]
        with pytest.raises(StreamBroke):
            bank.put_object("mp/new", TrickleStream(pattern(3 * self.part_size), fail_after=2 * self.part_size + 1),  # type: ignore[arg-type]
                            {"v": "3"})
        assert bank.get_object("mp/stable") == b"old value"
        assert dict(bank.head_object("mp/stable").metadata) == {"v": "1"}
        assert not bank.object_exists("mp/new")
        assert bank.list_objects() == ["mp/stable"]
        uploads = bank.client().list_multipart_uploads(Bucket=bank.bucket)
        assert uploads.get("Uploads", []) == []

    def test_metadata_values_that_need_encoding(self, bank: S3Bank) -> None:
        metadata = {"looks-encoded": "=?utf-8?b?Zm9v?=", "starts-like-it": "=?", "double": "a  b",
                    "tabs": "a\tb\n", "only-space": " ", "ascii": "plain-ascii_value.1 two words",
                    "emoji": "\U0001f600", "b64-alphabet": "+/=="}
        bank.put_object("meta", b"v", metadata)
        assert dict(bank.head_object("meta").metadata) == metadata

    def test_server_time_is_the_banks_clock(self, bank: S3Bank) -> None:
        bank.put_object("probe", b"")
        now = bank.server_time()
        assert now is not None and now.utcoffset() is not None
        modified = bank.head_object("probe").last_modified
        assert modified is not None
        # Date and Last-Modified come from the same clock (one-second resolution each).
        assert abs((now - modified).total_seconds()) <= 5

    def test_key_prefix_shares_a_bucket(self, bank: S3Bank) -> None:
        left = S3Bank(self.bank_options(bank.bucket, key_prefix="left/"))
        right = S3Bank(self.bank_options(bank.bucket, key_prefix="tenants/right/"))
        try:
            left.put_object("k", b"L")
            right.put_object("k", b"R")
            right.put_object("k-2", b"R2")
            assert left.list_objects() == ["k"]
            assert right.list_objects(marker="k") == ["k-2"]
            assert left.get_object("k") == b"L" and right.get_object("k") == b"R"
            assert bank.list_objects() == ["left/k", "tenants/right/k", "tenants/right/k-2"]
            right.delete_object("k")
            with pytest.raises(exceptions.BankObjectNotFound) as excinfo:
                right.head_object("k")
            assert "k" in str(excinfo.value)
        finally:
            left.close()
            right.close()


class TestS3BankMoto(S3BankSuite):
    """Against a real moto_server on 127.0.0.1."""

    @pytest.fixture(autouse=True)
    def _server(self, moto_server: Any) -> None:
        self.server = moto_server
        self.endpoint_url = moto_server.endpoint_url
        self.access_key = moto_server.access_key
        self.secret_key = moto_server.secret_key
        self.region = moto_server.region

    def new_bucket_name(self) -> str:
        return str(self.server.new_bucket("conformance"))


class TestS3BankSwiftS3api(S3BankSuite):
    """Against Swift's s3api middleware (the Swift all-in-one from tests/servers/swift.py)."""

    # s3api deletes the keys of a multi-object delete one by one (~40 s for the paging test's 2,500):
    # buckets with many small objects stay on the session's temporary Swift, big objects are purged.
    purge_max_objects = 200

    @pytest.fixture(autouse=True)
    def _server(self, swift_server: Any) -> None:
        self.server = swift_server
        self.endpoint_url = swift_server.s3_endpoint
        self.access_key = swift_server.s3_access_key
        self.secret_key = swift_server.s3_secret_key
        self.region = swift_server.region

    def new_bucket_name(self) -> str:
        return str(self.server.new_container("s3conformance")).lower()


class TestS3BankMotoObjectLock(TestS3BankMoto):
    """The whole suite again on a bucket with Object Lock (versioned: deletes remove versions), plus the lock.

    moto 5.2 keeps the dates it is given (it does not refuse a shorter one, nor a COMPLIANCE lock turned
    into GOVERNANCE, as S3 does) and compares them with its real clock: the bank's extend-only rule is its
    own (it reads the current date first), and the lapse tests use locks of a few seconds.
    """

    def bank_options(self, bucket: str, **extra: Any) -> dict[str, Any]:
        return super().bank_options(bucket, object_lock=True, **extra)

    def _purge_versions(self, bucket: str) -> None:
        client = self.server.client()
        try:
            for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
                for item in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]:
                    client.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"],
                                         BypassGovernanceRetention=True)
        finally:
            client.close()

    @pytest.fixture(autouse=True)
    def _purge_locked(self, _fresh_buckets: None) -> Iterator[None]:
        yield
        for bucket in self.buckets:
            try:
                self._purge_versions(bucket)
            except Exception as err:  # noqa: BLE001 - COMPLIANCE versions stay until their date
                LOG.warning("could not purge the versions of %s: %s", bucket, err)

    @only_long  # listing and concurrency as on the plain bucket, where make test runs them; ~45 s here
    def test_paging_returns_every_key_once_in_order(self, bank: BankPlugin) -> None:
        super().test_paging_returns_every_key_once_in_order(bank)

    @only_long
    def test_concurrent_writers_on_distinct_keys(self, bank: BankPlugin) -> None:  # type: ignore[override]
        # moto's ListObjectVersions deep-copies the bucket's key dict while other threads change it, and
        # answers 500 when they do: the service retries transient errors (RetryingBank), so does this test.
        from strongroom.bank_plugins.retry import RetryingBank

        super().test_concurrent_writers_on_distinct_keys(
            RetryingBank(bank, max_attempts=8, initial_delay=0.01, max_delay=0.1))

    @staticmethod
    def _soon(seconds: float) -> _dt.datetime:
        return _dt.datetime.now(_dt.UTC) + _dt.timedelta(seconds=seconds)

    def _raw_versions(self, bank: S3Bank, key: str) -> list[str]:
        client = self.server.client()
        try:
            page = client.list_object_versions(Bucket=bank.bucket, Prefix=key)
        finally:
            client.close()
        return [v["VersionId"] for v in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]
                if v["Key"] == key]

    def test_bucket_is_created_with_object_lock(self, bank: S3Bank) -> None:
        assert bank.supports_object_lock
        bank.put_object("k", b"v")
        client = self.server.client()
        try:
            assert client.get_object_lock_configuration(Bucket=bank.bucket)["ObjectLockConfiguration"][
                "ObjectLockEnabled"] == "Enabled"
            assert client.get_bucket_versioning(Bucket=bank.bucket)["Status"] == "Enabled"
        finally:
            client.close()

    def test_delete_removes_every_version(self, bank: S3Bank) -> None:
        for value in (b"1", b"2", b"3"):
            bank.put_object("k", value)
        bank.put_object("k2", b"neighbour")
        assert len(self._raw_versions(bank, "k")) == 3
        bank.delete_object("k")
        assert self._raw_versions(bank, "k") == []
        assert bank.list_objects() == ["k2"]
        bank.delete_object("k")  # idempotent

    def test_a_key_with_many_versions_is_deleted_in_batches(self, bank: S3Bank) -> None:
        from strongroom.bank_plugins.s3.plugin import BATCH_VERSIONS

        for i in range(BATCH_VERSIONS + 5):  # a lease rewritten again and again
            bank.put_object("leases/owner", f"renewal {i}".encode())
        bank.delete_object("leases/owner")
        assert self._raw_versions(bank, "leases/owner") == [] and not bank.object_exists("leases/owner")
        bank.put_object("many", b"locked")
        bank.lock_object("many", self._soon(60))
        for i in range(BATCH_VERSIONS + 1):
            bank.put_object("many", f"later {i}".encode())
        with pytest.raises(exceptions.BankObjectLocked) as excinfo:
            bank.delete_object("many")
        assert "'many'" in str(excinfo.value)
        assert bank.get_object("many") == b"locked"  # the locked value survives (the newer ones went)

    def test_locked_object_refuses_delete_naming_key_and_date(self, bank: S3Bank) -> None:
        bank.put_object("chunk", b"data")
        until = bank.lock_object("chunk", self._soon(60))
        assert bank.object_lock("chunk") == until
        with pytest.raises(exceptions.BankObjectLocked) as excinfo:
            bank.delete_object("chunk")
        assert "chunk" in str(excinfo.value) and until.isoformat() in str(excinfo.value)
        assert isinstance(excinfo.value, exceptions.Conflict)
        assert bank.get_object("chunk") == b"data"

    def test_raw_version_delete_is_refused_by_the_server(self, bank: S3Bank) -> None:
        from botocore.exceptions import ClientError

        bank.put_object("chunk", b"data")
        bank.lock_object("chunk", self._soon(60))
        [version] = self._raw_versions(bank, "chunk")
        client = self.server.client()
        try:
            with pytest.raises(ClientError) as excinfo:
                client.delete_object(Bucket=bank.bucket, Key="chunk", VersionId=version)
            assert excinfo.value.response["Error"]["Code"] == "AccessDenied"
            # A plain delete only hides it behind a delete marker: listing and reads see it gone ...
            client.delete_object(Bucket=bank.bucket, Key="chunk")
        finally:
            client.close()
        assert bank.list_objects() == []
        assert not bank.object_exists("chunk")
        # ... and the bank's own delete still refuses: the locked version is older than the marker.
        with pytest.raises(exceptions.BankObjectLocked):
            bank.delete_object("chunk")
        assert version in self._raw_versions(bank, "chunk")

    def test_lock_extends_and_never_shortens(self, bank: S3Bank) -> None:
        bank.put_object("shared", b"x")
        later = bank.lock_object("shared", self._soon(120))
        assert bank.lock_object("shared", self._soon(60)) == later  # a shorter date changes nothing
        assert bank.object_lock("shared") == later
        latest = bank.lock_object("shared", self._soon(180))
        assert latest > later and bank.object_lock("shared") == latest

    def test_lock_rounds_up_to_whole_seconds_and_ignores_past_dates(self, bank: S3Bank) -> None:
        bank.put_object("k", b"x")
        until = bank.lock_object("k", self._soon(30).replace(microsecond=1))
        assert until.microsecond == 0
        bank.put_object("old", b"x")
        bank.lock_object("old", self._soon(-60))
        assert bank.object_lock("old") is None
        bank.delete_object("old")

    def test_compliance_lock_stays_compliance(self, bank: S3Bank) -> None:
        bank.put_object("k", b"x")
        bank.lock_object("k", self._soon(5), mode="COMPLIANCE")
        bank.lock_object("k", self._soon(8), mode="GOVERNANCE")
        client = self.server.client()
        try:
            assert client.head_object(Bucket=bank.bucket, Key="k")["ObjectLockMode"] == "COMPLIANCE"
        finally:
            client.close()
        time.sleep(9)  # let it lapse: nothing can remove a COMPLIANCE version before

    def test_delete_works_once_the_lock_lapses(self, bank: S3Bank) -> None:
        bank.put_object("k", b"x")
        bank.lock_object("k", self._soon(2))
        with pytest.raises(exceptions.BankObjectLocked):
            bank.delete_object("k")
        time.sleep(3.2)
        bank.delete_object("k")
        assert self._raw_versions(bank, "k") == [] and not bank.object_exists("k")

    def test_lock_of_a_missing_key_is_not_found(self, bank: S3Bank) -> None:
        with pytest.raises(exceptions.BankObjectNotFound):
            bank.lock_object("missing", self._soon(30))
        with pytest.raises(exceptions.BankObjectNotFound):
            bank.object_lock("missing")

    def test_existing_bucket_without_object_lock_is_refused(self) -> None:
        bucket = self.new_bucket_name()
        self.buckets.append(bucket)
        plain = S3Bank(super().bank_options(bucket))
        plain.put_object("k", b"v")
        locking = S3Bank(self.bank_options(bucket))
        with pytest.raises(exceptions.BankError) as excinfo:
            locking.put_object("k", b"v")
        assert "without Object Lock" in str(excinfo.value) and bucket in str(excinfo.value)
        plain.close()
        locking.close()

    def test_object_lock_mode_needs_object_lock(self) -> None:
        with pytest.raises(exceptions.ConfigError) as excinfo:
            S3Bank.check_options({"bucket": "b-1", "object_lock_mode": "COMPLIANCE"})
        assert "object_lock_mode" in str(excinfo.value)
        with pytest.raises(exceptions.ConfigError):
            S3Bank.check_options({"bucket": "b-1", "object_lock": True, "object_lock_mode": "ROOT"})


def test_banks_without_object_lock_say_so(tmp_path: pathlib.Path) -> None:
    from strongroom.bank_plugins import Bank
    from strongroom.bank_plugins.fs import FilesystemBank
    from strongroom.bank_plugins.memory import MemoryBank
    from strongroom.bank_plugins.retry import RetryingBank
    from strongroom.bank_plugins.swift import SwiftBank

    assert not SwiftBank.supports_object_lock  # Swift has no object lock
    assert not S3Bank({"bucket": "no-lock"}).supports_object_lock
    assert RetryingBank(S3Bank({"bucket": "lock", "object_lock": True})).supports_object_lock
    for plugin in (MemoryBank(), FilesystemBank({"path": str(tmp_path)})):
        bank = Bank(plugin, name="plain")
        assert not bank.supports_object_lock
        assert bank.object_lock("k") is None
        with pytest.raises(exceptions.BankError) as excinfo:
            bank.lock("k", _dt.datetime.now(_dt.UTC))
        assert "cannot lock" in str(excinfo.value)
