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

Modules
-------
``options`` (schema, checks, swiftclient/Keystone arguments), ``errors`` (what a
failure means), ``metadata`` (header encoding and limits), ``transfer`` (the
value being put, its segments), ``pool`` (connections), ``plugin`` (the
:class:`SwiftBank` itself).  What the swift and s3 banks share is in
:mod:`strongroom.bank_plugins.objectstore`.
"""


from strongroom.bank_plugins.objectstore import MiB
from strongroom.bank_plugins.swift.metadata import decode_metadata_value, encode_metadata_value
from strongroom.bank_plugins.swift.options import (
    DEFAULT_LARGE_OBJECT_THRESHOLD,
    DEFAULT_SEGMENT_SIZE,
    DEFAULT_TIMEOUT,
    MAX_OBJECT_SIZE,
    SECRET_OPTIONS,
    connection_kwargs,
    keystone_auth_kwargs,
    validate_options,
)
from strongroom.bank_plugins.swift.plugin import SwiftBank

__all__ = [
    "DEFAULT_LARGE_OBJECT_THRESHOLD",
    "DEFAULT_SEGMENT_SIZE",
    "DEFAULT_TIMEOUT",
    "MAX_OBJECT_SIZE",
    "SECRET_OPTIONS",
    "MiB",
    "SwiftBank",
    "connection_kwargs",
    "decode_metadata_value",
    "encode_metadata_value",
    "keystone_auth_kwargs",
    "validate_options",
]
