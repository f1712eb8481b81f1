"""The s3 bank plugin: objects in one S3 bucket (the design is in the package docstring)."""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import io
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, ClassVar, NoReturn, TypeVar

from strongroom import exceptions
from strongroom.bank_plugins.base import BankPlugin, ObjectInfo
from strongroom.bank_plugins.objectstore import (
    READ_PIECE,
    BodyReader,
    Prepended,
    Readable,
    parse_http_date,
    read_up_to,
)
from strongroom.bank_plugins.s3 import errors
from strongroom.bank_plugins.s3.client import botocore_config, create_client
from strongroom.bank_plugins.s3.metadata import decode_metadata_value, encode_metadata_value
from strongroom.bank_plugins.s3.options import (
    CREDENTIAL_OPTIONS,
    DEFAULTS,
    MAX_PARTS,
    OPTIONS_SCHEMA,
    check_options,
)

LOG = logging.getLogger(__package__)
T = TypeVar("T")

#: One ListObjectsV2 page holds at most this many keys (and one DeleteObjects request).
MAX_PAGE = 1000
#: A key with more versions than this has them deleted in batches (``DeleteObjects``), not one by one.
BATCH_VERSIONS = 8


def _md5(data: bytes | bytearray) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def _aware(value: Any) -> _dt.datetime | None:
    """A botocore timestamp as an aware UTC datetime (None if absent)."""
    if not isinstance(value, _dt.datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.UTC)
    return value.astimezone(_dt.UTC)


class S3Bank(BankPlugin):
    """Objects in one S3 bucket (see the package docstring)."""

    options_schema: ClassVar[dict[str, Any]] = OPTIONS_SCHEMA
    supports_expiry = False  # S3 lifecycle rules count days: useless for leases

    DEFAULTS: ClassVar[dict[str, Any]] = DEFAULTS

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        check_options(options, cls.options_schema)

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
        #: Object Lock (``object_lock = true``): a versioned bucket created with Object Lock enabled, whose
        #: deletes remove versions (see ``doc/immutability.md``).
        self.supports_object_lock = bool(opts["object_lock"])
        self.object_lock_mode: str = opts["object_lock_mode"]
        self._opts = opts
        self._lock = threading.Lock()
        self._client: Any = None
        self._bucket_ready = False
        errors.REDACTOR.register(self, [str(opts.get(k) or "") for k in CREDENTIAL_OPTIONS])

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
        return botocore_config(self._opts)

    def client(self) -> Any:
        """The (thread-safe) botocore S3 client, created on first use; the bucket is created then if missing."""
        client = self._client
        if client is not None and self._bucket_ready:
            return client
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
                errors.install_redactor()
            if not self._bucket_ready:
                self._ensure_bucket(self._client)
                self._bucket_ready = True
            return self._client

    def _make_client(self) -> Any:
        opts = self._opts
        verify: bool | str = opts["ca_bundle"] if "ca_bundle" in opts else bool(opts["verify_ssl"])
        try:
            return create_client(
                region_name=self.region_name, endpoint_url=self.endpoint_url, verify=verify,
                aws_access_key_id=opts.get("access_key_id"), aws_secret_access_key=opts.get("secret_access_key"),
                aws_session_token=opts.get("session_token"), config=self.botocore_config())
        except errors.boto_errors() as err:
            self._raise(err, "connect")
        except ValueError as err:  # botocore rejects malformed endpoints with ValueError
            raise exceptions.BankError(reason=f"{self.where}: cannot create a client: {err}") from err

    def _ensure_bucket(self, client: Any) -> None:
        from botocore.exceptions import ClientError

        try:
            client.head_bucket(Bucket=self.bucket)
            self._check_object_lock(client)
            return
        except ClientError as err:
            if errors.status(err) != 404:
                self._raise(err, "check the bucket")
        except errors.boto_errors() as err:
            self._raise(err, "check the bucket")
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region_name != "us-east-1":  # us-east-1 refuses a LocationConstraint naming itself
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region_name}
        if self.supports_object_lock:
            kwargs["ObjectLockEnabledForBucket"] = True  # S3 turns versioning on with it
        try:
            client.create_bucket(**kwargs)
            LOG.info("Created %s%s", self.where, " with Object Lock" if self.supports_object_lock else "")
            if self.supports_object_lock:
                self._expire_noncurrent_versions(client)
        except ClientError as err:
            if errors.code(err) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                self._raise(err, "create the bucket")
            try:  # created meanwhile: by us (another process) or by someone else?
                client.head_bucket(Bucket=self.bucket)
            except errors.boto_errors() as again:
                self._raise(again, "use the bucket (its name is taken?)")
            self._check_object_lock(client)
        except errors.boto_errors() as err:
            self._raise(err, "create the bucket")

    def _check_object_lock(self, client: Any) -> None:
        """With ``object_lock = true``, an existing bucket must have Object Lock enabled: never a silent no-op."""
        if not self.supports_object_lock:
            return
        from botocore.exceptions import ClientError

        try:
            answer = client.get_object_lock_configuration(Bucket=self.bucket)
            enabled = (answer.get("ObjectLockConfiguration") or {}).get("ObjectLockEnabled") == "Enabled"
        except ClientError as err:
            if errors.code(err) != "ObjectLockConfigurationNotFoundError" and errors.status(err) != 404:
                self._raise(err, "read the Object Lock configuration of the bucket")
            enabled = False
        except errors.boto_errors() as err:
            self._raise(err, "read the Object Lock configuration of the bucket")
        if not enabled:
            raise exceptions.BankError(
                reason=f"{self.where}: object_lock = true, but the bucket exists without Object Lock; "
                       f"use a new bucket (the bank creates it with Object Lock) or enable Object Lock on it")

    def _expire_noncurrent_versions(self, client: Any) -> None:
        """A lifecycle rule on a bucket the bank created with Object Lock: overwritten values (leases, indices)
        leave noncurrent versions, which S3 expires after a day; it never expires a locked version."""
        rule = {"ID": "strongroom-noncurrent-versions", "Status": "Enabled", "Filter": {"Prefix": ""},
                "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                "Expiration": {"ExpiredObjectDeleteMarker": True}}
        try:
            client.put_bucket_lifecycle_configuration(Bucket=self.bucket,
                                                      LifecycleConfiguration={"Rules": [rule]})
        except errors.boto_errors() as err:  # noncurrent versions then stay until removed otherwise
            LOG.warning("%s: could not set the lifecycle rule that expires noncurrent versions: %s", self.where,
                        errors.REDACTOR.redact(str(err)))

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
        raise errors.bank_error(err, self.where, action, key) from err

    def _call(self, action: str, key: str | None, func: Callable[[Any], T]) -> T:
        client = self.client()
        try:
            return func(client)
        except errors.boto_errors() as err:
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
            stream: Readable = io.BytesIO(value)
        else:
            stream = data
        head = read_up_to(stream, self.multipart_threshold + 1)
        if len(head) <= self.multipart_threshold:
            self._put_single(key, head, headers)
            return
        source = Prepended(head, stream)
        del head  # the source releases it as the first parts consume it
        self._put_multipart(key, source, headers)

    def _put_single(self, key: str, value: bytes | bytearray, headers: dict[str, str]) -> None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key_prefix + key,
                                  "Body": value, "Metadata": headers}
        if self.content_md5:
            kwargs["ContentMD5"] = _md5(value)
        self._call("write", key, lambda c: c.put_object(**kwargs))

    def _put_multipart(self, key: str, source: Readable, headers: dict[str, str]) -> None:
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

    def _parts(self, source: Readable) -> Iterator[bytearray]:
        """``source`` cut into parts of ``multipart_chunksize`` bytes (the last one shorter), one at a time."""
        while part := read_up_to(source, self.multipart_chunksize):
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
        if self.supports_object_lock:
            self._delete_versions(key)
            return
        # S3 answers 204 for a missing key; a store that answers 404 means the same.
        try:
            self._call("delete", key, lambda c: c.delete_object(Bucket=self.bucket, Key=self.key_prefix + key))
        except exceptions.BankObjectNotFound:
            return

    def _versions(self, key: str) -> list[str]:
        """Every version id of ``key`` (values and delete markers), oldest first."""
        full = self.key_prefix + key
        found: list[tuple[Any, int, str]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full}
        while True:
            page = self._call("list the versions of", key, lambda c: c.list_object_versions(**kwargs))
            past = False
            for item in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]:
                if item["Key"] == full:
                    # Newest first within a key: the position breaks ties of equal LastModified.
                    found.append((_aware(item.get("LastModified")) or _EPOCH, -len(found), item["VersionId"]))
                elif item["Key"] > full:
                    past = True  # keys come in order: the versions of ``full`` came before
            if past or not page.get("IsTruncated"):
                break
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")
        found.sort(key=lambda item: (item[0], item[1]))
        return [version for _, _, version in found]

    def _delete_versions(self, key: str) -> None:
        """Delete every version of ``key`` (a plain delete on a versioned bucket would only add a delete
        marker over the value): one ``DeleteObject`` per version, oldest first, so that a locked version
        refuses before a newer one goes; more than a few versions (a lease rewritten all day long) go
        ``MAX_PAGE`` at a time in ``DeleteObjects``.  A refused version raises ``BankObjectLocked``."""
        from botocore.exceptions import ClientError

        full = self.key_prefix + key
        versions = self._versions(key)
        if len(versions) > BATCH_VERSIONS:
            for start in range(0, len(versions), MAX_PAGE):
                batch = versions[start:start + MAX_PAGE]
                request = {"Objects": [{"Key": full, "VersionId": v} for v in batch], "Quiet": True}
                answer: dict[str, Any] = self._call(
                    "delete", key, lambda c: c.delete_objects(Bucket=self.bucket, Delete=request))  # noqa: B023 - called at once
                for error in answer.get("Errors") or ():
                    if error.get("Code") in ("NoSuchKey", "NoSuchVersion"):
                        continue
                    # moto names no VersionId in its errors: then each version of the batch is a suspect.
                    suspects = [error["VersionId"]] if error.get("VersionId") else batch
                    for version in suspects[:-1]:
                        self._refused(key, version, None, None, locked_only=True)
                    self._refused(key, suspects[-1], error.get("Code"), error.get("Message"))
            return
        client = self.client()
        for version in versions:
            try:
                client.delete_object(Bucket=self.bucket, Key=full, VersionId=version)
            except ClientError as err:
                if errors.status(err) == 404 or errors.code(err) in ("NoSuchKey", "NoSuchVersion"):
                    continue
                if errors.status(err) == 403:
                    self._refused(key, version, errors.code(err), None, err)
                self._raise(err, "delete", key)
            except errors.boto_errors() as err:
                self._raise(err, "delete", key)

    def _refused(self, key: str, version: str | None, code: str | None, message: str | None,
                 cause: Exception | None = None, *, locked_only: bool = False) -> None:
        """Raise ``BankObjectLocked`` if ``version`` of ``key`` is locked (the store's refusal of its delete),
        else ``BankError`` (from a batch), or nothing (``locked_only``, or a single delete's ``cause``: its
        caller raises the error it stands for)."""
        until = self._version_lock(key, version) if version else None
        if until is not None:
            raise exceptions.BankObjectLocked(
                key=key, until=until.isoformat(),
                reason=f"{self.where} refused to delete version {version}") from cause
        if cause is None and not locked_only:
            raise exceptions.BankError(reason=errors.REDACTOR.redact(
                f"{self.where}: cannot delete {key!r} (version {version}): {code}: {message or ''}"))

    def _version_lock(self, key: str, version: str | None) -> _dt.datetime | None:
        """The running lock date of one version of ``key`` (the current one for None): None without one, or
        once it has passed by the bucket's clock (the answer's ``Date``)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key_prefix + key}
        if version is not None:
            kwargs["VersionId"] = version
        try:
            answer = self._call("head", key, lambda c: c.head_object(**kwargs))
        except exceptions.BankObjectNotFound:
            return None
        until = _aware(answer.get("ObjectLockRetainUntilDate"))
        server_now = parse_http_date((answer.get("ResponseMetadata", {}).get("HTTPHeaders") or {}).get("date"))
        if until is not None and server_now is not None and until <= server_now:
            return None
        return until

    # -- object lock -----------------------------------------------------------

    def lock_object(self, key: str, until: _dt.datetime, mode: str | None = None) -> _dt.datetime:
        """S3 Object Lock retention on the current version of ``key``, extended to ``until`` (whole seconds,
        rounded up), never shortened; a COMPLIANCE lock stays COMPLIANCE.  A date already past by the
        bucket's clock locks nothing (S3 refuses one) and is returned as it is."""
        if not self.supports_object_lock:
            raise exceptions.BankError(reason=f"{self.where}: object lock is off (object_lock = false)")
        if until.tzinfo is None:
            raise exceptions.InvalidInput(reason="until: a lock date must be timezone-aware")
        until = until.astimezone(_dt.UTC)
        if until.microsecond:
            until = until.replace(microsecond=0) + _dt.timedelta(seconds=1)
        answer = self._call("head", key, lambda c: c.head_object(Bucket=self.bucket, Key=self.key_prefix + key))
        current = _aware(answer.get("ObjectLockRetainUntilDate"))
        if current is not None and current >= until:
            return current
        server_now = parse_http_date((answer.get("ResponseMetadata", {}).get("HTTPHeaders") or {}).get("date"))
        if server_now is not None and until <= server_now:
            return current if current is not None else until
        wanted = mode or self.object_lock_mode
        if answer.get("ObjectLockMode") == "COMPLIANCE" and current is not None \
                and (server_now is None or current > server_now):
            wanted = "COMPLIANCE"  # S3 refuses to weaken a running COMPLIANCE lock
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key_prefix + key,
                                  "Retention": {"Mode": wanted, "RetainUntilDate": until}}
        if answer.get("VersionId"):
            kwargs["VersionId"] = answer["VersionId"]
        try:
            self._call("lock", key, lambda c: c.put_object_retention(**kwargs))
        except exceptions.BankError:
            # A concurrent publisher may have extended it meanwhile (S3 then refuses a shorter date).
            again = self._version_lock(key, answer.get("VersionId"))
            if again is not None and again >= until:
                return again
            raise
        return until

    def object_lock(self, key: str) -> _dt.datetime | None:
        answer = self._call("head", key, lambda c: c.head_object(Bucket=self.bucket, Key=self.key_prefix + key))
        return _aware(answer.get("ObjectLockRetainUntilDate"))

    # -- reading -------------------------------------------------------------

    def get_object(self, key: str) -> bytes:
        with self._open_raw(key) as raw:
            return raw.readall()

    def open_object(self, key: str) -> IO[bytes]:
        return io.BufferedReader(self._open_raw(key), buffer_size=READ_PIECE)

    def _open_raw(self, key: str) -> BodyReader:
        answer = self._call("read", key, lambda c: c.get_object(Bucket=self.bucket, Key=self.key_prefix + key))

        def on_error(err: Exception) -> NoReturn:
            self._raise(err, "read", key)

        return BodyReader(answer["Body"], on_error, catch=errors.boto_errors())

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
        return parse_http_date((answer.get("ResponseMetadata", {}).get("HTTPHeaders") or {}).get("date"))
