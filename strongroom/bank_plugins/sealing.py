"""Sealed objects: what an AEAD makes of a bank object that holds volume data or names user resources.

A sealed object is ``MAGIC || key id (16 ASCII hex) || nonce (12) || AES-256-GCM(ciphertext || tag)``.
The associated data is the object's full bank key, so an object moved to another key, or two objects
swapped, fail authentication; the key id in the clear says which data key of the project sealed it (it is
bound too: another id selects another key, whose tag does not match).

:func:`scope` says which objects are sealed, from their keys alone (the layout's kinds):

- ``projects/<project>/chunks/...``: data chunks, sealed with the project's key;
- ``checkpoints/<cid>/resources/...``: manifests, resource metadata and resume states, sealed with the key
  of the checkpoint's project (which the checkpoint's index names, in the clear).

Everything else (indices, listings, markers, leases, clock probes, sweep markers and the wrapped keys
themselves) stays clear: garbage collection and listing need it without a data key, and none of it holds
volume data.  The index's fields that name user resources (the plan and the resource graph) are sealed
inside the index by :mod:`strongroom.protection.index`, with :meth:`Sealer.seal` and the index's key.
``doc/bank-layout.md`` and ``doc/encryption.md`` list the same.
"""

from __future__ import annotations

import dataclasses
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom import exceptions
from strongroom.bank_plugins.layout import BankLayout

MAGIC = b"SRS\x01"
KEY_ID_LENGTH = 16
NONCE_LENGTH = 12
TAG_LENGTH = 16
HEADER_LENGTH = len(MAGIC) + KEY_ID_LENGTH + NONCE_LENGTH
ALGORITHM = "AES-256-GCM"
KEY_BYTES = 32
_KEY_ID = re.compile(rb"[0-9a-f]{16}")
#: What binds a sealed object to its place: the bank key follows this prefix in the associated data.
_AD_PREFIX = b"strongroom-sealed-object\x00"

CHUNK = "chunk"
CHECKPOINT = "checkpoint"


def scope(key: str) -> tuple[str, str] | None:
    """``(CHUNK, project)`` or ``(CHECKPOINT, checkpoint id)`` for a key whose object is sealed; None for a
    key that stays clear."""
    if key.startswith(BankLayout.PROJECTS):
        project, _, rest = key[len(BankLayout.PROJECTS):].partition("/")
        if project and rest.startswith("chunks/"):
            return CHUNK, project
        return None
    if key.startswith(BankLayout.CHECKPOINTS):
        checkpoint_id, _, rest = key[len(BankLayout.CHECKPOINTS):].partition("/")
        if checkpoint_id and rest.startswith("resources/"):
            return CHECKPOINT, checkpoint_id
    return None


def new_key_id() -> str:
    return os.urandom(KEY_ID_LENGTH // 2).hex()


def is_key_id(value: object) -> bool:
    return isinstance(value, str) and _KEY_ID.fullmatch(value.encode()) is not None


def is_sealed(blob: bytes | bytearray | memoryview) -> bool:
    """True if ``blob`` starts like a sealed object (it may still fail to unseal)."""
    return len(blob) >= HEADER_LENGTH + TAG_LENGTH and bytes(blob[:len(MAGIC)]) == MAGIC


def key_id_of(blob: bytes | bytearray | memoryview) -> str | None:
    """The key id a sealed object names, or None if it is not shaped as one."""
    if not is_sealed(blob):
        return None
    raw = bytes(blob[len(MAGIC):len(MAGIC) + KEY_ID_LENGTH])
    return raw.decode() if _KEY_ID.fullmatch(raw) else None


@dataclasses.dataclass(frozen=True)
class Keyset:
    """One data key of a project in one bank, and the key its chunk ids are made with.

    ``data_key`` seals objects (AES-256-GCM); ``id_key`` keys the chunk ids (HMAC), so that object names
    do not tell whether the bank holds a known piece of plaintext.  Never logged: ``repr`` shows the id only.
    """

    project_id: str
    key_id: str
    data_key: bytes = dataclasses.field(repr=False)
    id_key: bytes = dataclasses.field(repr=False)

    @classmethod
    def generate(cls, project_id: str) -> Keyset:
        return cls(project_id, new_key_id(), AESGCM.generate_key(bit_length=256), os.urandom(KEY_BYTES))

    def material(self) -> bytes:
        return self.data_key + self.id_key

    @classmethod
    def from_material(cls, project_id: str, key_id: str, material: bytes) -> Keyset:
        if len(material) != 2 * KEY_BYTES:
            raise ValueError(f"a keyset is {2 * KEY_BYTES} bytes, not {len(material)}")
        return cls(project_id, key_id, material[:KEY_BYTES], material[KEY_BYTES:])


class Sealer:
    """Seals and unseals objects with a keyset (thread-safe: AESGCM holds no state between calls)."""

    def __init__(self, keyset: Keyset) -> None:
        self.keyset = keyset
        self._aead = AESGCM(keyset.data_key)
        self._key_id = keyset.key_id.encode()

    def seal(self, key: str, plaintext: bytes | bytearray | memoryview) -> bytes:
        """The sealed object of ``plaintext`` to be stored under the bank key ``key``."""
        nonce = os.urandom(NONCE_LENGTH)
        header = MAGIC + self._key_id + nonce
        return header + self._aead.encrypt(nonce, bytes(plaintext), _AD_PREFIX + key.encode())

    def unseal(self, key: str, blob: bytes | bytearray | memoryview, bank: str = "the bank") -> bytes:
        """The plaintext of the sealed object ``blob`` read from ``key``; ``SealedObjectRejected`` naming the
        key if it is not authentic (altered, truncated, moved from another key, or of another key id)."""
        if key_id_of(blob) != self.keyset.key_id:
            raise exceptions.SealedObjectRejected(key=key, bank=bank,
                                                  reason=f"it is not sealed with key {self.keyset.key_id}")
        view = memoryview(blob)
        nonce = bytes(view[len(MAGIC) + KEY_ID_LENGTH:HEADER_LENGTH])
        try:
            return self._aead.decrypt(nonce, view[HEADER_LENGTH:], _AD_PREFIX + key.encode())
        except InvalidTag:
            raise exceptions.SealedObjectRejected(
                key=key, bank=bank, reason="authentication failed (altered, truncated or moved)") from None


def wrap(kek: bytes, keyset: Keyset, key: str) -> tuple[bytes, bytes]:
    """``(nonce, wrapped)``: the keyset's material sealed with a key-encryption key, bound to ``key`` (the
    wrapped keyset's bank key) and to the key id."""
    nonce = os.urandom(NONCE_LENGTH)
    return nonce, AESGCM(kek).encrypt(nonce, keyset.material(), _wrap_ad(key, keyset.key_id))


def unwrap(kek: bytes, project_id: str, key_id: str, nonce: bytes, wrapped: bytes, key: str) -> Keyset:
    """The keyset ``wrap`` made; ``InvalidTag`` (from ``cryptography``) if the KEK is not the one it was
    wrapped with or the object was altered or moved."""
    return Keyset.from_material(project_id, key_id, AESGCM(kek).decrypt(nonce, wrapped, _wrap_ad(key, key_id)))


def _wrap_ad(key: str, key_id: str) -> bytes:
    return b"strongroom-wrapped-keyset\x00" + key.encode() + b"\x00" + key_id.encode()
