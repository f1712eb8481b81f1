"""Time triggers: when a trigger fires, and whether its properties make sense.

A time trigger's ``properties`` are ``{format, pattern, start_time, end_time, window}``:

- ``format: "crontab"`` — ``pattern`` is a cron expression (5 fields, or 6 with seconds last), read by
  croniter; ``format: "calendar"`` — ``pattern`` is an RFC 5545 ``VEVENT`` holding one or more ``RRULE``
  lines, read by icalendar and expanded by ``dateutil.rrule`` from ``start_time``.
- Every time is UTC.  ``start_time`` defaults to now (whole seconds); ``end_time`` is optional.
- ``window``: seconds after a fire time during which a run may still start (default
  ``[operationengine] default_window``); it must lie in ``[min_window, max_window]`` and be shorter than the
  gap between two fires, so that at most one fire of an operation is ever startable.
- Two fires are never closer than ``[operationengine] min_interval`` seconds.

:func:`parse_properties` validates and normalizes; its errors name the field
(``trigger_info.properties.window: ...``).  :func:`schedule_for` gives the :class:`Schedule`.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as _dt
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

from strongroom import exceptions

FORMATS = ("crontab", "calendar")
FIELD = "trigger_info.properties"
#: How many fires are examined to find the smallest gap between two of them.
GAP_SAMPLE = 200


@dataclasses.dataclass(frozen=True)
class Limits:
    """The operator's bounds on triggers (``[operationengine]`` options)."""

    min_interval: int = 3600
    min_window: int = 60
    max_window: int = 3600
    default_window: int = 900

    @classmethod
    def from_conf(cls, conf: Any) -> Limits:
        group = conf.operationengine
        return cls(min_interval=int(group.min_interval), min_window=int(group.min_window),
                   max_window=int(group.max_window), default_window=int(group.default_window))


@dataclasses.dataclass(frozen=True)
class TimeSpec:
    """Normalized properties of a time trigger."""

    format: str
    pattern: str
    start_time: _dt.datetime
    end_time: _dt.datetime | None
    window: int

    def to_properties(self) -> dict[str, Any]:
        return {"format": self.format, "pattern": self.pattern, "start_time": render_time(self.start_time),
                "end_time": render_time(self.end_time) if self.end_time else None, "window": self.window}

    @classmethod
    def from_properties(cls, props: Mapping[str, Any]) -> TimeSpec:
        """Rebuild from stored (already validated) properties."""
        start = parse_time(props["start_time"], "start_time")
        end = parse_time(props["end_time"], "end_time") if props.get("end_time") else None
        return cls(format=str(props["format"]), pattern=str(props["pattern"]), start_time=start, end_time=end,
                   window=int(props["window"]))


def render_time(value: _dt.datetime) -> str:
    """Karbor's rendering: naive UTC ISO-8601, ``2015-12-17T08:30:00``."""
    return value.astimezone(_dt.UTC).replace(tzinfo=None).isoformat()


def parse_time(value: Any, name: str) -> _dt.datetime:
    """``2015-12-17T08:30:00``, ``2015-12-17 08:30:00`` or with an offset; naive means UTC."""
    if isinstance(value, _dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise exceptions.InvalidInput(
                reason=f"{FIELD}.{name}: {value!r} is not a time such as 2026-01-31T08:30:00") from None
    else:
        raise exceptions.InvalidInput(reason=f"{FIELD}.{name}: must be a time string, got {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.UTC)
    return parsed.astimezone(_dt.UTC)


class Schedule(abc.ABC):
    """The fire times of one trigger: ``start_time <= t <= end_time``, in increasing order."""

    def __init__(self, start: _dt.datetime, end: _dt.datetime | None) -> None:
        self.start = start
        self.end = end

    @abc.abstractmethod
    def _times(self, after: _dt.datetime) -> Iterator[_dt.datetime]:
        """The pattern's times strictly after ``after``, increasing, ignoring start and end."""

    def iter_after(self, after: _dt.datetime) -> Iterator[_dt.datetime]:
        """Fire times strictly after ``after``, increasing, until the trigger ends."""
        base = max(after, self.start - _dt.timedelta(microseconds=1))
        for t in self._times(base):
            if t <= after or t < self.start:
                continue
            if self.end is not None and t > self.end:
                return
            yield t

    def next_after(self, after: _dt.datetime) -> _dt.datetime | None:
        """The first fire time strictly after ``after``, or None when the trigger has ended."""
        return next(self.iter_after(after), None)

    def fires(self, after: _dt.datetime, until: _dt.datetime, limit: int | None = None) -> list[_dt.datetime]:
        """Fire times in ``(after, until]``, at most ``limit`` of them."""
        out: list[_dt.datetime] = []
        for t in self.iter_after(after):
            if t > until or (limit is not None and len(out) >= limit):
                break
            out.append(t)
        return out

    def min_gap(self) -> float | None:
        """Smallest gap in seconds between two consecutive fires among the first :data:`GAP_SAMPLE`."""
        times = list(itertools.islice(self.iter_after(self.start - _dt.timedelta(microseconds=1)), GAP_SAMPLE))
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        return min(gaps) if gaps else None


class CronSchedule(Schedule):
    def __init__(self, pattern: str, start: _dt.datetime, end: _dt.datetime | None) -> None:
        super().__init__(start, end)
        from croniter import croniter

        self.pattern = pattern
        self._croniter = croniter
        croniter(pattern, start)  # raises on a bad expression

    def _times(self, after: _dt.datetime) -> Iterator[_dt.datetime]:
        it = self._croniter(self.pattern, after)
        while True:
            try:
                nxt = it.get_next(_dt.datetime)
            except Exception:  # noqa: BLE001 - croniter gives up on expressions that never match again
                return
            yield nxt.astimezone(_dt.UTC)


class CalendarSchedule(Schedule):
    def __init__(self, pattern: str, start: _dt.datetime, end: _dt.datetime | None) -> None:
        super().__init__(start, end)
        from dateutil import rrule

        self.pattern = pattern
        lines = rrule_lines(pattern)
        dtstart = start.replace(microsecond=0)
        if not _some_day_matches(lines, dtstart):
            # dateutil would search second by second up to the year 9999 (seconds of CPU) to find nothing.
            raise exceptions.InvalidInput(reason=f"{FIELD}.pattern: no day ever matches the RRULE")
        self._rules = rrule.rrulestr("\n".join(lines), dtstart=dtstart, forceset=True, cache=False)

    def _times(self, after: _dt.datetime) -> Iterator[_dt.datetime]:
        for t in self._rules.xafter(after, inc=False):
            yield t.astimezone(_dt.UTC)


_DAY_PARTS = ("BYMONTH", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYDAY")


def _some_day_matches(lines: list[str], dtstart: _dt.datetime) -> bool:
    """Whether the day-level parts of some rule can match: the same parts on a YEARLY rule, which dateutil
    checks year by year (cheap) where a SECONDLY rule would be checked second by second."""
    from dateutil import rrule

    for line in lines:
        parts = dict(p.split("=", 1) for p in line.split(":", 1)[1].split(";") if "=" in p)
        days = [f"{k}={v}" for k, v in parts.items() if k.upper() in _DAY_PARTS]
        if not days:
            return True
        try:
            yearly = rrule.rrulestr("RRULE:FREQ=YEARLY;" + ";".join(days), dtstart=dtstart, cache=False)
        except (ValueError, TypeError):
            return True  # let the real rule report what is wrong with it
        if yearly.after(dtstart, inc=True) is not None:
            return True
    return False


def normalize_calendar_pattern(pattern: str) -> str:
    """Karbor's samples carry the two characters ``\\n`` for line breaks: accept them as line breaks."""
    return pattern.replace("\\r\\n", "\n").replace("\\n", "\n").strip()


def rrule_lines(pattern: str) -> list[str]:
    """The ``RRULE:...`` lines of the first VEVENT of ``pattern``; InvalidInput naming the field."""
    from icalendar import Calendar

    where = f"{FIELD}.pattern"
    try:
        component = Calendar.from_ical(normalize_calendar_pattern(pattern))
    except (ValueError, IndexError, KeyError) as err:
        raise exceptions.InvalidInput(reason=f"{where}: not an iCalendar VEVENT ({err})") from None
    events = component.walk("VEVENT")
    if not events:
        raise exceptions.InvalidInput(reason=f"{where}: must contain a VEVENT component")
    rules = events[0].get("RRULE")
    if rules is None:
        raise exceptions.InvalidInput(reason=f"{where}: the VEVENT must contain an RRULE")
    return ["RRULE:" + r.to_ical().decode("utf-8") for r in (rules if isinstance(rules, list) else [rules])]


def schedule_for(spec: TimeSpec) -> Schedule:
    """The schedule of validated properties."""
    if spec.format == "crontab":
        return CronSchedule(spec.pattern, spec.start_time, spec.end_time)
    return CalendarSchedule(spec.pattern, spec.start_time, spec.end_time)


def _schedule(fmt: str, pattern: str, start: _dt.datetime, end: _dt.datetime | None) -> Schedule:
    where = f"{FIELD}.pattern"
    if fmt == "crontab":
        try:
            return CronSchedule(pattern, start, end)
        except (ValueError, KeyError, TypeError) as err:
            raise exceptions.InvalidInput(reason=f"{where}: {pattern!r} is not a cron expression ({err})") \
                from None
    try:
        return CalendarSchedule(pattern, start, end)
    except exceptions.InvalidInput:
        raise
    except (ValueError, TypeError) as err:
        raise exceptions.InvalidInput(reason=f"{where}: the RRULE is not valid ({err})") from None


def _window(value: Any, limits: Limits) -> int:
    where = f"{FIELD}.window"
    if value is None or value == "":
        return max(limits.min_window, min(limits.default_window, limits.max_window))
    if isinstance(value, bool):
        raise exceptions.InvalidInput(reason=f"{where}: must be a number of seconds, got {value!r}")
    try:
        window = int(str(value).strip()) if isinstance(value, str) else int(value)
    except ValueError:
        raise exceptions.InvalidInput(reason=f"{where}: must be a number of seconds, got {value!r}") from None
    if isinstance(value, float) and value != window:
        raise exceptions.InvalidInput(reason=f"{where}: must be a whole number of seconds, got {value!r}")
    if not limits.min_window <= window <= limits.max_window:
        raise exceptions.InvalidInput(
            reason=f"{where}: {window} is out of range: must be between {limits.min_window} and "
                   f"{limits.max_window} seconds")
    return window


def parse_properties(props: Mapping[str, Any], limits: Limits, now: _dt.datetime) -> TimeSpec:
    """Validate and normalize a time trigger's properties; InvalidInput names the offending field."""
    fmt = props.get("format") or "crontab"
    if fmt not in FORMATS:
        raise exceptions.InvalidInput(reason=f"{FIELD}.format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    pattern = props.get("pattern")
    if not isinstance(pattern, str) or not pattern.strip():
        raise exceptions.InvalidInput(reason=f"{FIELD}.pattern: a non-empty pattern is required")
    pattern = pattern.strip() if fmt == "crontab" else normalize_calendar_pattern(pattern)
    raw_start = props.get("start_time")
    start = parse_time(raw_start, "start_time") if raw_start else now.astimezone(_dt.UTC)
    start = start.replace(microsecond=0)
    end = parse_time(props["end_time"], "end_time") if props.get("end_time") else None
    if end is not None and end <= start:
        raise exceptions.InvalidInput(
            reason=f"{FIELD}.end_time: {render_time(end)} must be after start_time {render_time(start)}")
    window = _window(props.get("window"), limits)
    schedule = _schedule(fmt, pattern, start, end)
    first = schedule.next_after(start - _dt.timedelta(microseconds=1))
    if first is None:
        raise exceptions.InvalidInput(
            reason=f"{FIELD}.pattern: never fires between start_time and end_time")
    gap = schedule.min_gap()
    if gap is not None:
        if gap < limits.min_interval:
            raise exceptions.InvalidInput(
                reason=f"{FIELD}.pattern: fires {gap:g} seconds apart, below the minimum interval of "
                       f"{limits.min_interval} seconds")
        if window >= gap:
            raise exceptions.InvalidInput(
                reason=f"{FIELD}.window: {window} must be shorter than the {gap:g} seconds between two fires")
    return TimeSpec(format=fmt, pattern=pattern, start_time=start, end_time=end, window=window)
