"""The swift bank plugin: objects in one Swift container (the design is in the package docstring)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import logging
from collections.abc import Callable, Mapping
from typing import IO, Any, ClassVar, TypeVar

from strongroom import exceptions
from strongroom.bank_plugins.base import BankPlugin, ObjectInfo
from strongroom.bank_plugins.objectstore import READ_PIECE, BodyReader, Prepended, parse_http_date
from strongroom.bank_plugins.swift import errors
from strongroom.bank_plugins.swift.metadata import metadata_headers, metadata_of
from strongroom.bank_plugins.swift.options import (
    DEFAULT_LARGE_OBJECT_THRESHOLD,
    DEFAULT_SEGMENT_SIZE,
    OPTIONS_SCHEMA,
    SECRET_OPTIONS,
    host_of,
    keystone_session,
    segment_container_of,
    swiftclient_connection,
    validate_options,
)
from strongroom.bank_plugins.swift.pool import ConnectionPool
from strongroom.bank_plugins.swift.transfer import (
    UPLOAD_CHUNK,
    SegmentReader,
    SourceError,
    md5_hex,
    read_head,
    upload_prefix,
    upload_source,
)
from strongroom.redaction import RedactedOptions, scrub

LOG = logging.getLogger(__package__)
T = TypeVar("T")

#: Objects are read in pieces of this size.
READ_CHUNK = READ_PIECE
#: Values up to this size are first sent with ``If-None-Match: *`` (see ``_put_single``).
CONDITIONAL_PUT_MAX = READ_PIECE
#: Swift caps a container listing page at 10,000 names.
LISTING_PAGE = 10_000
_CONTENT_TYPE = "application/octet-stream"


class SwiftBank(BankPlugin):
    """Objects in one Swift container (see the package docstring)."""

    options_schema: ClassVar[dict[str, Any]] = OPTIONS_SCHEMA
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
        self.options = RedactedOptions(self.options, SECRET_OPTIONS)
        self.container: str = self.options["container"]
        self.segment_container: str = segment_container_of(self.options)
        self.large_object_threshold: int = self.options.get("large_object_threshold",
                                                            DEFAULT_LARGE_OBJECT_THRESHOLD)
        self.segment_size: int = self.options.get("segment_size", DEFAULT_SEGMENT_SIZE)
        self._pool = ConnectionPool(self.options, connection_factory or swiftclient_connection,
                                    session_factory or keystone_session)
        self._ready: set[str] = set()  # containers known to exist

    def __repr__(self) -> str:
        where = self.options.get("preauth_url") if not self.options.get("auth_url") else self.options["auth_url"]
        user = f", user={self.options['user']!r}" if self.options.get("user") else ""
        return f"SwiftBank(container={self.container!r}, url={host_of(where)!r}{user})"

    def close(self) -> None:
        """Close the idle connections, and the others as they come back.  Idempotent.

        The bank still works afterwards, without keeping connections.
        """
        self._pool.close()

    # -- errors -------------------------------------------------------------

    def _where(self) -> str:
        host = self._pool.storage_host
        if host is None and str(self.options.get("auth_version", "1")) == "3" and not self.options.get("preauth_url"):
            # No storage URL yet: it comes from Keystone's catalogue, which is where this one failed.
            return f"swift container {self.container!r} (Keystone at {host_of(self.options.get('auth_url'))})"
        host = host or host_of(self.options.get("auth_url") or self.options.get("preauth_url"))
        return f"swift container {self.container!r} at {host}"

    def _scrub(self, text: str) -> str:
        secrets = [str(self.options[name]) for name in SECRET_OPTIONS if self.options.get(name)]
        return scrub(text, secrets + self._pool.tokens())

    def _error(self, err: BaseException, action: str, key: str | None = None) -> exceptions.BankError | None:
        """The bank error for ``err`` raised while doing ``action`` (None: not a storage error)."""
        described = errors.describe(err)
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
            with self._pool.connection() as conn:
                return func(conn)
        except SourceError as err:
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
                source = upload_source(view)
            else:
                head = read_head(data, self.large_object_threshold + 1)
                if len(head) <= self.large_object_threshold:
                    self._put_single(conn, key, memoryview(head), headers)
                    return
                source = upload_source(head, data)
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
                if errors.status(err) != 412:
                    raise
        old_segments = self._segments_of(conn, key)
        self._send(conn, key, view, headers)
        self._delete_segments(conn, key, old_segments)

    def _send(self, conn: Any, key: str, view: memoryview, headers: dict[str, str]) -> None:
        def attempt() -> None:
            conn.put_object(self.container, key, upload_source(view), content_length=len(view), etag=md5_hex(view),
                            content_type=_CONTENT_TYPE, headers=headers, chunk_size=UPLOAD_CHUNK)

        try:
            attempt()
        except Exception as err:
            if errors.status(err) != 404:
                raise
            # The container went away behind our back: make it again, once.
            self._ready.discard(self.container)
            self._ensure_container(conn, self.container)
            attempt()

    def _put_segmented(self, conn: Any, key: str, source: Prepended, headers: dict[str, str]) -> None:
        # Checked on every large upload (two cheap requests next to the segments'): either
        # container may have been deleted behind our back.
        for container in (self.container, self.segment_container):
            conn.put_container(container)
            self._ready.add(container)
        upload = upload_prefix(key)
        written: list[str] = []
        manifest: list[dict[str, Any]] = []
        try:
            while not manifest or not source.at_eof():
                name = f"{upload}/{len(manifest):08d}"
                known = source.known_remaining()
                length = None if known is None else min(known, self.segment_size)
                reader = SegmentReader(source, self.segment_size)
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
            if errors.status(err) == 404:
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
                if errors.status(err) == 404:
                    continue
                LOG.warning("%s: %d segment(s) of %r left in container %r under %r: %s", self._where(),
                            len(names) - index, key, self.segment_container, name.rsplit("/", 1)[0],
                            self._scrub(str(err)))
                return

    def _metadata_headers(self, key: str, metadata: Mapping[str, str] | None) -> dict[str, str]:
        return metadata_headers(metadata, f"{self._where()}: cannot put {key!r}")

    def delete_object(self, key: str) -> None:
        def delete(conn: Any) -> None:
            try:
                segments = self._segments_of(conn, key)
            except Exception as err:
                if errors.status(err) == 404:
                    return
                raise
            try:
                conn.delete_object(self.container, key)
            except Exception as err:
                if errors.status(err) != 404:
                    raise
            if segments:
                self._delete_segments(conn, key, segments)

        self._call("delete", key, delete)

    # -- reading ------------------------------------------------------------

    def _not_found(self, err: Exception, key: str) -> None:
        if errors.status(err) == 404:
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
            conn = self._pool.acquire()
            _, body = conn.get_object(self.container, key, resp_chunk_size=READ_CHUNK)
        except Exception as err:
            if conn is not None:
                self._pool.release(conn, broken=not errors.is_http_error(err))
            self._not_found(err, key)
            mapped = self._error(err, "get", key)
            if mapped is None:
                raise
            raise mapped from err
        reader = BodyReader(body, on_error=lambda err: self._error(err, "read", key),
                            on_close=lambda broken: self._pool.release(conn, broken))
        return io.BufferedReader(reader, buffer_size=READ_CHUNK)

    def head_object(self, key: str) -> ObjectInfo:
        def head(conn: Any) -> dict[str, str]:
            try:
                return dict(conn.head_object(self.container, key))
            except Exception as err:
                self._not_found(err, key)
                raise

        headers = {name.lower(): value for name, value in self._call("head", key, head).items()}
        metadata = metadata_of(headers)
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
                    if errors.status(err) == 404:
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
                if errors.status(err) == 404 and found:
                    return {str(k).lower(): str(v) for k, v in dict(found).items()}
                raise

        headers = {name.lower(): value for name, value in self._call("read the time of", None, head).items()}
        return parse_http_date(headers.get("date"))


def _modified(headers: Mapping[str, str]) -> _dt.datetime | None:
    """The object's timestamp by the cluster's clock (``X-Timestamp``, else ``Last-Modified``)."""
    stamp = headers.get("x-timestamp")
    if stamp:
        with contextlib.suppress(ValueError):
            return _dt.datetime.fromtimestamp(float(stamp), _dt.UTC)
    return parse_http_date(headers.get("last-modified"))
