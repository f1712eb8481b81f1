"""The bank facade: key validation at the boundary and prefixed sections.

Components never talk to a :class:`BankPlugin` directly.  They get a
:class:`Bank` (the whole store) or a :class:`BankSection` (a prefix of it,
optionally read-only), whose keys are validated here once ("no crap in, no crap
out") so that every plugin can trust them.
"""

from __future__ import annotations

import datetime as _dt
import hmac
import io
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

from strongroom import exceptions
from strongroom.bank_plugins import sealing
from strongroom.bank_plugins.base import BankPlugin, ObjectInfo
from strongroom.bank_plugins.layout import BankLayout

if TYPE_CHECKING:
    from strongroom.bank_plugins.keyring import Keyring

MAX_KEY_BYTES = 1024


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _has_control_characters(text: str) -> bool:
    return _CONTROL.search(text) is not None  # a regex: every bank call checks its key


def normalize_key(key: str) -> str:
    """Validate ``key`` and return it without a leading ``/``.

    Rejected: empty keys, empty, ``.`` or ``..`` segments, control characters,
    keys longer than 1024 UTF-8 bytes, and trailing slashes.
    """
    if not isinstance(key, str):
        raise exceptions.InvalidBankKey(key=key, reason="a key must be a string")
    stripped = key[1:] if key.startswith("/") else key
    if not stripped:
        raise exceptions.InvalidBankKey(key=key, reason="empty key")
    if len(stripped.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise exceptions.InvalidBankKey(key=key, reason=f"longer than {MAX_KEY_BYTES} bytes")
    if _has_control_characters(stripped):
        raise exceptions.InvalidBankKey(key=key, reason="control characters are not allowed")
    for segment in stripped.split("/"):
        if segment in ("", ".", ".."):
            raise exceptions.InvalidBankKey(key=key, reason=f"segment {segment!r} is not allowed")
    return stripped


def normalize_prefix(prefix: str) -> str:
    """A listing prefix: a plain string prefix of keys, so it may be empty or end with ``/``.

    Its complete segments are validated like a key's; the last, partial one may
    be anything a segment may start with (``"a/."`` is the prefix of ``"a/.x"``).
    """
    if not isinstance(prefix, str):
        raise exceptions.InvalidBankKey(key=prefix, reason="a prefix must be a string")
    stripped = prefix[1:] if prefix.startswith("/") else prefix
    if not stripped:
        return ""
    head, slash, partial = stripped.rpartition("/")
    if slash:
        try:
            if head.startswith("/"):
                raise exceptions.InvalidBankKey(key=head, reason="segment '' is not allowed")
            normalize_key(head)
        except exceptions.InvalidBankKey as err:
            raise exceptions.InvalidBankKey(key=prefix, reason=err.kwargs.get("reason", "invalid")) from None
    if _has_control_characters(partial):
        raise exceptions.InvalidBankKey(key=prefix, reason="control characters are not allowed")
    if len(stripped.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise exceptions.InvalidBankKey(key=prefix, reason=f"longer than {MAX_KEY_BYTES} bytes")
    return stripped


_METADATA_KEY = re.compile(r"[a-z0-9-]+")


def normalize_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Validate object metadata: lower-case ``[a-z0-9-]`` keys, string values."""
    out: dict[str, str] = {}
    for name, value in (metadata or {}).items():
        if not isinstance(name, str) or not _METADATA_KEY.fullmatch(name):
            raise exceptions.InvalidInput(
                reason=f"metadata key {name!r} must be lower-case letters, digits and '-'")
        if not isinstance(value, str):
            raise exceptions.InvalidInput(
                reason=f"metadata value of {name!r} must be a string, not {type(value).__name__}")
        out[name] = value
    return out


class _KeyValueOps:
    """JSON helpers shared by :class:`Bank` and :class:`BankSection`."""

    def put(self, key: str, data: bytes | IO[bytes], metadata: Mapping[str, str] | None = None) -> None:
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def put_json(self, key: str, value: Any, metadata: Mapping[str, str] | None = None) -> None:
        self.put(key, json.dumps(value, sort_keys=True, separators=(",", ":")).encode(), metadata)

    def get_json(self, key: str) -> Any:
        raw = self.get(key)
        try:
            return json.loads(raw)
        except ValueError as err:
            raise exceptions.BankObjectCorrupt(key=key, reason=f"not valid JSON: {err}") from err


#: How many checkpoints' sealing (project, encrypted or not) a bank remembers.
_SCOPES_KEPT = 4096


class Bank(_KeyValueOps):
    """A whole bank: validated keys over one :class:`BankPlugin`, and the seal on what must not be clear.

    With a ``keyring``, objects of the sealed kinds (:func:`sealing.scope`: chunks, and everything under a
    checkpoint's ``resources/``) are sealed on the way in and authenticated on the way out, so no component
    above handles a sealed byte.  A checkpoint's objects are sealed when its index says ``encryption`` (the
    index is written first; this bank learns it from :meth:`note_checkpoint` or by reading the index), and
    new chunks when ``encrypt`` is on.  Checkpoints written in the clear (before encryption, or with it
    off) stay readable; a clear object in an encrypted checkpoint is refused.
    """

    def __init__(self, plugin: BankPlugin, name: str = "", keyring: Keyring | None = None,
                 encrypt: bool = True) -> None:
        self.plugin = plugin
        self.name = name or type(plugin).__name__
        self.keyring = keyring
        self.encrypt = encrypt and keyring is not None
        self._scopes: dict[str, tuple[str, str | None]] = {}

    def __repr__(self) -> str:
        return f"Bank({self.name!r})"

    def put(self, key: str, data: bytes | IO[bytes], metadata: Mapping[str, str] | None = None) -> None:
        key = normalize_key(key)
        self.plugin.put_object(key, self._sealed(key, data), normalize_metadata(metadata))

    def put_deferred(self, key: str, data: bytes, metadata: Mapping[str, str] | None = None) -> None:
        """A put that is durable only after the next :meth:`barrier` (``BankPlugin.put_object_deferred``)."""
        key = normalize_key(key)
        self.plugin.put_object_deferred(key, self._sealed_bytes(key, data), normalize_metadata(metadata))

    # -- sealing -------------------------------------------------------------------

    def note_checkpoint(self, checkpoint_id: str, project_id: str, key_id: str | None) -> None:
        """Remember how the checkpoint's objects are sealed: with the project's keyset ``key_id``, or not at
        all (None); its index says so, and the index's writer and readers tell."""
        if len(self._scopes) >= _SCOPES_KEPT:
            self._scopes.clear()
        self._scopes[checkpoint_id] = (project_id, key_id)

    def _checkpoint_scope(self, checkpoint_id: str) -> tuple[str, str | None] | None:
        """``(project, key id or None)`` of a checkpoint, from its index's clear fields; None without one."""
        found = self._scopes.get(checkpoint_id)
        if found is None:
            key = BankLayout.index_key(checkpoint_id)
            try:
                value = json.loads(self.plugin.get_object(key))
            except exceptions.BankObjectNotFound:
                return None
            except ValueError as err:
                raise exceptions.BankObjectCorrupt(key=key, reason=f"not valid JSON: {err}") from None
            project = value.get("project_id") if isinstance(value, dict) else None
            if not isinstance(project, str):
                raise exceptions.BankObjectCorrupt(key=key, reason="it names no project_id")
            encryption = value.get("encryption")
            key_id = encryption.get("key_id") if isinstance(encryption, dict) else None
            if encryption and not sealing.is_key_id(key_id):
                raise exceptions.BankObjectCorrupt(key=key, reason="its encryption names no key id")
            found = (project, key_id)
            self.note_checkpoint(checkpoint_id, *found)
        return found

    def resource_segment(self, checkpoint_id: str, resource_key: str) -> str:
        """The key segment of a resource's section in a checkpoint: the resource key (``type#id``) in a clear
        checkpoint; in an encrypted one an HMAC of it with the checkpoint's chunk-id key, so that the bank's key
        names do not show what was protected (``r`` and 32 hex)."""
        checkpoint = self._checkpoint_scope(checkpoint_id) if self.keyring is not None else None
        if checkpoint is None or checkpoint[1] is None:
            return resource_key
        assert self.keyring is not None
        id_key = self.keyring.get(checkpoint[0], checkpoint[1]).id_key
        return "r" + hmac.digest(id_key, b"resource\x00" + resource_key.encode(), "sha256").hex()[:32]

    def _sealed_bytes(self, key: str, data: bytes) -> bytes:
        sealed = self._sealed(key, data)
        return sealed if isinstance(sealed, bytes) else data

    def _sealed(self, key: str, data: bytes | IO[bytes]) -> bytes | IO[bytes]:
        """``data`` as stored under ``key``: sealed if its kind is sealed here (an IO is then read whole)."""
        if self.keyring is None:
            return data
        where = sealing.scope(key)
        if where is None:
            return data
        kind, name = where
        if kind == sealing.CHUNK:
            if not self.encrypt:
                return data
            project = name
        else:
            checkpoint = self._checkpoint_scope(name)
            if checkpoint is None:
                raise exceptions.BankError(reason=f"{key}: checkpoint {name} has no index, so {self.name} "
                                                  f"cannot tell whether to seal its objects")
            project, key_id = checkpoint
            if key_id is None:
                return data
        payload = data.read() if hasattr(data, "read") else data
        return self.keyring.sealer(project).seal(key, payload)

    def _opened(self, key: str, blob: bytes) -> bytes:
        """``blob`` as read from ``key``: unsealed and authenticated, or clear where clear is allowed."""
        if not sealing.is_sealed(blob):
            if self.keyring is None:
                return blob
            where = sealing.scope(key)
            if where is not None and where[0] == sealing.CHECKPOINT:
                checkpoint = self._checkpoint_scope(where[1])
                if checkpoint is not None and checkpoint[1] is not None:
                    raise exceptions.SealedObjectRejected(
                        key=key, bank=self.name, reason="it is not sealed, and its checkpoint is encrypted")
            return blob  # a clear chunk is checked against its (keyed, for an encrypted manifest) id
        where = sealing.scope(key)
        if where is None:
            return blob
        key_id = sealing.key_id_of(blob)
        if self.keyring is None or key_id is None:
            raise exceptions.KeyUnavailable(
                what=f"sealed object {key}", bank=self.name,
                reason="no key manager is configured" if self.keyring is None else "it names no key id")
        kind, name = where
        project: str | None = name
        if kind == sealing.CHECKPOINT:
            checkpoint = self._checkpoint_scope(name)
            project = checkpoint[0] if checkpoint is not None else self.keyring.find_project(key_id)
            if project is None:
                raise exceptions.KeyUnavailable(what=f"data key {key_id}", bank=self.name,
                                                reason=f"no project of the bank has it (sealing {key})")
        assert project is not None
        return self.keyring.sealer(project, key_id).unseal(key, blob, bank=self.name)

    def seal_value(self, key: str, project_id: str, plaintext: bytes) -> bytes:
        """``plaintext`` sealed for a field of the object ``key`` (an index's private fields)."""
        if self.keyring is None:
            raise exceptions.KeyUnavailable(what=f"the key of project {project_id}", bank=self.name,
                                            reason="no key manager is configured")
        return self.keyring.sealer(project_id).seal(key, plaintext)

    def unseal_value(self, key: str, project_id: str, blob: bytes) -> bytes:
        """What :meth:`seal_value` sealed."""
        key_id = sealing.key_id_of(blob)
        if self.keyring is None or key_id is None:
            raise exceptions.KeyUnavailable(
                what=f"sealed fields of {key}", bank=self.name,
                reason="no key manager is configured" if self.keyring is None else "they name no key id")
        return self.keyring.sealer(project_id, key_id).unseal(key, blob, bank=self.name)

    def encryption_of(self, project_id: str) -> dict[str, str] | None:
        """What a new checkpoint of the project records as its ``encryption`` (None: written clear)."""
        if not self.encrypt:
            return None
        assert self.keyring is not None
        return {"algorithm": sealing.ALGORITHM, "key_id": self.keyring.current(project_id).key_id}

    def id_key(self, project_id: str, key_id: str | None = None) -> tuple[str, bytes]:
        """``(key id, chunk-id key)`` of the project's current keyset, or of ``key_id``."""
        if self.keyring is None:
            raise exceptions.KeyUnavailable(what=f"the chunk-id key of project {project_id}", bank=self.name,
                                            reason="no key manager is configured")
        keyset = self.keyring.current(project_id) if key_id is None else self.keyring.get(project_id, key_id)
        return keyset.key_id, keyset.id_key

    def barrier(self) -> None:
        """Make every deferred put made before this call durable (``BankPlugin.barrier``)."""
        self.plugin.barrier()

    def reclaim_temporaries(self, prefix: str, dry_run: bool = False) -> list[str]:
        """Remove dead writers' leftovers under ``prefix`` (empty or ending with ``/``)
        (``BankPlugin.reclaim_temporaries``: only once no live writer puts there)."""
        body = normalize_prefix(prefix)
        if body and not body.endswith("/"):
            raise exceptions.InvalidInput(reason=f"prefix {prefix!r} must be empty or end with '/'")
        return self.plugin.reclaim_temporaries(body, dry_run=dry_run)

    def get(self, key: str) -> bytes:
        key = normalize_key(key)
        return self._opened(key, self.plugin.get_object(key))

    def open(self, key: str) -> IO[bytes]:
        key = normalize_key(key)
        if sealing.scope(key) is not None:
            return io.BytesIO(self.get(key))  # a sealed object is authenticated whole before any byte is used
        return self.plugin.open_object(key)

    def head(self, key: str) -> ObjectInfo:
        return self.plugin.head_object(normalize_key(key))

    def exists(self, key: str) -> bool:
        return self.plugin.object_exists(normalize_key(key))

    def exists_many(self, keys: Sequence[str]) -> list[bool]:
        """``exists`` of each key, in order (concurrently where the bank gains by it)."""
        return self.plugin.objects_exist([normalize_key(key) for key in keys])

    def delete(self, key: str) -> None:
        self.plugin.delete_object(normalize_key(key))

    def list(self, prefix: str = "", marker: str | None = None, limit: int | None = None) -> list[str]:
        if limit is not None and limit < 0:
            raise exceptions.InvalidInput(reason="limit must not be negative")
        return self.plugin.list_objects(
            prefix=normalize_prefix(prefix),
            marker=normalize_key(marker) if marker else None,
            limit=limit,
        )

    def iter(self, prefix: str = "", page_size: int = 1000) -> Iterator[str]:
        if page_size < 1:
            raise exceptions.InvalidInput(reason="page_size must be at least 1")
        return self.plugin.iter_objects(prefix=normalize_prefix(prefix), page_size=page_size)

    def section(self, prefix: str, read_only: bool = False) -> BankSection:
        return BankSection(self, prefix, read_only=read_only)

    def close(self) -> None:
        self.plugin.close()

    # -- object lock (``BankPlugin.lock_object``; doc/immutability.md) --------------

    @property
    def supports_object_lock(self) -> bool:
        """True if the bank itself can refuse to delete an object until a date (S3 Object Lock)."""
        return bool(self.plugin.supports_object_lock)

    def lock(self, key: str, until: _dt.datetime, mode: str | None = None) -> _dt.datetime:
        """Lock ``key`` until ``until`` (extend, never shorten); returns the lock date it now has."""
        if not self.supports_object_lock:
            raise exceptions.BankError(reason=f"bank {self.name!r} cannot lock objects")
        return self.plugin.lock_object(normalize_key(key), until, mode)

    def object_lock(self, key: str) -> _dt.datetime | None:
        """The date ``key`` is locked until (possibly past), None if never locked or the bank cannot lock."""
        if not self.supports_object_lock:
            return None
        return self.plugin.object_lock(normalize_key(key))


class BankSection(_KeyValueOps):
    """A prefix of a bank.  Keys given to and returned by a section are relative to it."""

    def __init__(self, bank: Bank, prefix: str, read_only: bool = False) -> None:
        body = normalize_key(prefix.rstrip("/"))
        self.bank = bank
        self.prefix = body + "/"
        self.read_only = read_only

    def __repr__(self) -> str:
        mode = "ro" if self.read_only else "rw"
        return f"BankSection({self.bank.name!r}, {self.prefix!r}, {mode})"

    def _full(self, key: str) -> str:
        return self.prefix + normalize_key(key)

    def _check_writable(self, key: str) -> None:
        if self.read_only:
            raise exceptions.BankReadOnly(prefix=self.prefix, key=key)

    def put(self, key: str, data: bytes | IO[bytes], metadata: Mapping[str, str] | None = None) -> None:
        self._check_writable(key)
        self.bank.put(self._full(key), data, metadata)

    def put_deferred(self, key: str, data: bytes, metadata: Mapping[str, str] | None = None) -> None:
        """:meth:`Bank.put_deferred` in this section."""
        self._check_writable(key)
        self.bank.put_deferred(self._full(key), data, metadata)

    def barrier(self) -> None:
        """:meth:`Bank.barrier`: the barrier is the whole bank's, not only this section's."""
        self.bank.barrier()

    def reclaim_temporaries(self, prefix: str = "", dry_run: bool = False) -> list[str]:
        """:meth:`Bank.reclaim_temporaries` under this section (all of it by default)."""
        if not dry_run:
            self._check_writable(prefix)
        return self.bank.reclaim_temporaries(self.prefix + normalize_prefix(prefix), dry_run=dry_run)

    def get(self, key: str) -> bytes:
        return self.bank.get(self._full(key))

    def open(self, key: str) -> IO[bytes]:
        return self.bank.open(self._full(key))

    def head(self, key: str) -> ObjectInfo:
        return self.bank.head(self._full(key))

    def exists(self, key: str) -> bool:
        return self.bank.exists(self._full(key))

    def exists_many(self, keys: Sequence[str]) -> list[bool]:
        return self.bank.exists_many([self._full(key) for key in keys])

    def delete(self, key: str) -> None:
        self._check_writable(key)
        self.bank.delete(self._full(key))

    def list(self, prefix: str = "", marker: str | None = None, limit: int | None = None) -> list[str]:
        cut = len(self.prefix)
        full_marker = self._full(marker) if marker else None
        keys = self.bank.list(self.prefix + normalize_prefix(prefix), marker=full_marker, limit=limit)
        return [k[cut:] for k in keys]

    def iter(self, prefix: str = "", page_size: int = 1000) -> Iterator[str]:
        cut = len(self.prefix)
        for key in self.bank.iter(self.prefix + normalize_prefix(prefix), page_size=page_size):
            yield key[cut:]

    def section(self, prefix: str, read_only: bool = False) -> BankSection:
        return BankSection(self.bank, self.prefix + normalize_key(prefix.rstrip("/")),
                           read_only=read_only or self.read_only)
