"""What the HTTP object-store banks share: option errors, HTTP dates, stream heads, body readers."""

from __future__ import annotations

import datetime as _dt
import io
from typing import Any

import pytest

from strongroom import exceptions
from strongroom.bank_plugins.objectstore import BodyReader, Prepended, check_schema, parse_http_date, read_up_to

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "password": {"type": "string", "minLength": 8}},
    "required": ["name"],
    "additionalProperties": False,
}


def check(options: dict[str, Any], every_unknown: bool = False) -> exceptions.ConfigError:
    with pytest.raises(exceptions.ConfigError) as excinfo:
        check_schema("demo", options, SCHEMA, secret_options={"password"}, every_unknown=every_unknown,
                     secret_message=lambda prop: f"must be a {prop['type']} (not shown)")
    return excinfo.value


def test_schema_errors_name_the_option_never_a_secret() -> None:
    check_schema("demo", {"name": "x"}, SCHEMA, secret_options=(), secret_message=str)
    err = check({"name": "x", "password": "short"})
    assert "demo bank option 'password': must be a string (not shown)" in str(err) and "short" not in str(err)
    assert "'name': is required" in str(check({}))
    assert "'name': 12 is not of type 'string'" in str(check({"name": 12}))
    assert "'b': unknown option" in str(check({"name": "x", "c": 1, "b": 2}))
    assert "'b, c': unknown option" in str(check({"name": "x", "c": 1, "b": 2}, every_unknown=True))


@pytest.mark.parametrize(("value", "expected"), [
    ("Tue, 01 Dec 2026 19:49:14 GMT", _dt.datetime(2026, 12, 1, 19, 49, 14, tzinfo=_dt.UTC)),
    ("Tue, 01 Dec 2026 20:49:14 +0100", _dt.datetime(2026, 12, 1, 19, 49, 14, tzinfo=_dt.UTC)),
    ("Tue, 01 Dec 2026 19:49:14 -0000", _dt.datetime(2026, 12, 1, 19, 49, 14, tzinfo=_dt.UTC)),
    ("not a date", None), ("", None), (None, None),
])
def test_http_dates_are_aware_utc(value: str | None, expected: _dt.datetime | None) -> None:
    parsed = parse_http_date(value)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is _dt.UTC


class Trickle:
    def __init__(self, data: bytes, step: int = 3) -> None:
        self._data, self._step = data, step

    def read(self, size: int = -1) -> bytes:
        piece, self._data = self._data[:min(size, self._step)], self._data[min(size, self._step):]
        return piece


def test_read_up_to_fills_from_short_reads() -> None:
    stream = Trickle(b"0123456789")
    assert read_up_to(stream, 7) == b"0123456"
    assert read_up_to(stream, 7) == b"789"
    assert read_up_to(stream, 7) == b""


def test_prepended_replays_the_head_then_the_stream() -> None:
    source = Prepended(b"head", Trickle(b"-tail"))
    assert source.known_remaining() is None
    assert not source.at_eof()
    assert source.read(2) == b"he" and source.read(10) == b"ad"
    assert not source.at_eof()  # peeks one byte of the stream
    assert read_up_to(source, 100) == b"-tail"
    assert source.at_eof() and source.read(5) == b""
    only = Prepended(memoryview(b"abc"))
    assert only.known_remaining() == 3 and only.read() == b"abc" and only.known_remaining() == 0
    assert Prepended(b"").at_eof()


def test_prepended_wraps_the_streams_failures() -> None:
    class Broken:
        def read(self, size: int = -1) -> bytes:
            raise OSError("the caller's pipe broke")

    class Wrapped(Exception):
        pass

    source = Prepended(b"x", Broken(), wrap_error=lambda err: Wrapped(str(err)))
    assert source.read(1) == b"x"
    with pytest.raises(Wrapped, match="pipe broke"):
        source.read(1)
    with pytest.raises(OSError):
        Prepended(b"", Broken()).read(1)


def test_body_reader_maps_errors_and_reports_close() -> None:
    closed: list[bool] = []

    class Body(io.BytesIO):
        fail = False

        def read(self, size: int | None = -1) -> bytes:
            if self.fail:
                raise ConnectionResetError("reset")
            return super().read(size)

    body = Body(b"x" * 3_000_000)
    reader = BodyReader(body, on_error=lambda err: exceptions.BankTransientError(reason=str(err)),
                        on_close=closed.append)
    assert len(reader.readall()) == 3_000_000
    assert reader.readall() == b""
    reader.close()
    reader.close()
    assert closed == [False]
    failing = Body(b"abc")
    failing.fail = True
    reader = BodyReader(failing, on_error=lambda err: exceptions.BankTransientError(reason=str(err)),
                        on_close=closed.append)
    with pytest.raises(exceptions.BankTransientError, match="reset"):
        reader.read(1)
    reader.close()
    assert closed == [False, True]
    unmapped = BodyReader(failing, on_error=lambda err: None)
    with pytest.raises(ConnectionResetError):
        unmapped.read(1)
