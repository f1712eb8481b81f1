"""The data keys of a bank: one keyset per project, wrapped by a key-encryption key (KEK).

Envelope encryption, as ``doc/encryption.md`` draws it::

    KEK (in a key manager, through castellan: Barbican deployed, a local file embedded)
     └── wraps keys/<project>/<key id>  (in the bank: AES-256-GCM of data key || chunk-id key)
          ├── data key: seals the project's chunks, manifests and metadata (:mod:`.sealing`)
          └── chunk-id key: HMAC key of the project's chunk ids

``keys/kek`` names the KEK that wraps new keysets (created in the key manager on first use); each wrapped
keyset names the KEK it is wrapped with, so :meth:`Keyring.rotate` can rewrap them all under a new KEK
without rewriting a single chunk.  A bank plus its key manager is enough to read the bank anywhere.

Two services that create a project's first keyset at once each write one; both stay readable (every
sealed object names its key id) and every later run takes the smallest key id, so they converge.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag

from strongroom import exceptions
from strongroom.bank_plugins import sealing
from strongroom.bank_plugins.layout import BankLayout
from strongroom.bank_plugins.sealing import Keyset, Sealer

LOG = logging.getLogger(__name__)

WRAPPED_VERSION = 1


class KekSource(Protocol):
    """Where key-encryption keys live (``strongroom.keys.CastellanKek`` is the implementation)."""

    #: How messages name it: ``key manager 'barbican'``.
    name: str

    def create(self) -> str:
        """A new 256-bit KEK; returns its id."""

    def get(self, kek_id: str) -> bytes:
        """The KEK's 32 bytes; ``KeyUnavailable`` if the key manager does not have it or refuses."""

    def delete(self, kek_id: str) -> None:
        """Remove a KEK (after a rotation)."""


class _Store(Protocol):
    """The clear operations of the bank facade a keyring needs."""

    name: str

    def get(self, key: str) -> bytes: ...
    def put(self, key: str, data: bytes, metadata: Any = None) -> None: ...
    def list(self, prefix: str = "", marker: str | None = None, limit: int | None = None) -> list[str]: ...
    def iter(self, prefix: str = "", page_size: int = 1000) -> Any: ...


@dataclasses.dataclass(frozen=True)
class Rotation:
    """What :meth:`Keyring.rotate` did."""

    bank: str
    new_kek_id: str
    old_kek_ids: tuple[str, ...]
    rewrapped: int

    def describe(self) -> str:
        if not self.new_kek_id:
            return f"{self.bank}: nothing to rotate (no data key yet)"
        old = ", ".join(self.old_kek_ids) or "none"
        return (f"{self.bank}: rewrapped {self.rewrapped} data key(s) under key-encryption key "
                f"{self.new_kek_id} (was: {old})")


class Keyring:
    """The keysets of one bank, unwrapped on first use and kept in memory (never logged)."""

    def __init__(self, store: _Store, kek: KekSource, name: str = "") -> None:
        self.store = store
        self.kek = kek
        #: How messages name the bank (``bank 'fs' of provider 'Local'``).
        self.name = name or store.name
        self._lock = threading.Lock()
        self._keysets: dict[tuple[str, str], Keyset] = {}
        self._sealers: dict[str, Sealer] = {}  # by key id
        self._current: dict[str, str] = {}  # project -> key id
        self._keks: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"Keyring({self.name!r}, {self.kek.name})"

    # -- reading -------------------------------------------------------------------

    def current(self, project_id: str) -> Keyset:
        """The keyset new objects of the project are sealed with (created, wrapped and stored on first use)."""
        key_id = self._current.get(project_id)
        if key_id is None:
            with self._lock:
                key_id = self._current.get(project_id) or self._choose(project_id)
                self._current[project_id] = key_id
        return self.get(project_id, key_id)

    def _choose(self, project_id: str) -> str:
        ids = self._stored_ids(project_id)
        if not ids:
            self._create(project_id)
            ids = self._stored_ids(project_id)  # another service may have written one at the same time
        return min(ids)

    def _stored_ids(self, project_id: str) -> list[str]:
        out = []
        for key in self.store.list(BankLayout.keys_prefix(project_id)):
            parsed = BankLayout.parse_wrapped_key(key)
            if parsed is not None and sealing.is_key_id(parsed[1]):
                out.append(parsed[1])
        return out

    def get(self, project_id: str, key_id: str) -> Keyset:
        """The project's keyset ``key_id``; ``KeyUnavailable`` naming key and bank if it cannot be had."""
        found = self._keysets.get((project_id, key_id))
        if found is not None:
            return found
        key = BankLayout.wrapped_key(project_id, key_id)
        what = f"data key {key_id} of project {project_id}"
        try:
            wrapped = self._read(key)
        except exceptions.BankObjectNotFound:
            raise exceptions.KeyUnavailable(what=what, bank=self.name,
                                            reason=f"the bank holds no {key}") from None
        kek_id = str(wrapped.get("kek_id", ""))
        kek = self._kek(kek_id, what)
        try:
            keyset = sealing.unwrap(kek, project_id, key_id, _b64(wrapped, "nonce", key),
                                    _b64(wrapped, "wrapped", key), key)
        except InvalidTag:
            raise exceptions.KeyUnavailable(
                what=what, bank=self.name,
                reason=f"key-encryption key {kek_id} of {self.kek.name} does not unwrap it "
                       f"(another key under that id, or {key} was altered)") from None
        with self._lock:
            self._keysets[(project_id, key_id)] = keyset
        return keyset

    def sealer(self, project_id: str, key_id: str | None = None) -> Sealer:
        """A sealer of the project's current keyset, or of ``key_id``."""
        keyset = self.current(project_id) if key_id is None else self.get(project_id, key_id)
        sealer = self._sealers.get(keyset.key_id)
        if sealer is None or sealer.keyset is not keyset:
            sealer = Sealer(keyset)
            self._sealers[keyset.key_id] = sealer
        return sealer

    def find_project(self, key_id: str) -> str | None:
        """The project whose keyset is ``key_id`` (a scan of ``keys/``; for objects whose checkpoint has
        no index left to say)."""
        for (project, known), _ in list(self._keysets.items()):
            if known == key_id:
                return project
        for key in self.store.iter(BankLayout.KEYS):
            parsed = BankLayout.parse_wrapped_key(key)
            if parsed is not None and parsed[1] == key_id:
                return parsed[0]
        return None

    def adopt_id_key(self, project_id: str, id_key: bytes) -> Keyset:
        """The project's current keyset; if the bank has none yet, one is made whose chunk-id key is
        ``id_key`` (another bank's, for a copy: chunk ids are then the same in both banks, so a copy sends
        only the chunks the target lacks without reading the others).  Its data key is new."""
        with self._lock:
            if self._current.get(project_id) is None and not self._stored_ids(project_id):
                self._create(project_id, id_key)
        return self.current(project_id)

    # -- writing -------------------------------------------------------------------

    def _create(self, project_id: str, id_key: bytes | None = None) -> Keyset:
        """A new keyset of the project (with ``id_key`` as its chunk-id key if given), wrapped and stored."""
        keyset = Keyset.generate(project_id)
        if id_key is not None:
            keyset = Keyset(project_id, keyset.key_id, keyset.data_key, id_key)
        kek_id = self.current_kek_id()
        self._write(keyset, kek_id, self._kek(kek_id, f"key-encryption key {kek_id}"))
        again = self.current_kek_id()
        if again != kek_id:  # a rotation switched KEKs meanwhile, and may have listed the keys before this one
            self._write(keyset, again, self._kek(again, f"key-encryption key {again}"))
        LOG.info("created data key %s of project %s in %s (wrapped by %s)", keyset.key_id, project_id,
                 self.name, again)
        return keyset

    def _write(self, keyset: Keyset, kek_id: str, kek: bytes) -> None:
        key = BankLayout.wrapped_key(keyset.project_id, keyset.key_id)
        nonce, wrapped = sealing.wrap(kek, keyset, key)
        locked = self._lock_of(key)
        self.store.put(key, _json({"version": WRAPPED_VERSION, "project_id": keyset.project_id,
                                   "key_id": keyset.key_id, "algorithm": sealing.ALGORITHM, "kek_id": kek_id,
                                   "nonce": base64.b64encode(nonce).decode(),
                                   "wrapped": base64.b64encode(wrapped).decode()}))
        if locked is not None:  # a locked checkpoint needs it (doc/immutability.md): the new version is locked too
            self.store.lock(key, locked)  # type: ignore[attr-defined]

    def _lock_of(self, key: str) -> Any:
        """The object-lock date of ``key``'s current version in a bank that locks, else None."""
        if not getattr(self.store, "supports_object_lock", False):
            return None
        try:
            return self.store.object_lock(key)  # type: ignore[attr-defined]
        except exceptions.BankObjectNotFound:
            return None

    def current_kek_id(self) -> str:
        """The KEK new keysets are wrapped with (``keys/kek``), created in the key manager on first use."""
        try:
            value = self._read(BankLayout.CURRENT_KEK)
        except exceptions.BankObjectNotFound:
            kek_id = self.kek.create()
            self.store.put(BankLayout.CURRENT_KEK, _json({"kek_id": kek_id}))
            LOG.warning("created key-encryption key %s in %s for %s: back it up, without it the bank cannot "
                        "be read (doc/encryption.md)", kek_id, self.kek.name, self.name)
            return kek_id
        named = value.get("kek_id")
        if not isinstance(named, str) or not named:
            raise exceptions.BankObjectCorrupt(key=BankLayout.CURRENT_KEK, reason="it names no kek_id")
        return named

    def rotate(self, delete_old: bool = True) -> Rotation:
        """Rewrap every keyset of the bank under a new KEK, made current first (so a keyset created meanwhile
        is rewrapped by its creator, :meth:`_create`); then the old KEKs are deleted from the key manager,
        unless ``delete_old`` is False.  No chunk is rewritten.  Run again after a failure: a keyset already
        under the new KEK is left as it is.
        """
        try:
            named = self._read(BankLayout.CURRENT_KEK).get("kek_id")
            old = {str(named)} if named else set()
        except exceptions.BankObjectNotFound:
            old = set()
        if not old and not any(BankLayout.parse_wrapped_key(k) for k in self.store.iter(BankLayout.KEYS)):
            return Rotation(self.name, "", (), 0)  # nothing encrypted yet: no KEK to replace
        new_id = self.kek.create()
        new = self._kek(new_id, f"key-encryption key {new_id}")
        self.store.put(BankLayout.CURRENT_KEK, _json({"kek_id": new_id}))
        rewrapped = 0
        for key in list(self.store.iter(BankLayout.KEYS)):
            parsed = BankLayout.parse_wrapped_key(key)
            if parsed is None or not sealing.is_key_id(parsed[1]):
                continue
            project, key_id = parsed
            under = str(self._read(key).get("kek_id", ""))
            if under == new_id:
                continue
            keyset = self.get(project, key_id)
            self._write(keyset, new_id, new)
            old.add(under)
            rewrapped += 1
        old.discard(new_id)
        old.discard("")
        if delete_old:
            for kek_id in sorted(old):
                try:
                    self.kek.delete(kek_id)
                except exceptions.KeyUnavailable as err:
                    LOG.warning("after rotating %s, the old key-encryption key %s was not deleted: %s",
                                self.name, kek_id, err)
                self._keks.pop(kek_id, None)
        return Rotation(self.name, new_id, tuple(sorted(old)), rewrapped)

    # -- helpers ---------------------------------------------------------------------

    def _kek(self, kek_id: str, what: str) -> bytes:
        found = self._keks.get(kek_id)
        if found is None:
            if not kek_id:
                raise exceptions.KeyUnavailable(what=what, bank=self.name,
                                                reason="it names no key-encryption key")
            try:
                found = self.kek.get(kek_id)
            except exceptions.KeyUnavailable as err:
                raise exceptions.KeyUnavailable(
                    what=what, bank=self.name,
                    reason=f"its key-encryption key {kek_id}: {err.kwargs.get('reason', err)}") from None
            self._keks[kek_id] = found
        return found

    def _read(self, key: str) -> dict[str, Any]:
        raw = self.store.get(key)
        try:
            value = json.loads(raw)
        except ValueError as err:
            raise exceptions.BankObjectCorrupt(key=key, reason=f"not valid JSON: {err}") from None
        if not isinstance(value, dict):
            raise exceptions.BankObjectCorrupt(key=key, reason="not a JSON object")
        return value


def _b64(value: dict[str, Any], field: str, key: str) -> bytes:
    try:
        return base64.b64decode(str(value[field]), validate=True)
    except (KeyError, ValueError):
        raise exceptions.BankObjectCorrupt(key=key, reason=f"{field!r} is missing or not base64") from None


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
