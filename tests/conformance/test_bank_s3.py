"""The bank conformance suite on the s3 bank: against moto_server and against Swift's s3api.

Each test gets a fresh bucket, purged afterwards.  The multipart threshold and part
size are the S3 minimum (5 MiB), so that the suite's large objects (and every
stream above 5 MiB) go through multipart uploads on both servers.
"""

from __future__ import annotations

import io
import logging
import pathlib
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from strongroom import exceptions
from strongroom.bank_plugins.base import BankPlugin
from strongroom.bank_plugins.s3 import S3Bank
from strongroom.testing.bank import BankConformance, MiB, StreamBroke, TrickleStream, digest, pattern
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
