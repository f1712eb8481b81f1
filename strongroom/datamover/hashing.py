"""Content hashes of chunks.

``sha256`` is the default (FIPS-friendly, hardware-accelerated on most CPUs);
``blake3`` is faster in software.  Both release the GIL on large buffers, so
hashing runs in parallel on the data mover's thread pool.  A digest is always
the lowercase hex string of the 32-byte hash.
"""

from __future__ import annotations

import hashlib
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


def hasher(algo: str) -> Callable[[Any], str]:
    """The function computing the hex digest of a bytes-like object with ``algo``."""
    try:
        return _ALGORITHMS[algo]
    except KeyError:
        raise exceptions.InvalidInput(
            reason=f"unknown hash algorithm {algo!r} (expected one of {', '.join(HASH_ALGORITHMS)})"
        ) from None


def is_digest(value: object) -> bool:
    """True if ``value`` is a well-formed digest (64 lowercase hex characters)."""
    return isinstance(value, str) and _DIGEST_RE.fullmatch(value) is not None


def check_digest(value: object) -> str:
    """Return ``value`` if it is a well-formed digest, else raise ``InvalidInput``."""
    if not is_digest(value):
        raise exceptions.InvalidInput(reason=f"{value!r} is not a chunk digest (64 lowercase hex characters)")
    assert isinstance(value, str)
    return value
