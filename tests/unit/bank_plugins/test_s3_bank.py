"""The s3 bank: options, what reaches botocore, error mapping, the bank's clock, and secrets kept out of sight.

Everything that can run against the real moto_server does.  Two stand-ins cover what
cannot: :class:`ScriptedS3Server`, a real HTTP server on 127.0.0.1 that answers from a
script (5xx, throttling, stalls, resets, truncated bodies, a foreign clock: faults moto
does not produce), and :func:`intercept_without_network` for AWS-only addressing.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import datetime as _dt
import email.utils
import hashlib
import http.server
import io
import logging
import os
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from strongroom import exceptions
from strongroom.bank_plugins.retry import RetryingBank
from strongroom.bank_plugins.s3 import S3Bank, decode_metadata_value, encode_metadata_value

MiB = 1 << 20
SECRET = "sEcReT-s3-key/with+signs=0123456789abcdef"
ACCESS = "AKIDSTRONGROOMUNITTEST"
TOKEN = "session-token-" + "t0k3n" * 8


# -- options -------------------------------------------------------------------


def base_options(**extra: Any) -> dict[str, Any]:
    return {"endpoint_url": "http://127.0.0.1:9", "bucket": "unit-bucket", "access_key_id": ACCESS,
            "secret_access_key": SECRET, **extra}


@pytest.mark.parametrize(("options", "named", "hint"), [
    pytest.param({"endpoint_url": "http://127.0.0.1:9"}, "bucket", "required", id="missing-bucket"),
    pytest.param(base_options(bukket="x"), "bukket", "unknown option", id="unknown-option"),
    pytest.param(base_options(addressing_style="sideways"), "addressing_style", "sideways", id="addressing"),
    pytest.param(base_options(request_checksum_calculation="always"), "request_checksum_calculation", "always",
                 id="request-checksum"),
    pytest.param(base_options(response_checksum_validation="never"), "response_checksum_validation", "never",
                 id="response-checksum"),
    pytest.param(base_options(multipart_chunksize=MiB), "multipart_chunksize", "minimum", id="part-too-small"),
    pytest.param(base_options(multipart_threshold="big"), "multipart_threshold", "integer", id="threshold-type"),
    pytest.param(base_options(read_timeout=0), "read_timeout", "0", id="timeout-zero"),
    pytest.param(base_options(bucket="no/slash"), "bucket", "match", id="bucket-name"),
    pytest.param(base_options(key_prefix="no-trailing-slash"), "key_prefix", "match", id="key-prefix"),
    pytest.param(base_options(signature_version="v5"), "signature_version", "v5", id="signature"),
    pytest.param(base_options(lease_expire_window=0), "lease_expire_window", "minimum", id="lease-window"),
    pytest.param(base_options(endpoint_url="ftp://host"), "endpoint_url", "http", id="endpoint-scheme"),
    pytest.param(base_options(verify_ssl=False, ca_bundle="/etc/ca.pem"), "ca_bundle", "verify_ssl",
                 id="ca-without-verify"),
])
def test_invalid_options_are_named(options: dict[str, Any], named: str, hint: str) -> None:
    with pytest.raises(exceptions.ConfigError) as excinfo:
        S3Bank(options)
    message = str(excinfo.value)
    assert repr(named) in message
    assert hint in message
    assert SECRET not in message


def test_credentials_go_together() -> None:
    options = base_options()
    del options["secret_access_key"]
    with pytest.raises(exceptions.ConfigError, match="secret_access_key and access_key_id go together"):
        S3Bank(options)
    options = base_options(session_token=TOKEN)
    del options["access_key_id"]
    with pytest.raises(exceptions.ConfigError, match="session_token needs"):
        S3Bank(options)
    S3Bank({"bucket": "no-credentials-uses-the-default-chain"})


def test_invalid_secret_value_is_not_shown() -> None:
    with pytest.raises(exceptions.ConfigError) as excinfo:
        S3Bank(base_options(secret_access_key=987654321987))
    assert "'secret_access_key'" in str(excinfo.value)
    assert "987654321987" not in str(excinfo.value)


def test_endpoint_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(exceptions.ConfigError) as excinfo:
        S3Bank(base_options(endpoint_url=f"http://{ACCESS}:{SECRET}@127.0.0.1:9"))
    assert "'endpoint_url'" in str(excinfo.value)
    assert SECRET not in str(excinfo.value) and ACCESS not in str(excinfo.value)


def test_every_option_in_the_schema_is_accepted() -> None:
    bank = S3Bank({
        "endpoint_url": "https://s3.example.test:8443", "region_name": "eu-west-1", "bucket": "b-1.x",
        "key_prefix": "tenant/a/", "access_key_id": ACCESS, "secret_access_key": SECRET, "session_token": TOKEN,
        "addressing_style": "virtual", "signature_version": "s3v4", "verify_ssl": True, "ca_bundle": "/x.pem",
        "request_checksum_calculation": "when_supported", "response_checksum_validation": "when_supported",
        "content_md5": False, "connect_timeout": 1.5, "read_timeout": 2, "max_pool_connections": 4,
        "multipart_threshold": 5 * MiB, "multipart_chunksize": 6 * MiB, "lease_expire_window": 600,
        "lease_renew_window": 120, "lease_validity_window": 100})
    assert bank.key_prefix == "tenant/a/"
    assert bank.supports_expiry is False


# -- metadata encoding ----------------------------------------------------------


@pytest.mark.parametrize("value", ["", " ", "plain", "two words", "a  b", " lead", "trail ", "caf\u00e9",
                                   "\U0001f600", "=?utf-8?b?Zm9v?=", "=?", "tab\there", "new\nline", "x" * 300,
                                   "=?UTF-8?B?not-ours", "\udc80"])
def test_metadata_values_round_trip_as_ascii(value: str) -> None:
    encoded = encode_metadata_value(value)
    assert encoded.isascii()
    assert encoded == encoded.strip() and encoded
    assert "  " not in encoded and not any(ord(c) < 0x20 for c in encoded)
    assert decode_metadata_value(encoded) == value


def test_plain_metadata_is_sent_as_is() -> None:
    for value in ("available", "7f9c-aa", "two words", "a=b;c,d"):
        assert encode_metadata_value(value) == value


# -- what reaches botocore --------------------------------------------------------


def test_settings_reach_the_botocore_config() -> None:
    bank = S3Bank(base_options(addressing_style="path", connect_timeout=2.5, read_timeout=7,
                               max_pool_connections=5, signature_version="s3v4"))
    client = bank._make_client()  # no request is sent
    try:
        config = client.meta.config
        assert config.s3["addressing_style"] == "path"
        assert config.request_checksum_calculation == "when_required"
        assert config.response_checksum_validation == "when_required"
        assert config.retries["total_max_attempts"] == 1
        assert (config.connect_timeout, config.read_timeout, config.max_pool_connections) == (2.5, 7, 5)
        assert config.signature_version == "s3v4"
    finally:
        client.close()
    other = S3Bank(base_options(addressing_style="virtual", request_checksum_calculation="when_supported",
                                response_checksum_validation="when_supported")).botocore_config()
    assert other.s3["addressing_style"] == "virtual"
    assert other.request_checksum_calculation == "when_supported"
    assert other.response_checksum_validation == "when_supported"


def record_requests(bank: S3Bank) -> list[Any]:
    """Every request the bank's client sends from now on (observed, not altered)."""
    seen: list[Any] = []
    bank.client().meta.events.register("before-send.s3", lambda request, **_: seen.append(request))
    return seen


def test_path_style_and_no_default_checksums_on_moto(moto_server: Any) -> None:
    bucket = moto_server.new_bucket("unit-path")
    bank = S3Bank(moto_server.bank_options(bucket))
    try:
        sent = record_requests(bank)
        bank.put_object("dir/key", b"value", {"m": "v"})
        [put] = [r for r in sent if r.method == "PUT"]
        assert put.url == f"{moto_server.endpoint_url}/{bucket}/dir/key"
        headers = {k.lower(): v for k, v in put.headers.items()}
        assert not any(k.startswith("x-amz-checksum-") or k == "x-amz-sdk-checksum-algorithm" for k in headers)
        assert "aws-chunked" not in str(headers.get("content-encoding", ""))
        md5 = base64.b64encode(hashlib.md5(b"value").digest())
        assert headers["content-md5"] in (md5, md5.decode())
        assert bank.get_object("dir/key") == b"value"
    finally:
        bank.close()
        moto_server.purge_bucket(bucket)


def test_when_supported_sends_crc32_and_moto_accepts_it(moto_server: Any) -> None:
    bucket = moto_server.new_bucket("unit-crc")
    bank = S3Bank(moto_server.bank_options(bucket, request_checksum_calculation="when_supported",
                                           response_checksum_validation="when_supported", content_md5=False))
    try:
        sent = record_requests(bank)
        bank.put_object("k", b"checksummed")
        [put] = [r for r in sent if r.method == "PUT"]
        names = {k.lower() for k in put.headers}
        assert names & {"x-amz-checksum-crc32", "x-amz-trailer", "x-amz-sdk-checksum-algorithm"}
        assert bank.get_object("k") == b"checksummed"
    finally:
        bank.close()
        moto_server.purge_bucket(bucket)


class _Intercepted(Exception):
    """Raised by :func:`intercept_without_network` in place of sending a request."""


@contextlib.contextmanager
def intercept_without_network(client: Any) -> Iterator[list[str]]:
    """A fake for AWS-only behaviour: record each request's URL and stop it before the network."""
    urls: list[str] = []

    def stop(request: Any, **_: Any) -> None:
        urls.append(request.url)
        raise _Intercepted(request.url)

    client.meta.events.register("before-send.s3", stop)
    try:
        yield urls
    finally:
        client.meta.events.unregister("before-send.s3", stop)


@pytest.mark.parametrize(("style", "expected"), [
    ("virtual", "https://aws-style-bucket.s3.eu-west-1.amazonaws.com/some/key"),
    ("path", "https://s3.eu-west-1.amazonaws.com/aws-style-bucket/some/key"),
])
def test_addressing_style_on_aws(style: str, expected: str) -> None:
    bank = S3Bank({"bucket": "aws-style-bucket", "region_name": "eu-west-1", "access_key_id": ACCESS,
                   "secret_access_key": SECRET, "addressing_style": style})
    client = bank._make_client()
    try:
        with intercept_without_network(client) as urls, pytest.raises(_Intercepted):
            client.head_object(Bucket="aws-style-bucket", Key="some/key")
        assert urls == [expected]
    finally:
        client.close()


@pytest.mark.parametrize(("region", "constraint"), [("us-east-1", None), ("eu-west-1", "eu-west-1")])
def test_bucket_created_with_the_location_constraint_rule(moto_server: Any, region: str,
                                                          constraint: str | None) -> None:
    bucket = moto_server.new_bucket("unit-region")
    bank = S3Bank(moto_server.bank_options(bucket, region_name=region))
    try:
        assert bank.list_objects() == []  # first use creates the bucket
        client = moto_server.client()
        location = client.get_bucket_location(Bucket=bucket).get("LocationConstraint")
        client.close()
        assert location == constraint
        again = S3Bank(moto_server.bank_options(bucket, region_name=region))
        bank.put_object("k", b"v")
        assert again.list_objects() == ["k"]  # an existing bucket is used as it is
        again.close()
    finally:
        bank.close()
        moto_server.purge_bucket(bucket)


def test_client_is_created_once_under_concurrency(moto_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = moto_server.new_bucket("unit-once")
    bank = S3Bank(moto_server.bank_options(bucket))
    made: list[int] = []
    original = S3Bank._make_client

    def counting(self: S3Bank) -> Any:
        made.append(1)
        return original(self)

    monkeypatch.setattr(S3Bank, "_make_client", counting)
    try:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda i: bank.put_object(f"k{i:02d}", b"x"), range(24)))
        assert len(results) == 24 and len(made) == 1
        assert len(bank.list_objects()) == 24
        bank.close()
        bank.close()  # idempotent
        assert len(bank.list_objects()) == 24  # and usable again: a new client on next use
        assert len(made) == 2
    finally:
        bank.close()
        moto_server.purge_bucket(bucket)


# -- the bank's clock -------------------------------------------------------------


def test_server_time_is_close_to_now_on_moto(moto_server: Any) -> None:
    bucket = moto_server.new_bucket("unit-clock")
    bank = S3Bank(moto_server.bank_options(bucket))
    try:
        before = _dt.datetime.now(_dt.UTC).replace(microsecond=0)
        now = bank.server_time()
        after = _dt.datetime.now(_dt.UTC)
        assert now is not None and now.tzinfo is not None
        assert before - _dt.timedelta(seconds=1) <= now <= after + _dt.timedelta(seconds=1)
    finally:
        bank.close()
        moto_server.purge_bucket(bucket)


# -- a scripted server for faults moto cannot produce --------------------------------

Action = Callable[["_Handler"], None]


class ScriptedS3Server:
    """A real HTTP/1.1 server on 127.0.0.1 answering S3 requests from a script.

    ``HEAD /<bucket>`` (the bank's bucket check and clock) answers 200 with
    ``date``; every other request takes the next scripted action (default: 200
    with an empty body).  ``requests`` records (method, path, headers).
    """

    def __init__(self, bucket: str = "scripted") -> None:
        self.bucket = bucket
        self.script: list[Action] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.date: str | None = None
        self.release = threading.Event()
        owner = self

        class Handler(_Handler):
            server_owner = owner

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def bank(self, **extra: Any) -> S3Bank:
        return S3Bank({"endpoint_url": self.endpoint_url, "bucket": self.bucket, "access_key_id": ACCESS,
                       "secret_access_key": SECRET, "addressing_style": "path", "read_timeout": 0.5,
                       "connect_timeout": 0.5, **extra})

    def object_requests(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _ in self.requests if not (m == "HEAD" and p.strip("/") == self.bucket)]

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_owner: ScriptedS3Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        owner = self.server_owner
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        owner.requests.append((self.command, path, dict(self.headers.items())))
        if self.command == "HEAD" and path.strip("/") == owner.bucket:
            self.send_response(200)
            if owner.date:
                self.send_header("Date", owner.date)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        action = owner.script.pop(0) if owner.script else ok()
        action(self)

    def date_time_string(self, timestamp: float | None = None) -> str:
        return self.server_owner.date or super().date_time_string(timestamp)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _serve


def error(status: int, code: str, message: str = "scripted") -> Action:
    """An S3 error answer (HEAD answers carry no body, hence no code)."""
    def act(handler: _Handler) -> None:
        body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message>"
                f"<RequestId>r</RequestId></Error>").encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/xml")
        handler.send_header("Content-Length", "0" if handler.command == "HEAD" else str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
    act.body_only = status == 400 or code == "NoSuchBucket"  # type: ignore[attr-defined]
    return act


def ok(body: bytes = b"", headers: dict[str, str] | None = None, declared: int | None = None) -> Action:
    """200 with ``body``; ``declared`` announces another length (a truncated answer when larger)."""
    def act(handler: _Handler) -> None:
        handler.send_response(200)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("ETag", '"0123456789abcdef0123456789abcdef"')
        handler.send_header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
        handler.send_header("Content-Length", str(len(body) if declared is None else declared))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
        if declared is not None:
            handler.wfile.flush()
            handler.close_connection = True
    return act


def stall(handler: _Handler) -> None:
    handler.server_owner.release.wait(10)
    handler.close_connection = True


def reset(handler: _Handler) -> None:
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.close_connection = True
    handler.connection.close()


@pytest.fixture
def scripted() -> Iterator[ScriptedS3Server]:
    server = ScriptedS3Server()
    yield server
    server.close()


FAULTS = [
    pytest.param(error(500, "InternalError"), True, id="500"),
    pytest.param(error(503, "SlowDown", "Please reduce your request rate."), True, id="503-slowdown"),
    pytest.param(error(502, "BadGateway"), True, id="502"),
    pytest.param(error(429, "TooManyRequests"), True, id="429"),
    pytest.param(error(400, "RequestTimeout"), True, id="400-request-timeout"),
    pytest.param(error(400, "Throttling"), True, id="400-throttling"),
    pytest.param(stall, True, id="read-timeout"),
    pytest.param(reset, True, id="connection-reset"),
    pytest.param(error(403, "AccessDenied"), False, id="403"),
    pytest.param(error(400, "InvalidArgument"), False, id="400"),
    pytest.param(error(404, "NoSuchBucket"), False, id="no-such-bucket"),
]


@pytest.mark.parametrize(("operation", "action", "transient"), [
    pytest.param(operation, *fault.values, id=f"{operation}-{fault.id}")
    for operation in ("put", "get", "head", "list", "delete") for fault in FAULTS
    # A HEAD answer has no body: only its status is known, not the code the others are judged by.
    if not (operation == "head" and getattr(fault.values[0], "body_only", False))
])
def test_error_mapping(scripted: ScriptedS3Server, operation: str, action: Action, transient: bool) -> None:
    bank = scripted.bank()
    calls: dict[str, Callable[[], Any]] = {
        "put": lambda: bank.put_object("k", b"v"), "get": lambda: bank.get_object("k"),
        "head": lambda: bank.head_object("k"), "list": lambda: bank.list_objects(),
        "delete": lambda: bank.delete_object("k")}
    scripted.script.append(action)
    with pytest.raises(exceptions.BankError) as excinfo:
        calls[operation]()
    err = excinfo.value
    assert isinstance(err, exceptions.BankTransientError) is transient, err
    assert not isinstance(err, exceptions.BankObjectNotFound)
    message = str(err)
    assert "'scripted'" in message and scripted.endpoint_url in message, message
    assert SECRET not in message and ACCESS not in message
    assert len(scripted.object_requests()) == 1  # botocore did not retry on its own
    bank.close()


def test_missing_key_is_not_found_and_delete_of_missing_is_fine(scripted: ScriptedS3Server) -> None:
    bank = scripted.bank()
    scripted.script += [error(404, "NoSuchKey"), error(404, "NoSuchKey"), error(404, "NoSuchKey")]
    for call in (bank.get_object, bank.head_object):
        with pytest.raises(exceptions.BankObjectNotFound) as excinfo:
            call("gone/key")
        assert "gone/key" in str(excinfo.value)
    bank.delete_object("gone/key")  # a store answering 404 to a delete: still idempotent


def test_truncated_body_while_streaming_is_transient(scripted: ScriptedS3Server) -> None:
    bank = scripted.bank()
    scripted.script.append(ok(b"0123456789", declared=1000))
    with pytest.raises(exceptions.BankTransientError) as excinfo:
        bank.get_object("short")
    assert "'short'" in str(excinfo.value)


def test_retrying_bank_cures_transient_errors(scripted: ScriptedS3Server) -> None:
    bank = RetryingBank(scripted.bank(), max_attempts=4, sleep=lambda _: None)
    scripted.script += [error(503, "SlowDown"), reset, ok(b"payload")]
    assert bank.get_object("k") == b"payload"
    assert scripted.object_requests() == [("GET", "/scripted/k")] * 3


def test_down_endpoint_does_not_fail_construction() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bank = S3Bank(base_options(endpoint_url=f"http://127.0.0.1:{port}", connect_timeout=0.5))  # nothing listens
    with pytest.raises(exceptions.BankTransientError) as excinfo:
        bank.list_objects()
    message = str(excinfo.value)
    assert "'unit-bucket'" in message and f"127.0.0.1:{port}" in message
    assert SECRET not in message and ACCESS not in message
    bank.close()


def test_server_time_is_the_date_header_not_our_clock(scripted: ScriptedS3Server) -> None:
    scripted.date = "Wed, 21 Oct 2015 07:28:00 GMT"
    bank = scripted.bank()
    assert bank.server_time() == _dt.datetime(2015, 10, 21, 7, 28, tzinfo=_dt.UTC)
    scripted.script.append(ok(headers={"x-amz-meta-note": "=?utf-8?b?" + base64.b64encode(
        "caf\u00e9".encode()).decode() + "?="}))
    info = bank.head_object("k")
    assert info.last_modified == _dt.datetime(2015, 10, 21, 7, 28, tzinfo=_dt.UTC)
    assert info.metadata == {"note": "caf\u00e9"}


# -- secrets -------------------------------------------------------------------------


def test_repr_shows_no_credentials() -> None:
    bank = S3Bank(base_options(session_token=TOKEN))
    text = repr(bank) + str(bank) + repr(RetryingBank(bank))
    assert "unit-bucket" in text
    for secret in (SECRET, ACCESS, TOKEN):
        assert secret not in text


def test_server_messages_are_scrubbed(scripted: ScriptedS3Server) -> None:
    """A server that echoes the credentials and the signature in its error message."""
    bank = scripted.bank(session_token=TOKEN)
    scripted.script.append(lambda handler: error(
        403, "SignatureDoesNotMatch",
        f"you sent {handler.headers.get('Authorization')} for {ACCESS} with {SECRET} and {TOKEN}")(handler))
    with pytest.raises(exceptions.BankError) as excinfo:
        bank.get_object("k")
    message = str(excinfo.value)
    assert "SignatureDoesNotMatch" in message
    for secret in (SECRET, ACCESS, TOKEN):
        assert secret not in message
    authorization = scripted.requests[-1][2]["Authorization"]
    signature = re.search(r"Signature=([0-9a-f]+)", authorization)
    assert signature is not None and signature.group(1) not in message


def test_debug_logs_show_no_credentials_or_signatures(moto_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    bucket = moto_server.new_bucket("unit-logs")
    options = moto_server.bank_options(bucket)
    # Parts as small as S3 allows: botocore's debug log quotes every body it sends.
    options.update(access_key_id=ACCESS, secret_access_key=SECRET, session_token=TOKEN,
                   multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    bank = S3Bank(options)
    signatures: list[str] = []
    try:
        bank.client().meta.events.register("before-send.s3", lambda request, **_: signatures.extend(
            re.findall(r"Signature=([0-9a-f]{64})", request.headers.get("Authorization", b"").decode())))
        with caplog.at_level(logging.DEBUG):
            bank.put_object("secret/test", b"value", {"m": "v"})
            bank.put_object("secret/big", io.BytesIO(bytes(11 * MiB)))  # multipart: three parts
            assert bank.get_object("secret/test") == b"value"
            bank.head_object("secret/test")
            bank.list_objects()
            bank.delete_object("secret/test")
            with pytest.raises(exceptions.BankObjectNotFound):
                bank.head_object("secret/absent")
        records = [r for r in caplog.records if r.name.startswith(("botocore", "urllib3"))]
        assert any("Sending http request" in r.getMessage() for r in records)  # the test is not vacuous
        assert signatures
        text = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
        for secret in (SECRET, ACCESS, TOKEN, *signatures):
            assert secret not in text
        assert "Signature=***" in text
    finally:
        bank.close()
        moto_server.purge_bucket(bucket)


def test_last_modified_is_aware_utc_from_moto(moto_server: Any) -> None:
    bucket = moto_server.new_bucket("unit-lm")
    bank = S3Bank(moto_server.bank_options(bucket))
    try:
        bank.put_object("k", b"")
        modified = bank.head_object("k").last_modified
        assert modified is not None and modified.utcoffset() == _dt.timedelta(0)
        assert email.utils.format_datetime(modified, usegmt=True)  # a plain UTC datetime
    finally:
        bank.close()
        moto_server.purge_bucket(bucket)


# -- TLS (moto_server --ssl, a self-signed certificate) ------------------------------


@pytest.fixture(scope="module")
def moto_tls() -> Iterator[Any]:
    from tests.servers.moto import MotoServerError, start_moto_server

    try:
        server = start_moto_server(tls=True)
    except MotoServerError as err:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"moto_server --ssl could not start (CI=true: not skipping): {err}", pytrace=False)
        pytest.skip(f"moto_server --ssl could not start: {err}")
    yield server
    server.stop()


def test_untrusted_certificate_is_a_permanent_error(moto_tls: Any) -> None:
    bank = S3Bank(moto_tls.bank_options(moto_tls.new_bucket("unit-tls"), verify_ssl=True))
    with pytest.raises(exceptions.BankError) as excinfo:
        bank.list_objects()
    assert not isinstance(excinfo.value, exceptions.BankTransientError)
    assert "certificate" in str(excinfo.value) and moto_tls.endpoint_url in str(excinfo.value)
    bank.close()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("checksums", ["when_required", "when_supported"])
def test_checksum_settings_over_https(moto_tls: Any, checksums: str) -> None:
    """Over HTTPS, ``when_supported`` streams uploads as aws-chunked with a CRC32 trailer; moto takes both."""
    bucket = moto_tls.new_bucket("unit-tls")
    bank = S3Bank(moto_tls.bank_options(
        bucket, request_checksum_calculation=checksums, response_checksum_validation=checksums,
        multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    try:
        sent = record_requests(bank)
        value = bytes(range(256)) * (44 * 1024 + 7)  # 11 MiB and a bit: three parts
        bank.put_object("small", io.BytesIO(b"hello"))
        bank.put_object("large", io.BytesIO(value))
        assert bank.get_object("small") == b"hello"
        assert bank.get_object("large") == value
        encodings = {str(r.headers.get("Content-Encoding", b"")) for r in sent if r.method == "PUT"}
        assert any("aws-chunked" in e for e in encodings) is (checksums == "when_supported")
    finally:
        bank.close()
        moto_tls.purge_bucket(bucket)


def test_sample_provider_file_gives_a_valid_bank() -> None:
    """providers.d/s3.conf (disabled) parses, validates and builds an S3Bank without touching the network."""
    from pathlib import Path

    from strongroom.protection.providers import coerce_options, parse_ini

    ini = parse_ini(str(Path(__file__).parents[3] / "providers.d" / "s3.conf"), {"state_dir": "/nonexistent"})
    assert ini.single("provider", "enabled") == "false"
    options = coerce_options(ini, "s3", S3Bank.options_schema)
    assert options["addressing_style"] == "path" and options["request_checksum_calculation"] == "when_required"
    bank = S3Bank(options)
    assert "CHANGE-ME" not in repr(bank)
    bank.close()
