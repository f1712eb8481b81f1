"""Object metadata as ``x-amz-meta-<name>`` headers.

The encoding of values (``=?utf-8?b?<base64>?=`` unless plain printable ASCII
words) is described in the package docstring; it is part of the bank's stored
layout, so it never changes.
"""

from __future__ import annotations

import base64
import binascii
import re

_PLAIN_VALUE = re.compile(r"[!-~]+(?: [!-~]+)*")
_ENCODED_PREFIX = "=?utf-8?b?"
_ENCODED_SUFFIX = "?="


def encode_metadata_value(value: str) -> str:
    """An ASCII header value that :func:`decode_metadata_value` turns back into ``value``."""
    if _PLAIN_VALUE.fullmatch(value) and not value.startswith("=?"):
        return value
    raw = value.encode("utf-8", "surrogatepass")
    return _ENCODED_PREFIX + base64.b64encode(raw).decode("ascii") + _ENCODED_SUFFIX


def decode_metadata_value(value: str) -> str:
    """Undo :func:`encode_metadata_value` (plain values come back unchanged)."""
    if value[:len(_ENCODED_PREFIX)].lower() == _ENCODED_PREFIX and value.endswith(_ENCODED_SUFFIX):
        body = value[len(_ENCODED_PREFIX):-len(_ENCODED_SUFFIX)]
        try:
            return base64.b64decode(body, validate=True).decode("utf-8", "surrogatepass")
        except (binascii.Error, ValueError):
            return value  # not ours: leave it as the store gave it
    return value
