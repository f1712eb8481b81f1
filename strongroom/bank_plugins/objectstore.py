"""What the HTTP object-store banks (``swift``, ``s3``) share, owned here once.

* option checking against a plugin's JSON schema whose errors name the option
  and never quote a secret's value (:func:`check_schema`, :func:`option_error`);
* the bank's clock from an HTTP ``Date`` (or ``Last-Modified``) header
  (:func:`parse_http_date`);
* uploads that look at the head of a stream to choose between one request and
  a segmented/multipart upload: :func:`read_up_to` buffers the head and
  :class:`Prepended` replays it before the rest of the stream;
* :class:`BodyReader`, a raw stream over an HTTP response body that raises the
  bank's errors.

Redaction of credentials lives in :mod:`strongroom.redaction` (the service
layers use it too).
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import io
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

from strongroom import exceptions
from strongroom.plugin_options import describe_schema_error, first_schema_error

MiB = 1 << 20
#: Streams are read in pieces of at most this size.
READ_PIECE = MiB


# -- options ------------------------------------------------------------------


def option_error(plugin: str, name: str, message: str) -> exceptions.ConfigError:
    """``ConfigError`` about option ``name`` of a ``plugin`` bank (``key`` names the option)."""
    return exceptions.ConfigError(reason=f"{plugin} bank option {name!r}: {message}", key=name)


def check_schema(plugin: str, options: Mapping[str, Any], schema: Mapping[str, Any], *,
                 secret_options: Collection[str], secret_message: Callable[[Mapping[str, Any]], str],
                 every_unknown: bool = False) -> None:
    """Raise :func:`option_error` for the first way ``options`` break ``schema`` (see :func:`describe_schema_error`)."""
    err = first_schema_error(options, schema)
    if err is not None:
        raise option_error(plugin, *describe_schema_error(
            err, options, schema, secret_options=secret_options, secret_message=secret_message,
            every_unknown=every_unknown))


# -- the bank's clock ---------------------------------------------------------


def parse_http_date(value: str | None) -> _dt.datetime | None:
    """An HTTP date (``Date``, ``Last-Modified``) as an aware UTC datetime; None if absent or malformed."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:  # "-0000": UTC by RFC 5322
        parsed = parsed.replace(tzinfo=_dt.UTC)
    return parsed.astimezone(_dt.UTC)


# -- uploads: the head of a stream, then the rest ----------------------------------


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def read_up_to(stream: Readable, size: int) -> bytearray:
    """Read from ``stream`` until ``size`` bytes or EOF (streams may return short reads).

    The caller's exceptions pass through unchanged; the result grows in place,
    so a head of ``size`` bytes costs about ``size`` bytes.
    """
    buf = bytearray()
    while len(buf) < size:
        piece = stream.read(min(READ_PIECE, size - len(buf)))
        if not piece:
            break
        buf += piece
    return buf


class Prepended:
    """``head`` (released as soon as it is read), then the rest of ``stream`` (if any).

    ``wrap_error``, if given, turns an exception raised by ``stream`` into the one
    raised instead (a plugin tells the caller's failures from its store's that way).
    """

    def __init__(self, head: bytes | bytearray | memoryview, stream: Readable | None = None, *,
                 wrap_error: Callable[[Exception], Exception] | None = None) -> None:
        view = memoryview(head).cast("B")
        self._head: memoryview | None = view if len(view) else None
        self._stream = stream
        self._wrap_error = wrap_error
        self._peeked = b""

    def known_remaining(self) -> int | None:
        """Bytes left, if known (no stream behind the head)."""
        if self._stream is not None:
            return None
        return len(self._head) if self._head is not None else 0

    def at_eof(self) -> bool:
        """True when nothing is left (may read one byte ahead from the stream)."""
        if self._head is not None or self._peeked:
            return False
        if self._stream is None:
            return True
        self._peeked = self._read_stream(1)
        return not self._peeked

    def read(self, size: int = -1, /) -> bytes:
        if self._head is not None:
            if size < 0 or size >= len(self._head):
                piece, self._head = bytes(self._head), None
                return piece
            piece, self._head = bytes(self._head[:size]), self._head[size:]
            return piece
        if self._peeked:
            piece, self._peeked = self._peeked, b""
            return piece
        if self._stream is None:
            return b""
        return self._read_stream(size)

    def _read_stream(self, size: int) -> bytes:
        assert self._stream is not None
        try:
            piece = self._stream.read(size)
        except Exception as err:
            if self._wrap_error is None:
                raise
            raise self._wrap_error(err) from err
        return bytes(piece or b"")


# -- downloads ----------------------------------------------------------------------


class BodyReader(io.RawIOBase):
    """A raw stream over an HTTP response ``body`` (anything with ``read(n)`` and ``close()``).

    An exception of the ``catch`` types raised by ``body.read`` goes to
    ``on_error``, which raises the bank error (or returns it; None re-raises the
    original).  ``on_close(broken)`` learns, once, whether the body failed.
    """

    def __init__(self, body: Any, on_error: Callable[[Exception], BaseException | None], *,
                 on_close: Callable[[bool], None] | None = None,
                 catch: tuple[type[Exception], ...] = (Exception,)) -> None:
        super().__init__()
        self._body = body
        self._on_error = on_error
        self._on_close = on_close
        self._catch = catch
        self._broken = False
        self._eof = False

    def readable(self) -> bool:
        return True

    def _read(self, size: int) -> bytes:
        if self._eof:
            return b""
        try:
            piece = self._body.read(size)
        except self._catch as err:
            self._broken = True
            mapped = self._on_error(err)
            if mapped is None:
                raise
            raise mapped from err
        if not piece:
            self._eof = True
            return b""
        return bytes(piece) if type(piece) is not bytes else piece

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        piece = self._read(len(view))
        view[:len(piece)] = piece
        return len(piece)

    def readall(self) -> bytes:
        pieces: list[bytes] = []
        while piece := self._read(READ_PIECE):
            pieces.append(piece)
        return b"".join(pieces)

    def close(self) -> None:
        if not self.closed:
            try:
                self._body.close()
            except Exception:  # noqa: BLE001 - closing a dead connection is not an error
                self._broken = True
            if self._on_close is not None:
                self._on_close(self._broken)
        super().close()
