"""A bank in an OpenStack Swift container, on python-swiftclient (see ``doc/bank-swift.md``).

Objects
-------
A key is the name of one object in ``container`` (Swift names are UTF-8 and at
most 1024 bytes, like bank keys; container listings are in UTF-8 byte order,
like the bank contract).  The container is created on the first write.

A value of at most ``large_object_threshold`` bytes is one ``PUT`` (with its
MD5 as ``ETag``, which Swift verifies; up to 1 MiB first with ``If-None-Match:
*``, so that a new key costs one request and only an overwrite looks at the
value it replaces).  A larger one is a Static Large Object:
segments of ``segment_size`` bytes in ``segment_container`` (default
``<container>_segments``, so bank listings never show them), named
``<sha256(key)[:32]>/<upload id>/<index>``, then the manifest under the key.
The manifest ``PUT`` is what readers see, so a failed upload leaves the old
value (its segments are deleted again); an overwrite or delete removes the
segments of the value it replaces once the new state is in place.  A stream is
buffered up to the threshold (to tell which case it is) and otherwise uploaded
segment by segment in 64 KiB pieces, so a put holds about
``large_object_threshold`` bytes at most; ``open_object`` streams.

Metadata
--------
``X-Object-Meta-<name>`` headers.  Swift drops empty values and HTTP trims and
mangles others, so a value that is not plain printable ASCII without ``%`` is
stored as ``%`` followed by its percent-encoded UTF-8 (``""`` -> ``"%"``,
``"café"`` -> ``"%caf%C3%A9"``), and decoded on ``head_object``.

Errors, retries, threads
------------------------
5xx, 408/409/422/429/498/499, timeouts, resets and refused connections raise
``BankTransientError``; every other failure ``BankError``; messages name the
container and host, never a credential.  swiftclient is built with
``retries=0``: retrying is :class:`~strongroom.bank_plugins.retry.RetryingBank`'s
job.  swiftclient connections are not thread-safe, so each call borrows one from
a pool (a stream from ``open_object`` keeps its connection until it is closed).

Leases
------
``put_expiring_object`` sets ``X-Delete-After``: Swift answers 404 for the
object once its ``X-Delete-At`` has passed by the cluster's clock (before the
expirer reclaims it), and ``head_object`` reports it as ``expires_at``.
``server_time`` is the ``Date`` of a ``HEAD`` on the container.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import email.utils
import hashlib
import io
import json
import logging
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, ClassVar, TypeVar

import jsonschema

from strongroom import exceptions
from strongroom.bank_plugins.base import LEASE_OPTIONS, BankPlugin, ObjectInfo

LOG = logging.getLogger(__name__)
T = TypeVar("T")

MiB = 1 << 20
#: Swift's largest single object (``max_file_size``), hence the largest segment or single PUT.
MAX_OBJECT_SIZE = 5 * 1024 * MiB
DEFAULT_TIMEOUT = 30.0
DEFAULT_LARGE_OBJECT_THRESHOLD = 16 * MiB
DEFAULT_SEGMENT_SIZE = 64 * MiB
#: Pieces in which bodies are sent and streams are read.
UPLOAD_CHUNK = 64 * 1024
READ_CHUNK = MiB
#: Values up to this size are first sent with ``If-None-Match: *`` (see ``_put_single``).
CONDITIONAL_PUT_MAX = MiB
#: Swift caps a container listing page at 10,000 names.
LISTING_PAGE = 10_000
#: Idle connections kept for reuse (more may exist while busy).
MAX_IDLE_CONNECTIONS = 16
#: Swift's default metadata constraints (``[swift-constraints]``), checked before sending.
MAX_META_NAME_LENGTH = 128
MAX_META_VALUE_LENGTH = 256
MAX_META_COUNT = 90
MAX_META_OVERALL_SIZE = 4096
MAX_CONTAINER_NAME_LENGTH = 256

SECRET_OPTIONS = frozenset({"key", "preauth_token"})
KEYSTONE_OPTIONS = ("project_name", "project_id", "project_domain_name", "project_domain_id",
                    "user_domain_name", "user_domain_id", "region_name", "interface")
_META_HEADER = "x-object-meta-"
_TRANSIENT_STATUSES = frozenset({408, 409, 422, 429, 498, 499})
_CONTENT_TYPE = "application/octet-stream"

_STRING = {"type": "string", "minLength": 1}


def _hash(data: bytes | memoryview) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# -- options ------------------------------------------------------------------


def validate_options(options: Mapping[str, Any]) -> None:
    """Check ``options`` against :attr:`SwiftBank.options_schema` and each other.

    Raises ``ConfigError`` naming the option (never quoting a secret's value).
    """
    schema = SwiftBank.options_schema
    props: Mapping[str, Any] = schema["properties"]
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(dict(options)), key=lambda e: [str(p) for p in e.path])
    if errors:
        err = errors[0]
        if err.validator == "additionalProperties":
            name, message = sorted(set(options) - set(props))[0], "unknown option"
        elif err.validator == "required":
            name, message = str(err.message).split("'")[1], "is required"
        else:
            name = str(err.path[0]) if err.path else "-"
            message = err.message
            if name in SECRET_OPTIONS:
                message = f"must be a non-empty {props[name]['type']}"
        raise _option_error(name, message)

    def given(name: str) -> bool:
        return options.get(name) not in (None, "")

    for first, second in (("preauth_url", "preauth_token"), ("preauth_token", "preauth_url")):
        if given(first) and not given(second):
            raise _option_error(second, f"is required with {first}")
    version = str(options.get("auth_version", "1"))
    preauth = given("preauth_url")
    if given("auth_url") or not preauth or version == "3":
        for name in ("auth_url", "user", "key"):
            if not given(name):
                raise _option_error(name, f"is required (auth_version {version}"
                                          f"{'' if version == '3' else ', or preauth_url and preauth_token'})")
    if version == "1":
        for name in KEYSTONE_OPTIONS:
            if name in options:
                raise _option_error(name, "is a Keystone option: it needs auth_version 3")
    else:
        if not (given("project_name") or given("project_id")):
            raise _option_error("project_name", "auth_version 3 needs project_name or project_id")
        if given("project_name") and not (given("project_domain_name") or given("project_domain_id")):
            raise _option_error("project_domain_name",
                                "a project given by name needs project_domain_name or project_domain_id")
        if not (given("user_domain_name") or given("user_domain_id")):
            raise _option_error("user_domain_name", "a user given by name needs user_domain_name or user_domain_id")
    for name in ("auth_url", "preauth_url"):
        if given(name):
            parsed = urllib.parse.urlsplit(str(options[name]))
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise _option_error(name, "must be an http(s)://host[:port]/... URL")
            if "@" in parsed.netloc:
                raise _option_error(name, "must not carry credentials (use user and key)")
    container = str(options["container"])
    segments = str(options.get("segment_container") or f"{container}_segments")
    for name, value in (("container", container), ("segment_container", segments)):
        if "/" in value or len(value.encode("utf-8", "surrogatepass")) > MAX_CONTAINER_NAME_LENGTH:
            raise _option_error(name, f"{value!r} is not a Swift container name (no '/', at most "
                                      f"{MAX_CONTAINER_NAME_LENGTH} bytes)")
    if segments == container:
        raise _option_error("segment_container", "must differ from container")


def _option_error(name: str, message: str) -> exceptions.ConfigError:
    return exceptions.ConfigError(reason=f"swift bank option {name!r}: {message}", key=name)


def keystone_auth_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments of ``keystoneauth1.identity.v3.Password`` for these (validated, auth_version 3) options."""
    kwargs: dict[str, Any] = {"auth_url": options["auth_url"], "username": options["user"],
                              "password": options["key"]}
    for name in ("project_name", "project_id", "project_domain_name", "project_domain_id",
                 "user_domain_name", "user_domain_id"):
        if options.get(name):
            kwargs[name] = options[name]
    return kwargs


def connection_kwargs(options: Mapping[str, Any], session: Any = None) -> dict[str, Any]:
    """Arguments of ``swiftclient.client.Connection`` for these (validated) options.

    ``session`` is the shared Keystone session (``auth_version`` 3); without it
    the connection authenticates with tempauth/v1 itself.  swiftclient never
    retries (``retries=0``, no backoff): that is RetryingBank's job.
    """
    kwargs: dict[str, Any] = {
        "retries": 0, "starting_backoff": 0, "max_backoff": 0, "retry_on_ratelimit": False,
        "timeout": float(options.get("timeout", DEFAULT_TIMEOUT)),
        "insecure": bool(options.get("insecure", False)),
    }
    if options.get("cacert"):
        kwargs["cacert"] = options["cacert"]
    if options.get("preauth_url"):
        kwargs["preauthurl"] = options["preauth_url"]
        kwargs["preauthtoken"] = options["preauth_token"]
    if str(options.get("auth_version", "1")) == "3":
        kwargs["auth_version"] = "3"
        kwargs["session"] = session
        os_options = {"service_type": "object-store", "endpoint_type": options.get("interface", "public")}
        if options.get("region_name"):
            os_options["region_name"] = options["region_name"]
        kwargs["os_options"] = os_options
    elif options.get("auth_url"):
        kwargs.update(authurl=options["auth_url"], user=options["user"], key=options["key"], auth_version="1")
    return kwargs


def _keystone_session(options: Mapping[str, Any]) -> Any:
    """A keystoneauth1 session (thread-safe, one token for every connection of the bank)."""
    from keystoneauth1 import session as ks_session
    from keystoneauth1.identity import v3

    verify: bool | str = False if options.get("insecure") else options.get("cacert") or True
    return ks_session.Session(auth=v3.Password(**keystone_auth_kwargs(options)), verify=verify,
                              timeout=float(options.get("timeout", DEFAULT_TIMEOUT)))


def _swiftclient_connection(**kwargs: Any) -> Any:
    from swiftclient import client

    # swiftclient logs request headers at DEBUG with secrets cut to a prefix of up
    # to 16 characters; show none of it.
    client.logger_settings["redact_sensitive_headers"] = True
    client.logger_settings["reveal_sensitive_prefix"] = 0
    return client.Connection(**kwargs)


class _RedactedOptions(dict[str, Any]):
    """The options, with secrets masked wherever they are printed."""

    def __repr__(self) -> str:
        return repr({k: ("***" if k in SECRET_OPTIONS else v) for k, v in self.items()})

    __str__ = __repr__


def _host_of(url: str | None) -> str:
    """``host:port`` of ``url`` (never its userinfo)."""
    if not url:
        return "?"
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or "?"
    return f"{host}:{parsed.port}" if parsed.port else host


# -- metadata -----------------------------------------------------------------


def encode_metadata_value(value: str) -> str:
    """A header-safe, reversible form of ``value`` (see the module docstring)."""
    if value and all("!" <= ch <= "~" and ch != "%" for ch in value):
        return value
    return "%" + urllib.parse.quote_from_bytes(value.encode("utf-8", "surrogatepass"), safe="")


def decode_metadata_value(stored: str) -> str:
    if stored.startswith("%"):
        return urllib.parse.unquote_to_bytes(stored[1:]).decode("utf-8", "surrogatepass")
    return stored


# -- byte sources for uploads -------------------------------------------------


class _SourceError(Exception):
    """Wraps an exception raised by the caller's stream, so it is re-raised as it was."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Source:
    """The value being put: a buffered head (``memoryview``) then, maybe, the rest of a stream."""

    def __init__(self, head: memoryview, stream: IO[bytes] | None = None) -> None:
        self._head: memoryview | None = head
        self._pos = 0
        self._stream = stream
        self._peeked = b""
        self.exhausted = stream is None and not len(head)

    def known_remaining(self) -> int | None:
        """Bytes left, if known (a value given as bytes)."""
        if self._stream is not None:
            return None
        return len(self._head) - self._pos if self._head is not None else 0

    def peek_eof(self) -> bool:
        if self._head is not None and self._pos < len(self._head):
            return False
        if self._peeked:
            return False
        if self._stream is None:
            return True
        self._peeked = self._read_stream(1)
        return not self._peeked

    def read(self, n: int) -> bytes:
        if self._head is not None:
            if self._pos < len(self._head):
                piece = bytes(self._head[self._pos:self._pos + n])
                self._pos += len(piece)
                return piece
            self._head = None  # release the buffer as soon as it is sent
        if self._peeked:
            piece, self._peeked = self._peeked, b""
            return piece
        if self._stream is None:
            return b""
        return self._read_stream(n)

    def _read_stream(self, n: int) -> bytes:
        assert self._stream is not None
        try:
            piece = self._stream.read(n)
        except Exception as err:
            raise _SourceError(err) from err
        return bytes(piece or b"")


class _SegmentReader:
    """Reads at most ``limit`` bytes of a :class:`_Source` for one ``PUT``, hashing them as they go."""

    def __init__(self, source: _Source, limit: int) -> None:
        self._source = source
        self._left = limit
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if n is None or n < 0 else min(n, self._left)
        piece = self._source.read(min(want, UPLOAD_CHUNK))
        self._left -= len(piece)
        self.size += len(piece)
        self._md5.update(piece)
        return piece

    @property
    def etag(self) -> str:
        return self._md5.hexdigest()


def _read_head(stream: IO[bytes], limit: int) -> bytearray:
    """Up to ``limit`` bytes of ``stream`` (fewer only at its end)."""
    buf = bytearray()
    while len(buf) < limit:
        try:
            piece = stream.read(min(READ_CHUNK, limit - len(buf)))
        except Exception as err:
            raise _SourceError(err) from err
        if not piece:
            break
        buf += piece
    return buf


# -- reading ------------------------------------------------------------------


class _ObjectReader(io.RawIOBase):
    """A raw stream over a swiftclient object body; gives its connection back on close."""

    def __init__(self, body: Any, on_error: Callable[[Exception], exceptions.BankError | None],
                 on_close: Callable[[bool], None]) -> None:
        super().__init__()
        self._body = body
        self._on_error = on_error
        self._on_close = on_close
        self._broken = False
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._eof:
            return 0
        view = memoryview(buffer).cast("B")
        try:
            piece = self._body.read(len(view))
        except Exception as err:
            self._broken = True
            mapped = self._on_error(err)
            if mapped is None:
                raise
            raise mapped from err
        if not piece:
            self._eof = True
            return 0
        view[:len(piece)] = piece
        return len(piece)

    def close(self) -> None:
        if not self.closed:
            try:
                self._body.close()
            except Exception:  # noqa: BLE001 - closing a dead connection is not an error
                self._broken = True
            self._on_close(self._broken)
        super().close()


# -- the plugin ---------------------------------------------------------------


class SwiftBank(BankPlugin):
    """Objects in one Swift container (see the module docstring)."""

    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "auth_url": _STRING,
            "auth_version": {"type": "string", "enum": ["1", "3"]},
            "user": _STRING,
            "key": _STRING,
            "project_name": _STRING,
            "project_id": _STRING,
            "project_domain_name": _STRING,
            "project_domain_id": _STRING,
            "user_domain_name": _STRING,
            "user_domain_id": _STRING,
            "region_name": _STRING,
            "interface": {"type": "string", "enum": ["public", "internal", "admin"]},
            "preauth_url": _STRING,
            "preauth_token": _STRING,
            "container": _STRING,
            "segment_container": _STRING,
            "insecure": {"type": "boolean"},
            "cacert": _STRING,
            "timeout": {"type": "number", "exclusiveMinimum": 0},
            "large_object_threshold": {"type": "integer", "minimum": MiB, "maximum": MAX_OBJECT_SIZE},
            "segment_size": {"type": "integer", "minimum": MiB, "maximum": MAX_OBJECT_SIZE},
            **LEASE_OPTIONS,
        },
        "required": ["container"],
        "additionalProperties": False,
    }
    supports_expiry: bool = True

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        validate_options(options)

    def __init__(self, options: Mapping[str, Any] | None = None, *,
                 connection_factory: Callable[..., Any] | None = None,
                 session_factory: Callable[[Mapping[str, Any]], Any] | None = None) -> None:
        """Validate the options; connect on first use.

        ``connection_factory`` (default ``swiftclient.client.Connection``) and
        ``session_factory`` (default: a keystoneauth1 v3 password session) are
        injectable for tests.
        """
        super().__init__(options)
        validate_options(self.options)
        self.options = _RedactedOptions(self.options)
        self.container: str = self.options["container"]
        self.segment_container: str = self.options.get("segment_container") or f"{self.container}_segments"
        self.large_object_threshold: int = self.options.get("large_object_threshold",
                                                            DEFAULT_LARGE_OBJECT_THRESHOLD)
        self.segment_size: int = self.options.get("segment_size", DEFAULT_SEGMENT_SIZE)
        self._keystone = str(self.options.get("auth_version", "1")) == "3"
        self._connection_factory = connection_factory or _swiftclient_connection
        self._session_factory = session_factory or _keystone_session
        self._session: Any = None
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._closed = False
        self._ready: set[str] = set()  # containers known to exist
        self._storage_host: str | None = None
        self._tokens: deque[str] = deque(maxlen=32)  # recent tokens, scrubbed from messages

    def __repr__(self) -> str:
        where = self.options.get("preauth_url") if not self.options.get("auth_url") else self.options["auth_url"]
        user = f", user={self.options['user']!r}" if self.options.get("user") else ""
        return f"SwiftBank(container={self.container!r}, url={_host_of(where)!r}{user})"

    # -- connections --------------------------------------------------------

    def _new_connection(self) -> Any:
        session = None
        if self._keystone:
            with self._lock:
                if self._session is None:
                    self._session = self._session_factory(self.options)
                session = self._session
        return self._connection_factory(**connection_kwargs(self.options, session))

    def _acquire(self) -> Any:
        conn = None
        with self._lock:
            if self._idle:
                conn = self._idle.pop()
        if conn is None:
            return self._new_connection()
        if self._session is not None and getattr(conn, "url", None):
            # swiftclient keeps the token it first got until Swift refuses it; the
            # session's is renewed before it expires, so an upload never meets a 401.
            conn.token = self._session.get_token()
        return conn

    def _release(self, conn: Any, broken: bool) -> None:
        token = getattr(conn, "token", None)
        url = getattr(conn, "url", None)
        with self._lock:
            if isinstance(token, str) and token and token not in self._tokens:
                self._tokens.append(token)
            if isinstance(url, str) and url:
                self._storage_host = _host_of(url)
            if not broken and not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        _close_quietly(conn)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        conn = self._acquire()
        broken = True
        try:
            yield conn
            broken = False
        except Exception as err:
            broken = not _is_http_error(err)
            raise
        finally:
            self._release(conn, broken)

    def close(self) -> None:
        """Close the idle connections, and the others as they come back.  Idempotent.

        The bank still works afterwards, without keeping connections.
        """
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            _close_quietly(conn)

    # -- errors -------------------------------------------------------------

    def _where(self) -> str:
        host = self._storage_host or _host_of(self.options.get("auth_url") or self.options.get("preauth_url"))
        return f"swift container {self.container!r} at {host}"

    def _scrub(self, text: str) -> str:
        secrets = [str(self.options[name]) for name in SECRET_OPTIONS if self.options.get(name)]
        with self._lock:
            secrets.extend(self._tokens)
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def _error(self, err: BaseException, action: str, key: str | None = None) -> exceptions.BankError | None:
        """The bank error for ``err`` raised while doing ``action`` (None: not a storage error)."""
        described = _describe(err)
        if described is None:
            return None
        detail, transient = described
        target = f" {key!r}" if key is not None else ""
        reason = self._scrub(f"{self._where()}: cannot {action}{target}: {detail}")
        if transient:
            return exceptions.BankTransientError(reason=reason)
        return exceptions.BankError(reason=reason)

    def _call(self, action: str, key: str | None, func: Callable[[Any], T]) -> T:
        """Run ``func(connection)``, turning storage failures into bank errors."""
        try:
            with self._connection() as conn:
                return func(conn)
        except _SourceError as err:
            raise err.error from None
        except exceptions.BankError:
            raise
        except Exception as err:
            mapped = self._error(err, action, key)
            if mapped is None:
                raise
            raise mapped from err

    # -- containers ---------------------------------------------------------

    def _ensure_container(self, conn: Any, name: str) -> None:
        if name in self._ready:
            return
        conn.put_container(name)
        LOG.debug("%s: container %r is there", self._where(), name)
        self._ready.add(name)

    # -- writing ------------------------------------------------------------

    def put_object(self, key: str, data: bytes | IO[bytes],
                   metadata: Mapping[str, str] | None = None) -> None:
        self._put(key, data, self._metadata_headers(key, metadata))

    def put_expiring_object(self, key: str, data: bytes, metadata: Mapping[str, str] | None,
                            delete_after: int) -> None:
        if isinstance(delete_after, bool) or not isinstance(delete_after, int) or delete_after < 1:
            raise exceptions.InvalidInput(reason=f"delete_after must be a positive integer, not {delete_after!r}")
        headers = self._metadata_headers(key, metadata)
        headers["X-Delete-After"] = str(delete_after)
        # Always one object: segments would outlive (or predecease) their manifest.
        self._put(key, bytes(data), headers, single=True)

    def _put(self, key: str, data: bytes | IO[bytes], headers: dict[str, str], single: bool = False) -> None:
        def put(conn: Any) -> None:
            if isinstance(data, bytes | bytearray | memoryview):
                view = memoryview(data).cast("B")
                if single or len(view) <= self.large_object_threshold:
                    self._put_single(conn, key, view, headers)
                    return
                source = _Source(view)
            else:
                head = _read_head(data, self.large_object_threshold + 1)
                if len(head) <= self.large_object_threshold:
                    self._put_single(conn, key, memoryview(head), headers)
                    return
                source = _Source(memoryview(head), data)
                del head  # the source releases it once sent
            old_segments = self._segments_of(conn, key)
            self._put_segmented(conn, key, source, headers)
            self._delete_segments(conn, key, old_segments)

        self._call("put", key, put)

    def _put_single(self, conn: Any, key: str, view: memoryview, headers: dict[str, str]) -> None:
        """One ``PUT``; then the segments of a large value it replaced are deleted.

        A small value is first sent with ``If-None-Match: *``: for a new key (the
        common case) that is the only request; 412 means the key exists, and only
        then is the old value looked at.  This is no lock (Swift's ``If-None-Match``
        is not atomic), just a way to skip a ``HEAD``; a bigger value is cheaper to
        ``HEAD`` first than to send twice.
        """
        self._ensure_container(conn, self.container)
        if len(view) <= CONDITIONAL_PUT_MAX:
            try:
                self._send(conn, key, view, {**headers, "If-None-Match": "*"})
                return
            except Exception as err:
                if _status(err) != 412:
                    raise
        old_segments = self._segments_of(conn, key)
        self._send(conn, key, view, headers)
        self._delete_segments(conn, key, old_segments)

    def _send(self, conn: Any, key: str, view: memoryview, headers: dict[str, str]) -> None:
        def attempt() -> None:
            conn.put_object(self.container, key, _Source(view), content_length=len(view), etag=_hash(view),
                            content_type=_CONTENT_TYPE, headers=headers, chunk_size=UPLOAD_CHUNK)

        try:
            attempt()
        except Exception as err:
            if _status(err) != 404:
                raise
            # The container went away behind our back: make it again, once.
            self._ready.discard(self.container)
            self._ensure_container(conn, self.container)
            attempt()

    def _put_segmented(self, conn: Any, key: str, source: _Source, headers: dict[str, str]) -> None:
        # Checked on every large upload (two cheap requests next to the segments'): either
        # container may have been deleted behind our back.
        for container in (self.container, self.segment_container):
            conn.put_container(container)
            self._ready.add(container)
        upload = f"{hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}/" \
                 f"{time.time():.6f}-{uuid.uuid4().hex[:12]}"
        written: list[str] = []
        manifest: list[dict[str, Any]] = []
        try:
            while not manifest or not source.peek_eof():
                name = f"{upload}/{len(manifest):08d}"
                known = source.known_remaining()
                length = None if known is None else min(known, self.segment_size)
                reader = _SegmentReader(source, self.segment_size)
                written.append(name)
                etag = conn.put_object(self.segment_container, name, reader, content_length=length,
                                       content_type=_CONTENT_TYPE, chunk_size=UPLOAD_CHUNK)
                if etag and etag != reader.etag:
                    raise exceptions.BankTransientError(
                        reason=f"{self._where()}: segment {len(manifest)} of {key!r} arrived corrupted "
                               f"(MD5 {etag}, sent {reader.etag})")
                manifest.append({"path": f"/{self.segment_container}/{name}", "etag": reader.etag,
                                 "size_bytes": reader.size})
            conn.put_object(self.container, key, json.dumps(manifest).encode("ascii"),
                            content_type=_CONTENT_TYPE, headers=headers, query_string="multipart-manifest=put")
        except BaseException:
            with contextlib.suppress(Exception):
                self._delete_segments(conn, key, written)
            raise

    def _segments_of(self, conn: Any, key: str) -> list[str]:
        """The segments (in our segment container) of the large object now under ``key``, if any."""
        try:
            found = conn.head_object(self.container, key)
        except Exception as err:
            if _status(err) == 404:
                return []
            raise
        if str(found.get("x-static-large-object", "")).lower() != "true":
            return []
        _, body = conn.get_object(self.container, key, query_string="multipart-manifest=get")
        prefix = f"/{self.segment_container}/"
        return [entry["name"][len(prefix):] for entry in json.loads(body)
                if isinstance(entry, dict) and str(entry.get("name", "")).startswith(prefix)]

    def _delete_segments(self, conn: Any, key: str, names: list[str]) -> None:
        """Best effort: a segment left behind wastes space but is never read."""
        if not names:
            return
        for index, name in enumerate(names):
            try:
                conn.delete_object(self.segment_container, name)
            except Exception as err:  # noqa: BLE001 - best effort, reported below
                if _status(err) == 404:
                    continue
                LOG.warning("%s: %d segment(s) of %r left in container %r under %r: %s", self._where(),
                            len(names) - index, key, self.segment_container, name.rsplit("/", 1)[0],
                            self._scrub(str(err)))
                return

    def _metadata_headers(self, key: str, metadata: Mapping[str, str] | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        total = 0
        for name, value in (metadata or {}).items():
            stored = encode_metadata_value(value)
            total += len(name) + len(stored)
            problem = None
            if len(name) > MAX_META_NAME_LENGTH:
                problem = f"metadata name {name!r} is longer than {MAX_META_NAME_LENGTH} characters"
            elif len(stored) > MAX_META_VALUE_LENGTH:
                problem = (f"metadata {name!r} takes {len(stored)} bytes once encoded, more than Swift's "
                           f"{MAX_META_VALUE_LENGTH}")
            if problem:
                raise exceptions.BankError(reason=f"{self._where()}: cannot put {key!r}: {problem}")
            headers[_META_HEADER + name] = stored
        if len(headers) > MAX_META_COUNT or total > MAX_META_OVERALL_SIZE:
            raise exceptions.BankError(
                reason=f"{self._where()}: cannot put {key!r}: {len(headers)} metadata items of {total} bytes "
                       f"exceed Swift's limits ({MAX_META_COUNT} items, {MAX_META_OVERALL_SIZE} bytes)")
        return headers

    def delete_object(self, key: str) -> None:
        def delete(conn: Any) -> None:
            try:
                segments = self._segments_of(conn, key)
            except Exception as err:
                if _status(err) == 404:
                    return
                raise
            try:
                conn.delete_object(self.container, key)
            except Exception as err:
                if _status(err) != 404:
                    raise
            if segments:
                self._delete_segments(conn, key, segments)

        self._call("delete", key, delete)

    # -- reading ------------------------------------------------------------

    def _not_found(self, err: Exception, key: str) -> None:
        if _status(err) == 404:
            raise exceptions.BankObjectNotFound(key=key) from None

    def get_object(self, key: str) -> bytes:
        def get(conn: Any) -> bytes:
            try:
                _, body = conn.get_object(self.container, key)
            except Exception as err:
                self._not_found(err, key)
                raise
            return body if type(body) is bytes else bytes(body)

        return self._call("get", key, get)

    def open_object(self, key: str) -> IO[bytes]:
        conn = None
        try:
            conn = self._acquire()
            _, body = conn.get_object(self.container, key, resp_chunk_size=READ_CHUNK)
        except Exception as err:
            if conn is not None:
                self._release(conn, broken=not _is_http_error(err))
            self._not_found(err, key)
            mapped = self._error(err, "get", key)
            if mapped is None:
                raise
            raise mapped from err
        reader = _ObjectReader(body, on_error=lambda err: self._error(err, "read", key),
                               on_close=lambda broken: self._release(conn, broken))
        return io.BufferedReader(reader, buffer_size=READ_CHUNK)

    def head_object(self, key: str) -> ObjectInfo:
        def head(conn: Any) -> dict[str, str]:
            try:
                return dict(conn.head_object(self.container, key))
            except Exception as err:
                self._not_found(err, key)
                raise

        headers = {name.lower(): value for name, value in self._call("head", key, head).items()}
        metadata = {name[len(_META_HEADER):]: decode_metadata_value(value)
                    for name, value in headers.items() if name.startswith(_META_HEADER)}
        expires_at = None
        if headers.get("x-delete-at"):
            expires_at = _dt.datetime.fromtimestamp(int(headers["x-delete-at"]), _dt.UTC)
        return ObjectInfo(key=key, size=int(headers.get("content-length", 0)), metadata=metadata,
                          last_modified=_modified(headers), expires_at=expires_at)

    def list_objects(self, prefix: str = "", marker: str | None = None,
                     limit: int | None = None) -> list[str]:
        if limit is not None and limit <= 0:
            return []

        def listing(conn: Any) -> list[str]:
            out: list[str] = []
            after = marker or None
            while True:
                want = LISTING_PAGE if limit is None else min(LISTING_PAGE, limit - len(out))
                try:
                    _, page = conn.get_container(self.container, marker=after, limit=want, prefix=prefix or None)
                except Exception as err:
                    if _status(err) == 404:
                        return out  # no container yet: an empty bank
                    raise
                names = [str(item["name"]) for item in page if "name" in item]
                out.extend(names)
                if len(names) < want or (limit is not None and len(out) >= limit):
                    return out
                after = names[-1]

        return self._call("list", prefix or None, listing)

    def server_time(self) -> _dt.datetime | None:
        def head(conn: Any) -> Mapping[str, str]:
            try:
                return dict(conn.head_container(self.container))
            except Exception as err:
                found = getattr(err, "http_response_headers", None)
                if _status(err) == 404 and found:
                    return {str(k).lower(): str(v) for k, v in dict(found).items()}
                raise

        headers = {name.lower(): value for name, value in self._call("read the time of", None, head).items()}
        date = headers.get("date")
        if not date:
            return None
        try:
            when = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return None
        return when if when.tzinfo is not None else when.replace(tzinfo=_dt.UTC)


# -- helpers --------------------------------------------------------------------


def _modified(headers: Mapping[str, str]) -> _dt.datetime | None:
    """The object's timestamp by the cluster's clock (``X-Timestamp``, else ``Last-Modified``)."""
    stamp = headers.get("x-timestamp")
    if stamp:
        with contextlib.suppress(ValueError):
            return _dt.datetime.fromtimestamp(float(stamp), _dt.UTC)
    modified = headers.get("last-modified")
    if modified:
        with contextlib.suppress(TypeError, ValueError):
            return email.utils.parsedate_to_datetime(modified)
    return None


def _status(err: BaseException) -> int | None:
    status = getattr(err, "http_status", None)
    return status if isinstance(status, int) else None


def _is_http_error(err: BaseException) -> bool:
    """An HTTP answer (the connection is still fine), as opposed to a transport failure."""
    return _status(err) is not None or isinstance(err, exceptions.StrongroomError)


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - a connection that cannot close is gone anyway
        LOG.debug("closing a swift connection failed", exc_info=True)


def _describe(err: BaseException) -> tuple[str, bool] | None:
    """(what went wrong, is it transient) for a storage failure; None for anything else."""
    name = type(err).__name__
    status = _status(err)
    if name == "ClientException" or status is not None:
        reason = getattr(err, "http_reason", "") or ""
        msg = str(getattr(err, "msg", "") or err)
        if status is None:
            # e.g. a token that expired during an upload swiftclient cannot replay
            return msg, "no ability to reset" in msg
        if status == 401:
            return f"authentication failed (HTTP 401 {reason})", False
        body = getattr(err, "http_response_content", b"") or b""
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        detail = f"{msg}: HTTP {status} {reason}".rstrip()
        text = " ".join(str(body).split())[:200]
        if text and "<html" not in text.lower():
            detail += f": {text}"
        return detail, status >= 500 or status in _TRANSIENT_STATUSES
    module = type(err).__module__
    if module.startswith("keystoneauth1"):
        return _describe_keystone(err)
    try:
        import requests
        import urllib3
    except ImportError:  # pragma: no cover - swiftclient needs both
        requests = urllib3 = None  # type: ignore[assignment]
    if requests is not None and isinstance(err, requests.exceptions.SSLError):
        text = str(err)
        if "certificate" in text.lower():
            return f"TLS certificate verification failed: {text}", False
        return f"TLS error: {text}", True
    if requests is not None and isinstance(err, requests.exceptions.Timeout):
        return f"timed out ({name}: {err})", True
    if requests is not None and isinstance(err, requests.exceptions.RequestException):
        return f"connection failed ({name}: {err})", True
    if urllib3 is not None and isinstance(err, urllib3.exceptions.HTTPError):
        return f"connection failed ({name}: {err})", True
    import http.client

    if isinstance(err, http.client.HTTPException | OSError):
        return f"connection failed ({name}: {err})", True
    return None


def _describe_keystone(err: BaseException) -> tuple[str, bool]:
    from keystoneauth1 import exceptions as ks

    transient = isinstance(err, ks.ConnectionError | ks.HttpServerError | ks.RequestTimeout)
    return f"Keystone: {type(err).__name__}: {err}", transient
