"""Trigger properties: when triggers fire, and errors that name the field."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import pytest

from strongroom import exceptions
from strongroom.operationengine.schedule import Limits, TimeSpec, parse_properties, schedule_for

NOW = _dt.datetime(2026, 1, 5, 9, 59, 59, 700000, tzinfo=_dt.UTC)
LIMITS = Limits(min_interval=3600, min_window=60, max_window=7200, default_window=900)


def fires(properties: dict[str, Any], count: int = 3, limits: Limits = LIMITS) -> list[str]:
    spec = parse_properties(properties, limits, NOW)
    schedule = schedule_for(TimeSpec.from_properties(spec.to_properties()))  # survives storage
    times = schedule.fires(NOW - _dt.timedelta(days=400), NOW + _dt.timedelta(days=400), limit=count)
    return [t.strftime("%Y-%m-%d %H:%M:%S") for t in times]


def test_crontab_fires_from_start_time_in_utc() -> None:
    assert fires({"format": "crontab", "pattern": "0 10 * * *"}) == [
        "2026-01-05 10:00:00", "2026-01-06 10:00:00", "2026-01-07 10:00:00"]
    assert fires({"pattern": "30 2 * * 1", "start_time": "2026-02-01T00:00:00"}) == [
        "2026-02-02 02:30:00", "2026-02-09 02:30:00", "2026-02-16 02:30:00"]
    spec = parse_properties({"pattern": "0 10 * * *"}, LIMITS, NOW)
    assert spec.start_time == NOW.replace(microsecond=0) and spec.window == 900 and spec.format == "crontab"


def test_six_field_cron_has_seconds_last() -> None:
    short = Limits(min_interval=10, min_window=1, max_window=60, default_window=5)
    assert fires({"pattern": "* * * * * */20"}, limits=short) == [
        "2026-01-05 10:00:00", "2026-01-05 10:00:20", "2026-01-05 10:00:40"]


def test_calendar_rrule_with_karbors_escaped_newlines_and_an_end() -> None:
    props = {"format": "calendar", "pattern": "BEGIN:VEVENT\\nRRULE:FREQ=HOURLY;INTERVAL=2;\\nEND:VEVENT",
             "start_time": "2026-01-05 08:30:00", "end_time": "2026-01-05T13:00:00", "window": "600"}
    assert fires(props, count=10) == ["2026-01-05 08:30:00", "2026-01-05 10:30:00", "2026-01-05 12:30:00"]
    spec = parse_properties(props, LIMITS, NOW)
    assert spec.to_properties() == {
        "format": "calendar", "pattern": "BEGIN:VEVENT\nRRULE:FREQ=HOURLY;INTERVAL=2;\nEND:VEVENT",
        "start_time": "2026-01-05T08:30:00", "end_time": "2026-01-05T13:00:00", "window": 600}


def test_calendar_with_several_rules_and_a_count() -> None:
    pattern = ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nRRULE:FREQ=WEEKLY;BYDAY=MO;BYHOUR=1;BYMINUTE=0;BYSECOND=0\n"
               "RRULE:FREQ=MONTHLY;BYMONTHDAY=1;BYHOUR=3;BYMINUTE=0;BYSECOND=0;COUNT=2\nEND:VEVENT\nEND:VCALENDAR")
    assert fires({"format": "calendar", "pattern": pattern, "start_time": "2026-01-01T00:00:00"}, count=6) == [
        "2026-01-01 03:00:00", "2026-01-05 01:00:00", "2026-01-12 01:00:00", "2026-01-19 01:00:00",
        "2026-01-26 01:00:00", "2026-02-01 03:00:00"]


@pytest.mark.parametrize(("properties", "field", "words"), [
    ({"pattern": "61 * * * *"}, "pattern", "not a cron expression"),
    ({"pattern": ""}, "pattern", "required"),
    ({"pattern": "*/10 * * * *"}, "pattern", "below the minimum interval of 3600"),
    ({"format": "calendar", "pattern": "BEGIN:VEVENT\nRRULE:FREQ=MINUTELY;INTERVAL=30\nEND:VEVENT"},
     "pattern", "below the minimum interval"),
    ({"format": "calendar", "pattern": "RRULE:FREQ=DAILY"}, "pattern", "VEVENT"),
    ({"format": "calendar", "pattern": "BEGIN:VEVENT\nSUMMARY:x\nEND:VEVENT"}, "pattern", "RRULE"),
    ({"format": "calendar", "pattern": "BEGIN:VEVENT\nRRULE:FREQ=SOMETIMES\nEND:VEVENT"}, "pattern", "RRULE"),
    ({"format": "calendar", "pattern": "BEGIN:VEVENT\nRRULE:FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30\nEND:VEVENT"},
     "pattern", "no day ever matches"),  # at once, not after dateutil searched to the year 9999
    ({"format": "ical", "pattern": "x"}, "format", "crontab, calendar"),
    ({"pattern": "0 * * * *", "window": 30}, "window", "out of range"),
    ({"pattern": "0 * * * *", "window": 9000}, "window", "out of range"),
    ({"pattern": "0 */2 * * *", "window": 7200}, "window", "shorter than the 7200 seconds"),
    ({"pattern": "0 * * * *", "window": "soon"}, "window", "number of seconds"),
    ({"pattern": "0 * * * *", "window": True}, "window", "number of seconds"),
    ({"pattern": "0 * * * *", "start_time": "yesterday"}, "start_time", "not a time"),
    ({"pattern": "0 * * * *", "start_time": 5}, "start_time", "time string"),
    ({"pattern": "0 * * * *", "start_time": "2026-02-01", "end_time": "2026-01-01"}, "end_time",
     "must be after start_time"),
    ({"pattern": "0 0 1 1 *", "start_time": "2026-02-01", "end_time": "2026-03-01"}, "pattern", "never fires"),
])
def test_errors_name_the_field(properties: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(exceptions.InvalidInput) as info:
        parse_properties(properties, LIMITS, NOW)
    assert f"trigger_info.properties.{field}:" in info.value.message
    assert words in info.value.message
