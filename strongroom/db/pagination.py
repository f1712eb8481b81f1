"""Sorting, filtering and keyset (marker) pagination of list queries.

A page after ``marker`` holds the rows that sort strictly after the marker row
on ``(sort keys..., id)``; ``id`` is always the final tie-breaker, so pages are
stable even when many rows share a ``created_at``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from strongroom import exceptions

SortSpec = Sequence[tuple[str, str]]
DIRECTIONS = ("asc", "desc")


def normalize_sort(sort: SortSpec, allowed: Mapping[str, ColumnElement[Any]]) -> list[tuple[str, str]]:
    """Validate ``sort`` and append the ``id`` tie-breaker (in the last key's direction)."""
    keys: list[tuple[str, str]] = []
    for item in sort:
        try:
            key, direction = item
        except (TypeError, ValueError):
            raise exceptions.InvalidInput(
                reason=f"sort item {item!r} must be a (key, direction) pair") from None
        if key not in allowed:
            raise exceptions.InvalidInput(
                reason=f"unknown sort key '{key}' (allowed: {', '.join(sorted(allowed))})")
        direction = str(direction).lower()
        if direction not in DIRECTIONS:
            raise exceptions.InvalidInput(
                reason=f"sort direction '{item[1]}' of key '{key}' must be 'asc' or 'desc'")
        if key in (k for k, _ in keys):
            raise exceptions.InvalidInput(reason=f"sort key '{key}' is given twice")
        keys.append((key, direction))
    if "id" not in (k for k, _ in keys):
        keys.append(("id", keys[-1][1] if keys else "asc"))
    return keys


def check_limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise exceptions.InvalidInput(reason=f"limit must be a non-negative integer, got {limit!r}")
    return limit


def check_filters(filters: Mapping[str, Any] | None, allowed: Iterable[str]) -> dict[str, Any]:
    allowed_set = set(allowed)
    out = dict(filters or {})
    for key in out:
        if key not in allowed_set:
            raise exceptions.InvalidInput(
                reason=f"unknown filter '{key}' (allowed: {', '.join(sorted(allowed_set))})")
    return out


def eq_filter(column: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
    """``column = value``; ``None`` means IS NULL; a list/tuple/set means IN."""
    if value is None:
        return column.is_(None)
    if isinstance(value, list | tuple | set | frozenset):
        return column.in_(list(value))
    return column == value


def day_start(value: Any, key: str) -> _dt.datetime:
    """The first instant (UTC) of the day ``value`` names: a date, or an ISO ``YYYY-MM-DD`` string."""
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
    if isinstance(value, _dt.date):
        day = value
    elif isinstance(value, str):
        try:
            day = _dt.date.fromisoformat(value.strip())
        except ValueError:
            raise exceptions.InvalidInput(
                reason=f"filter '{key}' must be a date (YYYY-MM-DD), got {value!r}") from None
    else:
        raise exceptions.InvalidInput(reason=f"filter '{key}' must be a date, got {value!r}")
    return _dt.datetime.combine(day, _dt.time(), tzinfo=_dt.UTC)


def date_range(column: ColumnElement[Any], start: Any, end: Any) -> list[ColumnElement[bool]]:
    """Conditions for ``start_date <= column`` and ``column <= end_date`` (whole UTC days, inclusive).

    A ``datetime`` (rather than a date) bound is used as an exact instant.
    """
    conds: list[ColumnElement[bool]] = []
    if start is not None:
        conds.append(column >= day_start(start, "start_date"))
    if end is not None:
        if isinstance(end, _dt.datetime):
            conds.append(column <= day_start(end, "end_date"))
        else:
            conds.append(column < day_start(end, "end_date") + _dt.timedelta(days=1))
    return conds


def paginate(
    session: Session,
    stmt: sa.Select[Any],
    *,
    id_column: ColumnElement[Any],
    scope: Sequence[ColumnElement[bool]],
    sort: SortSpec,
    allowed_sort: Mapping[str, ColumnElement[Any]],
    marker: Any | None,
    limit: int | None,
) -> sa.Select[Any]:
    """Add ORDER BY, the keyset condition for ``marker`` and LIMIT to ``stmt``.

    ``scope`` (project, kind, not deleted) decides which rows a marker may name:
    a marker outside it is as unknown as one that does not exist.
    """
    keys = normalize_sort(sort, allowed_sort)
    limit = check_limit(limit)
    columns = [allowed_sort[k] if k != "id" else id_column for k, _ in keys]

    if marker is not None:
        marker_stmt = sa.select(*columns).where(id_column == marker, *scope)
        row = session.execute(marker_stmt).first()
        if row is None:
            raise exceptions.InvalidInput(reason=f"marker {marker} could not be found")
        stmt = stmt.where(_after(list(zip(columns, (d for _, d in keys), row, strict=True))))

    stmt = stmt.order_by(*(col.asc() if d == "asc" else col.desc() for col, (_, d) in zip(columns, keys,
                                                                                          strict=True)))
    if limit is not None:
        stmt = stmt.limit(limit)
    return stmt


def _after(parts: list[tuple[ColumnElement[Any], str, Any]]) -> ColumnElement[bool]:
    """Rows strictly after the marker: ``k1 > m1 OR (k1 = m1 AND (k2 > m2 OR ...))``."""
    column, direction, value = parts[0]
    beyond = column > value if direction == "asc" else column < value
    if len(parts) == 1:
        return beyond
    return sa.or_(beyond, sa.and_(column == value, _after(parts[1:])))
