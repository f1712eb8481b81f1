"""Object metadata as ``X-Object-Meta-<name>`` headers, within Swift's limits.

The encoding of values (``%`` + percent-encoded UTF-8 unless plain printable
ASCII) is described in the package docstring; it is part of the bank's stored
layout, so it never changes.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

from strongroom import exceptions

META_HEADER = "x-object-meta-"
#: Swift's default metadata constraints (``[swift-constraints]``), checked before sending.
MAX_META_NAME_LENGTH = 128
MAX_META_VALUE_LENGTH = 256
MAX_META_COUNT = 90
MAX_META_OVERALL_SIZE = 4096


def encode_metadata_value(value: str) -> str:
    """A header-safe, reversible form of ``value`` (see the module docstring)."""
    if value and all("!" <= ch <= "~" and ch != "%" for ch in value):
        return value
    return "%" + urllib.parse.quote_from_bytes(value.encode("utf-8", "surrogatepass"), safe="")


def decode_metadata_value(stored: str) -> str:
    if stored.startswith("%"):
        return urllib.parse.unquote_to_bytes(stored[1:]).decode("utf-8", "surrogatepass")
    return stored


def metadata_headers(metadata: Mapping[str, str] | None, context: str) -> dict[str, str]:
    """The headers that store ``metadata``; ``BankError`` (``context: why``) if Swift would refuse them."""
    headers: dict[str, str] = {}
    total = 0
    for name, value in (metadata or {}).items():
        stored = encode_metadata_value(value)
        total += len(name) + len(stored)
        problem = None
        if len(name) > MAX_META_NAME_LENGTH:
            problem = f"metadata name {name!r} is longer than {MAX_META_NAME_LENGTH} characters"
        elif len(stored) > MAX_META_VALUE_LENGTH:
            problem = (f"metadata {name!r} takes {len(stored)} bytes once encoded, more than Swift's "
                       f"{MAX_META_VALUE_LENGTH}")
        if problem:
            raise exceptions.BankError(reason=f"{context}: {problem}")
        headers[META_HEADER + name] = stored
    if len(headers) > MAX_META_COUNT or total > MAX_META_OVERALL_SIZE:
        raise exceptions.BankError(
            reason=f"{context}: {len(headers)} metadata items of {total} bytes "
                   f"exceed Swift's limits ({MAX_META_COUNT} items, {MAX_META_OVERALL_SIZE} bytes)")
    return headers


def metadata_of(headers: Mapping[str, str]) -> dict[str, str]:
    """The metadata stored in ``headers`` (names lower-case)."""
    return {name[len(META_HEADER):]: decode_metadata_value(value)
            for name, value in headers.items() if name.startswith(META_HEADER)}
