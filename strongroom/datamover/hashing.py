"""Content hashes of chunks.

``sha256`` is the default (FIPS-friendly, hardware-accelerated on most CPUs);
``blake3`` is faster in software.  Both release the GIL on large buffers, so
hashing runs in parallel on the data mover's thread pool.  A digest is always
the lowercase hex string of the 32-byte hash.

In an encrypted bank chunk ids are keyed, so that object names do not tell
whether the bank holds a known piece of plaintext (kopia's and borg's keyed ids):
``hmac-sha256:<key id>`` (HMAC-SHA256, as fast as SHA-256 through OpenSSL) and
``keyed-blake3:<key id>``, where ``<key id>`` names the project's keyset whose
chunk-id key it is.  The name is what a manifest records, so an incremental only
reuses a parent made with the same key, and a restore hashes with that key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any

from strongroom import exceptions

DEFAULT_HASH = "sha256"
DIGEST_HEX_LENGTH = 64
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")


def _sha256(data: Any) -> str:
    return hashlib.sha256(data).hexdigest()


def _blake3(data: Any) -> str:
    import blake3  # imported lazily: only deployments that choose it pay for it

    return blake3.blake3(data).hexdigest()


_ALGORITHMS: dict[str, Callable[[Any], str]] = {"sha256": _sha256, "blake3": _blake3}

HASH_ALGORITHMS: tuple[str, ...] = tuple(sorted(_ALGORITHMS))


_KEYED = {"sha256": "hmac-sha256", "blake3": "keyed-blake3"}
_KEYED_NAME = re.compile(r"(hmac-sha256|keyed-blake3):([0-9a-f]{16})")


def keyed_name(algo: str, key_id: str) -> str:
    """The name of ``algo`` keyed with the chunk-id key ``key_id``: ``sha256`` -> ``hmac-sha256:<key id>``."""
    base = base_of(algo)
    name = f"{_KEYED[base]}:{key_id}"
    if _KEYED_NAME.fullmatch(name) is None:
        raise exceptions.InvalidInput(reason=f"{key_id!r} is not a key id (16 lowercase hex characters)")
    return name


def key_id_of(name: str) -> str | None:
    """The key id of a keyed hash name; None for an unkeyed one."""
    match = _KEYED_NAME.fullmatch(name)
    return match.group(2) if match else None


def base_of(name: str) -> str:
    """The unkeyed algorithm of a hash name: ``hmac-sha256:<id>`` -> ``sha256``."""
    match = _KEYED_NAME.fullmatch(name)
    if match:
        return {keyed: base for base, keyed in _KEYED.items()}[match.group(1)]
    if name not in _ALGORITHMS:
        raise exceptions.InvalidInput(
            reason=f"unknown hash algorithm {name!r} (expected one of {', '.join(HASH_ALGORITHMS)}, or a keyed "
                   f"hmac-sha256:<key id> or keyed-blake3:<key id>)")
    return name


def hasher(algo: str, key: bytes | None = None) -> Callable[[Any], str]:
    """The function computing the hex digest of a bytes-like object with ``algo`` (a keyed name needs the
    chunk-id ``key`` its key id names)."""
    base = base_of(algo)
    if key_id_of(algo) is None:
        return _ALGORITHMS[base]
    if not key:
        raise exceptions.InvalidInput(reason=f"hash {algo!r} needs its chunk-id key")
    if base == "sha256":
        def keyed_sha256(data: Any) -> str:
            return hmac.digest(key, data, "sha256").hex()
        return keyed_sha256

    def keyed_blake3(data: Any) -> str:
        import blake3

        return blake3.blake3(data, key=key).hexdigest()
    return keyed_blake3


def is_digest(value: object) -> bool:
    """True if ``value`` is a well-formed digest (64 lowercase hex characters)."""
    return isinstance(value, str) and _DIGEST_RE.fullmatch(value) is not None


def check_digest(value: object) -> str:
    """Return ``value`` if it is a well-formed digest, else raise ``InvalidInput``."""
    if not is_digest(value):
        raise exceptions.InvalidInput(reason=f"{value!r} is not a chunk digest (64 lowercase hex characters)")
    assert isinstance(value, str)
    return value
