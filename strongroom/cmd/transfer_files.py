"""Files of ``strongroom-manage db export|import``: ``-`` is stdin/stdout, ``*.gz`` is gzip.

An export is written to ``FILE.partial`` and renamed once complete, so ``FILE`` is never half written.
Errors opening a file become one-line :class:`~strongroom.exceptions.InvalidInput` naming it.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import sys
from collections.abc import Iterator
from typing import TextIO, cast

from strongroom import exceptions


def _open(path: str, mode: str) -> TextIO:
    try:
        if path.endswith(".gz"):
            return cast(TextIO, gzip.open(path, mode + "t", encoding="utf-8"))
        return cast(TextIO, open(path, mode, encoding="utf-8"))
    except OSError as err:
        raise exceptions.InvalidInput(reason=f"{path}: {err.strerror or err}") from None


@contextlib.contextmanager
def writer(path: str) -> Iterator[TextIO]:
    if path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    partial = path + ".partial" if not path.endswith(".gz") else path[:-3] + ".partial.gz"
    out = _open(partial, "w")
    try:
        with out:
            yield out
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


@contextlib.contextmanager
def reader(path: str) -> Iterator[TextIO]:
    if path == "-":
        yield sys.stdin
        return
    with _open(path, "r") as lines:
        try:
            yield lines
        except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as err:
            raise exceptions.InvalidInput(reason=f"{path}: cannot be read ({err})") from None
