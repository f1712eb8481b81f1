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

Modules
-------
``options`` (schema, defaults, checks), ``metadata`` (header encoding),
``errors`` (what a boto failure means; log scrubbing), ``client`` (the botocore
client and its shared session), ``plugin`` (the :class:`S3Bank` itself).  What
the s3 and swift banks share is in :mod:`strongroom.bank_plugins.objectstore`.
"""

from strongroom.bank_plugins.objectstore import MiB
from strongroom.bank_plugins.s3.metadata import decode_metadata_value, encode_metadata_value
from strongroom.bank_plugins.s3.options import (
    CHECKSUM_MODES,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    SECRET_OPTIONS,
)
from strongroom.bank_plugins.s3.plugin import S3Bank

__all__ = [
    "CHECKSUM_MODES",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "SECRET_OPTIONS",
    "MiB",
    "S3Bank",
    "decode_metadata_value",
    "encode_metadata_value",
]
