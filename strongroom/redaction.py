"""Keeping credentials out of messages, reprs and logs: the one place that masks them.

Every layer that prints something which may hold a secret (a bank's options, a
driver's error text, a URL with a password, a third-party library's DEBUG log)
masks it with these helpers, so that what counts as masked is decided once:

* :func:`scrub` replaces known secret values (a key, a token) by :data:`MASK`;
* :func:`redact_url_credentials` masks the password of ``scheme://user:password@host``;
* :class:`RedactedOptions` is an options mapping whose ``repr`` masks its secret keys;
* :class:`LogRedactor` is a logging filter that rewrites records of other libraries.

This module imports nothing from Strongroom: storage plugins and service layers alike may use it.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Collection, Iterable, Mapping
from typing import Any

#: What a secret is replaced with wherever it would be shown.
MASK = "***"

_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]+@")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each (non-empty) secret replaced by :data:`MASK`.

    The longest secrets go first, so that a secret containing another is masked whole.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redact_url_credentials(text: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:***@host``, for every URL in ``text``."""
    return _URL_PASSWORD.sub(rf"\1{MASK}@", text)


def masked(options: Mapping[str, Any], secret_keys: Collection[str]) -> dict[str, Any]:
    """A copy of ``options`` with the values of ``secret_keys`` replaced by :data:`MASK`."""
    return {k: (MASK if k in secret_keys else v) for k, v in options.items()}


class RedactedOptions(dict[str, Any]):
    """Options (a real ``dict``) whose secret values are masked wherever the mapping is printed."""

    def __init__(self, options: Mapping[str, Any], secret_keys: Collection[str]) -> None:
        super().__init__(options)
        self.secret_keys = frozenset(secret_keys)

    def __repr__(self) -> str:
        return repr(masked(self, self.secret_keys))

    __str__ = __repr__


class LogRedactor(logging.Filter):
    """Rewrites log records so that no registered secret, nor anything ``patterns`` match, reaches a handler.

    ``patterns`` are ``(regex, replacement)`` pairs for what a library prints
    around credentials (a signature, an ``Authorization`` header).  Owners (e.g.
    a live bank) register the secret values they hold; they are forgotten with
    the owner.  Filters are per logger: :meth:`install` attaches this one to a
    family of loggers.
    """

    def __init__(self, patterns: Iterable[tuple[re.Pattern[str], str]] = ()) -> None:
        super().__init__()
        self._patterns = list(patterns)
        self._owners: weakref.WeakKeyDictionary[object, tuple[str, ...]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def register(self, owner: object, secrets: Iterable[str]) -> None:
        """Mask ``secrets`` (empty ones are ignored) for as long as ``owner`` lives."""
        with self._lock:
            self._owners[owner] = tuple(s for s in secrets if s)

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = [s for values in self._owners.values() for s in values]
        text = scrub(text, secrets)
        for pattern, replacement in self._patterns:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a malformed record: the logging module reports it itself
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None:
            text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info, record.exc_text = None, text
        return True

    def install(self, roots: Iterable[str]) -> None:
        """Attach this filter to the loggers ``roots`` and to every existing logger below them."""
        families = tuple(roots)
        names = [name for name in list(logging.root.manager.loggerDict)
                 if name.split(".", 1)[0] in families]
        for name in sorted(set(names) | set(families)):
            logger = logging.getLogger(name)
            if self not in logger.filters:
                logger.addFilter(self)
