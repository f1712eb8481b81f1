"""A bank in an S3 bucket: AWS S3 or any S3-compatible store (Swift s3api, Ceph RGW, MinIO...).

Mapping
-------
A key ``a/b/c`` is the object ``<key_prefix>a/b/c`` of the bucket.  S3 is flat,
so a key and its "children" coexist naturally, a put is atomic for readers
(old value or new) and an overwrite replaces the metadata wholesale.
Listing uses ListObjectsV2 with ``StartAfter`` (the marker) and continuation
tokens; S3 lists keys in UTF-8 byte order, which is the bank's order.

Metadata travels as ``x-amz-meta-<name>`` headers, which must be ASCII and lose
leading/trailing blanks.  A value that is not plain printable ASCII words
(non-ASCII, empty, padded, doubled or control characters, or starting with
``=?``) is sent as ``=?utf-8?b?<base64>?=`` and decoded on ``head_object``; the
encoding is reversible and unambiguous.

Large values
------------
A value longer than ``multipart_threshold`` (stream or bytes) is uploaded as a
multipart upload of ``multipart_chunksize`` parts read one at a time: memory
stays around ``multipart_threshold + multipart_chunksize`` whatever the size.
If the source stream raises, the upload is aborted: nothing becomes visible and
the previous value survives.  Each part (and each single put) carries a
``Content-MD5`` that every S3 implementation verifies, so the bytes stored are
the bytes sent even when the newer CRC32 checksums are off (see below).

Checksums
---------
botocore >= 1.36 sends CRC32 checksums on every upload by default (over HTTPS
as ``aws-chunked`` bodies with a trailer); many S3-compatible stores reject them.  The
``request_checksum_calculation`` and ``response_checksum_validation`` options
default to ``when_required``, which works with AWS and with S3-compatible
stores alike; set them to ``when_supported`` for AWS-only banks if you prefer.

Errors and retries
------------------
botocore's own retries are disabled (one attempt per call): retrying belongs to
:class:`strongroom.bank_plugins.retry.RetryingBank`.  5xx answers, throttling
(``SlowDown``...), timeouts and connection failures raise
``BankTransientError``; everything else ``BankError``.  Messages name the bucket
and endpoint, never the credentials; records of the boto/urllib3 loggers are
scrubbed of the keys and request signatures this plugin uses.

The client is created on first use (a bank whose endpoint is down can be
constructed), once, under a lock, from one botocore session shared by every
bank (sessions are not thread-safe, clients are); the credentials are given to
the client, never stored in the shared session.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import email.utils
import hashlib
import io
import logging
import re
import threading
import urllib.parse
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, ClassVar, NoReturn, Protocol, TypeVar

import jsonschema

from strongroom import exceptions
from strongroom.bank_plugins.base import LEASE_OPTIONS, BankPlugin, ObjectInfo

LOG = logging.getLogger(__name__)
T = TypeVar("T")

MiB = 1 << 20
#: S3's limits on multipart uploads: parts of 5 MiB to 5 GiB (the last one may be smaller), 10,000 parts.
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
#: One ListObjectsV2 page holds at most this many keys.
MAX_PAGE = 1000
#: Streams are read in pieces of at most this size.
READ_PIECE = 1 * MiB

SECRET_OPTIONS = frozenset({"secret_access_key", "session_token"})
CHECKSUM_MODES = ["when_required", "when_supported"]

_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
    "BandwidthLimitExceeded", "RequestTimeout", "RequestTimeoutException", "InternalError",
    "ServiceUnavailable", "OperationAborted", "PriorRequestNotComplete",
})
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


# -- metadata encoding -------------------------------------------------------

_PLAIN_VALUE = re.compile(r"[!-~]+(?: [!-~]+)*")
_ENCODED_PREFIX = "=?utf-8?b?"
_ENCODED_SUFFIX = "?="


def encode_metadata_value(value: str) -> str:
    """An ASCII header value that :func:`decode_metadata_value` turns back into ``value``."""
    if _PLAIN_VALUE.fullmatch(value) and not value.startswith("=?"):
        return value
    raw = value.encode("utf-8", "surrogatepass")
    return _ENCODED_PREFIX + base64.b64encode(raw).decode("ascii") + _ENCODED_SUFFIX


def decode_metadata_value(value: str) -> str:
    """Undo :func:`encode_metadata_value` (plain values come back unchanged)."""
    if value[:len(_ENCODED_PREFIX)].lower() == _ENCODED_PREFIX and value.endswith(_ENCODED_SUFFIX):
        body = value[len(_ENCODED_PREFIX):-len(_ENCODED_SUFFIX)]
        try:
            return base64.b64decode(body, validate=True).decode("utf-8", "surrogatepass")
        except (binascii.Error, ValueError):
            return value  # not ours: leave it as the store gave it
    return value


# -- log scrubbing -------------------------------------------------------------


class _Redactor(logging.Filter):
    """Rewrites boto/urllib3 log records so that no credential or signature reaches a handler.

    botocore logs, at DEBUG, the signed request (``Authorization`` header: access
    key id and signature), the canonical request and the signature itself.  The
    secret key is never logged by botocore; it is scrubbed anyway, with every
    other credential value of a live :class:`S3Bank`.
    """

    _PATTERNS = [
        (re.compile(r"(Credential=)[^/,\s'\"]+"), r"\1***"),
        (re.compile(r"((?:X-Amz-)?Signature=)[0-9a-fA-F]+"), r"\1***"),
        (re.compile(r"(Signature:\s*)[0-9a-fA-F]{16,}"), r"\1***"),
        (re.compile(r"(AWS )[^:\s'\"]+:[A-Za-z0-9+/=]+"), r"\1***:***"),  # SigV2 header
        (re.compile(r"((?i:x-amz-security-token)['\"]?\s*[:=]\s*b?['\"]?)[^'\",\s}]+"), r"\1***"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._owners: weakref.WeakKeyDictionary[object, tuple[str, ...]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def register(self, owner: object, secrets: tuple[str, ...]) -> None:
        with self._lock:
            self._owners[owner] = tuple(s for s in secrets if s)

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = {s for values in self._owners.values() for s in values}
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        for pattern, replacement in self._PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a malformed record: the logging module reports it itself
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None:
            text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info, record.exc_text = None, text
        return True


_REDACTOR = _Redactor()
_SCRUBBED_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")


def _install_redactor() -> None:
    """Attach the redactor to every boto/urllib3 logger that exists (filters are per logger)."""
    names = [name for name in list(logging.root.manager.loggerDict)
             if name.split(".", 1)[0] in _SCRUBBED_LOGGERS]
    for name in sorted(set(names) | set(_SCRUBBED_LOGGERS)):
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)


# -- options -------------------------------------------------------------------


def _validate(options: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """Check ``options`` against ``schema``; ``ConfigError`` names the option, never a secret's value."""
    validator = jsonschema.Draft202012Validator(dict(schema))
    errors = sorted(validator.iter_errors(dict(options)), key=lambda e: [str(p) for p in e.path])
    if not errors:
        return
    err = errors[0]
    if err.path:
        name = str(err.path[0])
        message = "has an invalid value (not shown)" if name in SECRET_OPTIONS else err.message
    elif err.validator == "additionalProperties":
        name = ", ".join(sorted(set(options) - set(schema.get("properties", {}))))
        message = "unknown option"
    elif err.validator == "required" and "'" in err.message:
        name, message = err.message.split("'")[1], "is required"
    elif err.validator == "dependentRequired":
        name, message = "access_key_id", "secret_access_key and access_key_id go together"
        if "session_token" in options:
            message = "session_token needs access_key_id and secret_access_key"
    else:
        name, message = "options", err.message
    raise exceptions.ConfigError(reason=f"s3 bank option {name!r}: {message}", key=name)


def _check_endpoint(endpoint: str) -> None:
    """``http(s)://host[:port][/path]``; errors never echo the value (it might hold a secret)."""
    if "@" in endpoint:
        raise exceptions.ConfigError(
            reason="s3 bank option 'endpoint_url': must not carry credentials (no '@'); use access_key_id "
                   "and secret_access_key", key="endpoint_url")
    try:
        parts = urllib.parse.urlsplit(endpoint)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query \
            and not parts.fragment
        _ = parts.port  # raises ValueError if the port is not a number
    except ValueError:
        valid = False
    if not valid:
        raise exceptions.ConfigError(
            reason="s3 bank option 'endpoint_url': must be an http:// or https:// URL: scheme://host[:port][/path]",
            key="endpoint_url")


# -- streams -------------------------------------------------------------------


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _read_up_to(stream: _Readable, size: int) -> bytes:
    """Read from ``stream`` until ``size`` bytes or EOF (streams may return short reads)."""
    pieces: list[bytes] = []
    remaining = size
    while remaining > 0:
        piece = stream.read(min(remaining, READ_PIECE))
        if not piece:
            break
        pieces.append(bytes(piece))
        remaining -= len(piece)
    return b"".join(pieces)


class _Prepended:
    """``head`` then the rest of ``stream``; ``head`` is released once read."""

    def __init__(self, head: bytes, stream: _Readable) -> None:
        self._head: memoryview | None = memoryview(head)
        self._stream = stream

    def read(self, size: int = -1, /) -> bytes:
        if self._head is None:
            return self._stream.read(size)
        if size < 0 or size >= len(self._head):
            piece, self._head = bytes(self._head), None
            return piece
        piece, self._head = bytes(self._head[:size]), self._head[size:]
        return piece


class _BodyReader(io.RawIOBase):
    """A raw reader over a botocore ``StreamingBody`` that raises the bank's errors."""

    def __init__(self, body: Any, on_error: Callable[[Exception], NoReturn]) -> None:
        super().__init__()
        self._body = body
        self._on_error = on_error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._body.read(len(view))
        except _boto_errors() as err:
            self._on_error(err)
        view[:len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        pieces: list[bytes] = []
        while True:
            try:
                piece: bytes = self._body.read(READ_PIECE)
            except _boto_errors() as err:
                self._on_error(err)
            if not piece:
                return b"".join(pieces)
            pieces.append(piece)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _boto_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError, OSError)


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


# -- the plugin ----------------------------------------------------------------


class S3Bank(BankPlugin):
    """Objects in one S3 bucket (see the module docstring)."""

    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "endpoint_url": {"type": "string", "minLength": 1},
            "region_name": {"type": "string", "minLength": 1},
            "bucket": {"type": "string", "minLength": 3, "maxLength": 255,
                       "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]*$"},
            "key_prefix": {"type": "string", "pattern": r"^([^/]+/)+$"},
            "access_key_id": {"type": "string", "minLength": 1},
            "secret_access_key": {"type": "string", "minLength": 1},
            "session_token": {"type": "string", "minLength": 1},
            "addressing_style": {"enum": ["path", "virtual", "auto"]},
            "signature_version": {"enum": ["s3v4", "s3"]},
            "verify_ssl": {"type": "boolean"},
            "ca_bundle": {"type": "string", "minLength": 1},
            "request_checksum_calculation": {"enum": CHECKSUM_MODES},
            "response_checksum_validation": {"enum": CHECKSUM_MODES},
            "content_md5": {"type": "boolean"},
            "connect_timeout": {"type": "number", "exclusiveMinimum": 0},
            "read_timeout": {"type": "number", "exclusiveMinimum": 0},
            "max_pool_connections": {"type": "integer", "minimum": 1, "maximum": 1000},
            "multipart_threshold": {"type": "integer", "minimum": MIN_PART_SIZE, "maximum": MAX_PART_SIZE},
            "multipart_chunksize": {"type": "integer", "minimum": MIN_PART_SIZE, "maximum": MAX_PART_SIZE},
            **LEASE_OPTIONS,
        },
        "required": ["bucket"],
        "dependentRequired": {
            "access_key_id": ["secret_access_key"],
            "secret_access_key": ["access_key_id"],
            "session_token": ["access_key_id", "secret_access_key"],
        },
        "additionalProperties": False,
    }
    supports_expiry = False  # S3 lifecycle rules count days: useless for leases

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "region_name": "us-east-1",
        "addressing_style": "auto",
        "signature_version": "s3v4",
        "verify_ssl": True,
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
        "content_md5": True,
        "connect_timeout": 10.0,
        "read_timeout": 60.0,
        "max_pool_connections": 32,
        "multipart_threshold": 16 * MiB,
        "multipart_chunksize": 8 * MiB,
    }

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        _validate(options, cls.options_schema)
        opts = {**cls.DEFAULTS, **options}
        if "endpoint_url" in options:
            _check_endpoint(opts["endpoint_url"])
        if "ca_bundle" in options and not opts["verify_ssl"]:
            raise exceptions.ConfigError(
                reason="s3 bank option 'ca_bundle': given with verify_ssl = false; drop one of them", key="ca_bundle")

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.check_options(self.options)
        opts = {**self.DEFAULTS, **self.options}
        self.bucket: str = opts["bucket"]
        self.endpoint_url: str | None = opts.get("endpoint_url")
        self.region_name: str = opts["region_name"]
        self.key_prefix: str = opts.get("key_prefix", "")
        self.multipart_threshold: int = opts["multipart_threshold"]
        self.multipart_chunksize: int = opts["multipart_chunksize"]
        self.content_md5: bool = opts["content_md5"]
        self._opts = opts
        self._lock = threading.Lock()
        self._client: Any = None
        self._bucket_ready = False
        _REDACTOR.register(self, tuple(str(opts.get(k) or "") for k in
                                       ("secret_access_key", "session_token", "access_key_id")))

    def __repr__(self) -> str:
        return (f"S3Bank(bucket={self.bucket!r}, endpoint_url={self.endpoint_url!r}, "
                f"region_name={self.region_name!r})")

    @property
    def where(self) -> str:
        """The bank, as error messages name it (never with credentials)."""
        return f"s3 bucket {self.bucket!r} at {self.endpoint_url or 'AWS ' + self.region_name}"

    # -- the client ----------------------------------------------------------

    def botocore_config(self) -> Any:
        """The ``botocore.config.Config`` this bank's client uses."""
        from botocore.config import Config

        opts = self._opts
        settings: dict[str, Any] = {
            "region_name": self.region_name,
            "signature_version": opts["signature_version"],
            "s3": {"addressing_style": opts["addressing_style"]},
            "retries": {"total_max_attempts": 1, "mode": "standard"},
            "connect_timeout": opts["connect_timeout"],
            "read_timeout": opts["read_timeout"],
            "max_pool_connections": opts["max_pool_connections"],
            "user_agent_extra": "strongroom",
        }
        # botocore < 1.36 has neither setting and sends no default checksums anyway.
        for name in ("request_checksum_calculation", "response_checksum_validation"):
            if name in Config.OPTION_DEFAULTS:
                settings[name] = opts[name]
        return Config(**settings)

    def client(self) -> Any:
        """The (thread-safe) botocore S3 client, created on first use; the bucket is created then if missing."""
        client = self._client
        if client is not None and self._bucket_ready:
            return client
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
                _install_redactor()
            if not self._bucket_ready:
                self._ensure_bucket(self._client)
                self._bucket_ready = True
            return self._client

    def _make_client(self) -> Any:
        opts = self._opts
        verify: bool | str = opts["ca_bundle"] if "ca_bundle" in opts else bool(opts["verify_ssl"])
        try:
            return _create_client(
                region_name=self.region_name, endpoint_url=self.endpoint_url, verify=verify,
                aws_access_key_id=opts.get("access_key_id"), aws_secret_access_key=opts.get("secret_access_key"),
                aws_session_token=opts.get("session_token"), config=self.botocore_config())
        except _boto_errors() as err:
            self._raise(err, "connect")
        except ValueError as err:  # botocore rejects malformed endpoints with ValueError
            raise exceptions.BankError(reason=f"{self.where}: cannot create a client: {err}") from err

    def _ensure_bucket(self, client: Any) -> None:
        from botocore.exceptions import ClientError

        try:
            client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as err:
            if _status(err) != 404:
                self._raise(err, "check the bucket")
        except _boto_errors() as err:
            self._raise(err, "check the bucket")
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region_name != "us-east-1":  # us-east-1 refuses a LocationConstraint naming itself
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region_name}
        try:
            client.create_bucket(**kwargs)
            LOG.info("Created %s", self.where)
        except ClientError as err:
            if _code(err) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                self._raise(err, "create the bucket")
            try:  # created meanwhile: by us (another process) or by someone else?
                client.head_bucket(Bucket=self.bucket)
            except _boto_errors() as again:
                self._raise(again, "use the bucket (its name is taken?)")
        except _boto_errors() as err:
            self._raise(err, "create the bucket")

    def close(self) -> None:
        with self._lock:
            client, self._client, self._bucket_ready = self._client, None, False
        if client is not None:
            close = getattr(client, "close", None)
            if close is not None:
                close()

    # -- errors --------------------------------------------------------------

    def _raise(self, err: Exception, action: str, key: str | None = None) -> NoReturn:
        """Raise the bank error that ``err`` (from boto) stands for."""
        from botocore.exceptions import (
            ClientError,
            ConnectionError,
            HTTPClientError,
            IncompleteReadError,
            SSLError,
        )

        what = f"{action} {key!r}" if key is not None else action
        if isinstance(err, ClientError):
            code, status = _code(err), _status(err)
            if key is not None and (code in _NOT_FOUND_CODES or (status == 404 and code != "NoSuchBucket")):
                raise exceptions.BankObjectNotFound(key=key) from err
            message = err.response.get("Error", {}).get("Message") or ""
            label = f"HTTP {status}" + (f" {code}" if code and code != str(status) else "")
            reason = _REDACTOR.redact(f"{self.where}: cannot {what}: {label}" + (f": {message}" if message else ""))
            if status is not None and (status >= 500 or status in (408, 429)) or code in _TRANSIENT_CODES:
                raise exceptions.BankTransientError(reason=reason) from err
            raise exceptions.BankError(reason=reason) from err
        reason = _REDACTOR.redact(f"{self.where}: cannot {what}: {type(err).__name__}: {err}")
        if isinstance(err, SSLError) and "certificate" in str(err).lower():
            raise exceptions.BankError(reason=reason) from err
        if isinstance(err, ConnectionError | HTTPClientError | IncompleteReadError | OSError):
            raise exceptions.BankTransientError(reason=reason) from err
        raise exceptions.BankError(reason=reason) from err

    def _call(self, action: str, key: str | None, func: Callable[[Any], T]) -> T:
        client = self.client()
        try:
            return func(client)
        except _boto_errors() as err:
            self._raise(err, action, key)

    # -- writing -------------------------------------------------------------

    def put_object(self, key: str, data: bytes | IO[bytes],
                   metadata: Mapping[str, str] | None = None) -> None:
        headers = {name: encode_metadata_value(value) for name, value in (metadata or {}).items()}
        if isinstance(data, bytes | bytearray | memoryview):
            value = bytes(data)  # no copy for bytes
            if len(value) <= self.multipart_threshold:
                self._put_single(key, value, headers)
                return
            stream: _Readable = io.BytesIO(value)
        else:
            stream = data
        head = _read_up_to(stream, self.multipart_threshold + 1)
        if len(head) <= self.multipart_threshold:
            self._put_single(key, head, headers)
            return
        source = _Prepended(head, stream)
        del head  # the source releases it as the first parts consume it
        self._put_multipart(key, source, headers)

    def _put_single(self, key: str, value: bytes, headers: dict[str, str]) -> None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key_prefix + key,
                                  "Body": value, "Metadata": headers}
        if self.content_md5:
            kwargs["ContentMD5"] = _md5(value)
        self._call("write", key, lambda c: c.put_object(**kwargs))

    def _put_multipart(self, key: str, source: _Readable, headers: dict[str, str]) -> None:
        full = self.key_prefix + key
        created = self._call("start a multipart upload of", key, lambda c: c.create_multipart_upload(
            Bucket=self.bucket, Key=full, Metadata=headers))
        upload_id = created["UploadId"]
        try:
            parts = []
            for number, part in enumerate(self._parts(source), start=1):
                if number > MAX_PARTS:
                    raise exceptions.BankError(
                        reason=f"{self.where}: cannot write {key!r}: more than {MAX_PARTS} parts of "
                               f"{self.multipart_chunksize} bytes (raise multipart_chunksize)")
                kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": full, "UploadId": upload_id,
                                          "PartNumber": number, "Body": part}
                if self.content_md5:
                    kwargs["ContentMD5"] = _md5(part)
                answer = self._upload_part(key, kwargs)
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            self._call("complete the multipart upload of", key, lambda c: c.complete_multipart_upload(
                Bucket=self.bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts}))
        except BaseException:
            self._abort(key, upload_id)
            raise

    def _upload_part(self, key: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self._call("write a part of", key, lambda c: c.upload_part(**kwargs))
        return answer

    def _parts(self, source: _Readable) -> Iterator[bytes]:
        """``source`` cut into parts of ``multipart_chunksize`` bytes (the last one shorter), one at a time."""
        while part := _read_up_to(source, self.multipart_chunksize):
            yield part
            if len(part) < self.multipart_chunksize:
                return
            del part

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self._call("abort the multipart upload of", key, lambda c: c.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key_prefix + key, UploadId=upload_id))
        except exceptions.BankError as err:
            # Invisible to readers; the store's lifecycle rules (or a later abort) reclaim its parts.
            LOG.warning("Could not abort multipart upload %s of %r: %s", upload_id, key, err)

    def delete_object(self, key: str) -> None:
        # S3 answers 204 for a missing key; a store that answers 404 means the same.
        try:
            self._call("delete", key, lambda c: c.delete_object(Bucket=self.bucket, Key=self.key_prefix + key))
        except exceptions.BankObjectNotFound:
            return

    # -- reading -------------------------------------------------------------

    def get_object(self, key: str) -> bytes:
        with self._open_raw(key) as raw:
            return raw.readall()

    def open_object(self, key: str) -> IO[bytes]:
        return io.BufferedReader(self._open_raw(key), buffer_size=READ_PIECE)

    def _open_raw(self, key: str) -> _BodyReader:
        answer = self._call("read", key, lambda c: c.get_object(Bucket=self.bucket, Key=self.key_prefix + key))

        def on_error(err: Exception) -> NoReturn:
            self._raise(err, "read", key)

        return _BodyReader(answer["Body"], on_error)

    def head_object(self, key: str) -> ObjectInfo:
        answer = self._call("head", key, lambda c: c.head_object(Bucket=self.bucket, Key=self.key_prefix + key))
        metadata = {name.lower(): decode_metadata_value(value)
                    for name, value in (answer.get("Metadata") or {}).items()}
        modified = answer.get("LastModified")
        if isinstance(modified, _dt.datetime):
            modified = modified.astimezone(_dt.UTC)
        return ObjectInfo(key=key, size=int(answer.get("ContentLength", 0)), metadata=metadata,
                          last_modified=modified)

    # -- listing -------------------------------------------------------------

    def list_objects(self, prefix: str = "", marker: str | None = None,
                     limit: int | None = None) -> list[str]:
        if limit is not None and limit <= 0:
            return []
        out: list[str] = []
        cut = len(self.key_prefix)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.key_prefix + prefix}
        if marker:
            kwargs["StartAfter"] = self.key_prefix + marker
        while True:
            want = MAX_PAGE if limit is None else min(MAX_PAGE, limit - len(out))
            kwargs["MaxKeys"] = want
            page = self._call("list", None, lambda c: c.list_objects_v2(**kwargs))
            out.extend(item["Key"][cut:] for item in page.get("Contents", ()))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token or (limit is not None and len(out) >= limit):
                return out[:limit] if limit is not None else out
            kwargs["ContinuationToken"] = token
            kwargs.pop("StartAfter", None)  # the token already says where to resume

    # -- the bank's clock ----------------------------------------------------

    def server_time(self) -> _dt.datetime | None:
        """The ``Date`` header of a HEAD on the bucket (one-second resolution), or None without one."""
        answer = self._call("read the clock of", None, lambda c: c.head_bucket(Bucket=self.bucket))
        date = (answer.get("ResponseMetadata", {}).get("HTTPHeaders") or {}).get("date")
        if not date:
            return None
        try:
            parsed = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=_dt.UTC)
        return parsed.astimezone(_dt.UTC)


_SESSION_LOCK = threading.Lock()
_SESSION: Any = None


def _create_client(**kwargs: Any) -> Any:
    """An S3 client from one shared botocore session (its loader caches the service model).

    Sessions are not thread-safe, so clients are created under a lock; the
    credentials are given to each client, never stored in the shared session.
    """
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            try:
                import botocore.session
            except ImportError as err:
                raise exceptions.ConfigError(
                    reason="the s3 bank needs boto3: pip install 'strongroom[s3]'") from err
            _SESSION = botocore.session.get_session()
        return _SESSION.create_client("s3", **kwargs)


def _code(err: Any) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: Any) -> int | None:
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None
