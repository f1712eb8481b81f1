"""The raw bank interface every storage scheme implements.

A bank plugin is a flat key/value store.  Keys are ``/``-separated UTF-8
strings *without* a leading slash (``checkpoints/<id>/index.json``); they have
already been validated by :class:`strongroom.bank_plugins.bank.Bank`.  Values are
arbitrary bytes (binary-safe: NUL bytes, invalid UTF-8, empty values all round
trip unchanged).  Metadata is a small ``str -> str`` mapping whose keys are
lower-case ``[a-z0-9-]``.

Every method states whether it is idempotent and what happens on a missing key.
Transient failures (timeouts, 5xx, resets) raise
:class:`strongroom.exceptions.BankTransientError`; retrying is decided by a
wrapper, not inside each plugin.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as _dt
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any, ClassVar

#: The lease options every bank accepts in its provider section (seconds; see
#: ``strongroom.bank_plugins.lease``).  A plugin's ``options_schema`` includes them:
#: ``"properties": {..., **LEASE_OPTIONS}``.
LEASE_OPTIONS: dict[str, Any] = {
    "lease_expire_window": {"type": "integer", "minimum": 1},
    "lease_renew_window": {"type": "integer", "minimum": 1},
    "lease_validity_window": {"type": "integer", "minimum": 1},
}


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """What a bank knows about one stored object."""

    key: str
    size: int
    metadata: Mapping[str, str]
    #: When the bank last wrote the object, by the bank's own clock.
    last_modified: _dt.datetime | None = None
    #: When the bank itself will expire the object (``put_expiring_object``), by its clock; else None.
    expires_at: _dt.datetime | None = None


class BankPlugin(abc.ABC):
    """A flat, binary-safe object store.

    Implementations are constructed with the options of their section in the
    provider file (already validated against :attr:`options_schema`).
    """

    #: JSON schema of the options this plugin reads from its provider section.
    options_schema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}}
    #: True if :meth:`put_expiring_object` is implemented: the bank itself deletes the
    #: object ``delete_after`` seconds after the put, by its own clock (Swift's ``X-Delete-After``).
    supports_expiry: bool = False
    #: True if :meth:`lock_object` and :meth:`object_lock` are implemented: the bank itself refuses to
    #: delete or overwrite-away a locked object until its lock date, whoever asks (S3 Object Lock).
    supports_object_lock: bool = False

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options: Mapping[str, Any] = dict(options or {})

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Checks beyond ``options_schema`` (options that depend on each other), run when the provider
        file is loaded, without connecting anywhere.  Raises ``ConfigError`` whose ``key`` kwarg names
        the option; messages never quote a secret's value."""
        return None

    @abc.abstractmethod
    def put_object(self, key: str, data: bytes | IO[bytes],
                   metadata: Mapping[str, str] | None = None) -> None:
        """Store ``data`` under ``key``, replacing any previous value and metadata.

        ``data`` is bytes or a readable binary stream (read to EOF).  Idempotent.
        Atomic for readers: a concurrent ``get_object`` sees the old value or the
        new one, never a mix, and a failed put never leaves a truncated value.
        """

    def put_object_deferred(self, key: str, data: bytes, metadata: Mapping[str, str] | None = None) -> None:
        """Like :meth:`put_object`, but the object need be durable only once :meth:`barrier` returns.

        For many objects written in a row and made durable together by one later barrier (the data
        mover's chunks, before the manifest header that references them).  Until the barrier, a crash
        may lose the object, and other processes and listings may not see it; this plugin instance
        reads, heads, tests and deletes it at once.  Whoever sees it sees its whole value.  Idempotent.
        The default is :meth:`put_object`: durable at once (object stores).
        """
        self.put_object(key, data, metadata)

    def barrier(self) -> None:  # noqa: B027 - optional hook
        """Make every :meth:`put_object_deferred` that returned before this call durable and visible to all.

        Cheap when nothing is deferred.  Raises ``BankError`` if it cannot; the objects it covered may
        then be lost (nothing that references them may be written).  The default does nothing.
        """
        return None

    def reclaim_temporaries(self, prefix: str, dry_run: bool = False) -> list[str]:
        """Remove the leftovers of unfinished writes under ``prefix`` (``""`` or ending with ``/``).

        What a writer killed before its :meth:`barrier` left of its deferred puts (never visible as
        objects).  Only for a caller that knows no live writer puts under ``prefix`` (the chunk sweep,
        after its live-writer check): any write in progress there is lost.  Returns what was removed
        (or, with ``dry_run``, what would be), as names for logs.  The default removes nothing.
        """
        return []

    @abc.abstractmethod
    def get_object(self, key: str) -> bytes:
        """Return the whole value.  Raises ``BankObjectNotFound`` if missing."""

    def open_object(self, key: str) -> IO[bytes]:
        """Return a readable binary stream on the value (caller closes it).

        Raises ``BankObjectNotFound`` if missing.  The default reads it whole;
        plugins for large objects override it to stream.
        """
        import io

        return io.BytesIO(self.get_object(key))

    @abc.abstractmethod
    def head_object(self, key: str) -> ObjectInfo:
        """Return size, metadata and modification time.  Raises ``BankObjectNotFound``."""

    def object_exists(self, key: str) -> bool:
        """True if ``key`` holds a value.  Never raises for a missing key."""
        from strongroom.exceptions import BankObjectNotFound

        try:
            self.head_object(key)
        except BankObjectNotFound:
            return False
        return True

    #: Threads :meth:`objects_exist` asks with by default (each question a round trip to a remote store).
    EXISTS_THREADS: ClassVar[int] = 8

    def objects_exist(self, keys: Sequence[str]) -> list[bool]:
        """:meth:`object_exists` of each key, in order.  Never raises for a missing key.

        The default asks ``EXISTS_THREADS`` at a time, for stores where each answer is a round trip; a
        store whose answers are local system calls answers in a loop (threads would only contend)."""
        if len(keys) <= 1:
            return [self.object_exists(key) for key in keys]
        import concurrent.futures as cf

        with cf.ThreadPoolExecutor(max_workers=min(self.EXISTS_THREADS, len(keys)),
                                   thread_name_prefix="bank-exists") as pool:
            return list(pool.map(self.object_exists, keys))

    @abc.abstractmethod
    def delete_object(self, key: str) -> None:
        """Remove ``key``.  Idempotent: deleting a missing key is not an error."""

    @abc.abstractmethod
    def list_objects(self, prefix: str = "", marker: str | None = None,
                     limit: int | None = None) -> list[str]:
        """Keys starting with ``prefix``, ascending in byte (UTF-8) order.

        Only keys strictly greater than ``marker`` are returned; at most
        ``limit`` of them (``None``: all).  A prefix is a plain string prefix, not
        a directory: ``"a/b"`` matches ``"a/bc"``.
        """

    def iter_objects(self, prefix: str = "", page_size: int = 1000) -> Iterator[str]:
        """Every key under ``prefix`` in byte order, fetched page by page."""
        marker: str | None = None
        while True:
            page = self.list_objects(prefix=prefix, marker=marker, limit=page_size)
            yield from page
            if len(page) < page_size:
                return
            marker = page[-1]

    def put_expiring_object(self, key: str, data: bytes, metadata: Mapping[str, str] | None,
                            delete_after: int) -> None:
        """Like :meth:`put_object`, and the bank expires the object ``delete_after`` seconds later.

        Only for plugins with ``supports_expiry = True``.  Once expired, the object
        is missing for every method (``head_object`` raises ``BankObjectNotFound``)
        even if the store has not reclaimed its space yet; listings may still show
        it.  ``head_object`` reports the expiry as ``ObjectInfo.expires_at``.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot expire objects")

    def server_time(self) -> _dt.datetime | None:
        """Now, by the bank's own clock, from one cheap request (e.g. an HTTP ``Date`` header).

        Timezone-aware.  ``None`` (the default) means the bank cannot tell cheaply:
        the lease layer then writes a probe object and reads its ``last_modified``.
        Leases compare only the bank's timestamps with each other, never with the
        clock of the machine that runs Strongroom.
        """
        return None

    def lock_object(self, key: str, until: _dt.datetime, mode: str | None = None) -> _dt.datetime:
        """Lock ``key`` (its current value) against deletion until ``until`` (aware); returns the lock
        date it now has.

        Extend-only: a lock that already reaches ``until`` or later is kept as it is, never shortened.
        ``mode`` is the store's lock mode (S3: ``GOVERNANCE`` or ``COMPLIANCE``; None: the bank's
        configured one).  While locked, :meth:`delete_object` raises ``BankObjectLocked`` naming the key
        and the date.  Raises ``BankObjectNotFound`` for a missing key.  Only for plugins with
        ``supports_object_lock = True``.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot lock objects")

    def object_lock(self, key: str) -> _dt.datetime | None:
        """The date ``key``'s current value is locked until (aware; possibly past), None if never locked.

        Raises ``BankObjectNotFound`` for a missing key.  Plugins without object lock answer None.
        """
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections.  Idempotent."""
