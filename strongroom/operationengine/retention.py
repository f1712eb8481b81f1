"""Retention: which checkpoints of a plan a ``retention_protect`` operation deletes.

Pure functions over the checkpoint catalogue, so that property tests can throw random histories at them.

The policy (all optional, from ``operation_definition``):

- *limits* (Karbor's): ``max_backups`` (keep at most the N newest) and ``retention_duration`` (keep only
  checkpoints created within the last N days).  A checkpoint is *within the limits* when it satisfies every
  limit given.
- *keeps* (grandfather-father-son, as restic and borg count them): ``keep_last`` N newest;
  ``keep_hourly``/``keep_daily``/``keep_weekly``/``keep_monthly``/``keep_yearly`` N: for each of the N
  most recent hours (days, ISO weeks, months, years, in UTC) that have a checkpoint, the newest one of it.

A checkpoint is kept when it is within the limits (when limits are given), or a keep rule keeps it.
Whatever the policy, these are never deleted (the safety rules):

1. anything not ``available`` (``protecting``, ``copying``, ``deleting``, ``error``...): retention only
   removes finished, good checkpoints;
2. the newest ``available`` checkpoint (so failing backups never let retention empty a plan);
3. a checkpoint that another existing checkpoint depends on (:func:`dependencies_of`).

A checkpoint the policy would delete but whose immutable-retention lock (``extra_info.locked_until``,
``doc/immutability.md``) is still running is *due*: it is not deleted (no delete is even tried, so a run
reports no error for it), and the first run after its lock date deletes it.

Order is by ``created_at`` (ties broken by id), never by the order the catalogue listed them in.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from strongroom import exceptions
from strongroom.objects import locks
from strongroom.objects.records import CheckpointRecord

#: ``extra_info`` key of a checkpoint naming the checkpoints it needs (a list of ids), for a plugin whose
#: checkpoints depend on others.  The volume plugin's incrementals do not: each manifest lists every slot
#: (``doc/data-path.md``, "Incremental forever"), so retention may delete any of them.  Nothing writes it yet.
DEPENDS_ON_KEY = "depends_on"

LIMIT_KEYS = ("max_backups", "retention_duration")
KEEP_KEYS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
POLICY_KEYS = LIMIT_KEYS + KEEP_KEYS


def _bucket(period: str) -> Callable[[_dt.datetime], tuple[int, ...]]:
    def key(t: _dt.datetime) -> tuple[int, ...]:
        t = t.astimezone(_dt.UTC)
        if period == "hourly":
            return (t.year, t.month, t.day, t.hour)
        if period == "daily":
            return (t.year, t.month, t.day)
        if period == "weekly":
            iso = t.isocalendar()
            return (iso.year, iso.week)
        if period == "monthly":
            return (t.year, t.month)
        return (t.year,)

    return key


@dataclasses.dataclass(frozen=True)
class Policy:
    max_backups: int | None = None
    retention_duration: int | None = None  # days
    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None

    @property
    def has_limits(self) -> bool:
        return any(getattr(self, k) is not None for k in LIMIT_KEYS)

    @property
    def has_keeps(self) -> bool:
        return any(getattr(self, k) is not None for k in KEEP_KEYS)

    @property
    def empty(self) -> bool:
        return not (self.has_limits or self.has_keeps)

    @classmethod
    def from_definition(cls, definition: Mapping[str, Any], field: str = "operation_definition") -> Policy:
        """Read the policy from an operation definition; InvalidInput names the field.

        Karbor treated ``max_backups``/``retention_duration`` of ``-1`` or ``0`` as "no limit" and accepted
        numeric strings; so do we.
        """
        values: dict[str, int | None] = {}
        for key in POLICY_KEYS:
            raw = definition.get(key)
            if raw is None or raw == "":
                continue
            if isinstance(raw, bool):
                raise exceptions.InvalidInput(reason=f"{field}.{key}: must be an integer, got {raw!r}")
            try:
                value = int(raw)
            except (TypeError, ValueError):
                raise exceptions.InvalidInput(reason=f"{field}.{key}: must be an integer, got {raw!r}") from None
            if isinstance(raw, float) and raw != value:
                raise exceptions.InvalidInput(reason=f"{field}.{key}: must be an integer, got {raw!r}")
            if key in LIMIT_KEYS and value <= 0:
                if value == -1 or value == 0:
                    continue  # Karbor's "no limit"
                raise exceptions.InvalidInput(reason=f"{field}.{key}: must be positive (or -1: no limit)")
            if key in KEEP_KEYS and value < 1:
                raise exceptions.InvalidInput(reason=f"{field}.{key}: must be at least 1")
            values[key] = value
        return cls(**values)

    def to_dict(self) -> dict[str, int]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass
class Decision:
    """Ids to delete, oldest first, and why each other checkpoint stays."""

    delete: list[str]
    keep: dict[str, list[str]]  # checkpoint id -> reasons
    #: Due for deletion but locked: checkpoint id -> the lock date (ISO 8601) a later run deletes it after.
    due: dict[str, str] = dataclasses.field(default_factory=dict)


def dependencies_of(checkpoint: CheckpointRecord) -> set[str]:
    """The checkpoints ``checkpoint`` needs to stay restorable (``extra_info["depends_on"]``)."""
    raw = (checkpoint.extra_info or {}).get(DEPENDS_ON_KEY) or []
    if isinstance(raw, str):
        return {raw}
    return {str(x) for x in raw} if isinstance(raw, Iterable) else set()


def _newest_first(checkpoints: Iterable[CheckpointRecord]) -> list[CheckpointRecord]:
    def key(cp: CheckpointRecord) -> tuple[_dt.datetime, str]:
        if cp.created_at is None:
            raise ValueError(f"checkpoint {cp.id} has no created_at")
        return (cp.created_at.astimezone(_dt.UTC), cp.id)

    return sorted(checkpoints, key=key, reverse=True)


def rule_keeps(policy: Policy, available: Sequence[CheckpointRecord], now: _dt.datetime) -> dict[str, set[str]]:
    """For each rule of ``policy``: the ids it keeps among ``available`` (any order)."""
    ordered = _newest_first(available)
    out: dict[str, set[str]] = {}
    limits: list[set[str]] = []
    if policy.max_backups is not None:
        limits.append({cp.id for cp in ordered[:policy.max_backups]})
    if policy.retention_duration is not None:
        horizon = now - _dt.timedelta(days=policy.retention_duration)
        limits.append({cp.id for cp in ordered if cp.created_at is not None and cp.created_at >= horizon})
    if limits:
        out["within_limits"] = set.intersection(*limits)
    if policy.keep_last is not None:
        out["keep_last"] = {cp.id for cp in ordered[:policy.keep_last]}
    for period in ("hourly", "daily", "weekly", "monthly", "yearly"):
        count = getattr(policy, f"keep_{period}")
        if count is None:
            continue
        bucket = _bucket(period)
        kept: dict[tuple[int, ...], str] = {}
        for cp in ordered:  # newest first: the first seen in a bucket is its newest
            assert cp.created_at is not None
            b = bucket(cp.created_at)
            if b not in kept:
                if len(kept) >= count:
                    break
                kept[b] = cp.id
        out[f"keep_{period}"] = set(kept.values())
    return out


def decide(policy: Policy, checkpoints: Iterable[CheckpointRecord], now: _dt.datetime,
           depends: Callable[[CheckpointRecord], set[str]] = dependencies_of) -> Decision:
    """Which of a plan's ``checkpoints`` (every status, any order) to delete under ``policy``."""
    every = list(checkpoints)
    available = [cp for cp in every if cp.status == "available"]
    ordered = _newest_first(available)
    keep: dict[str, list[str]] = {}

    def mark(cp_id: str, reason: str) -> None:
        keep.setdefault(cp_id, []).append(reason)

    if policy.empty:
        for cp in ordered:
            mark(cp.id, "no retention rule")
        return Decision(delete=[], keep=keep)
    for rule, ids in rule_keeps(policy, ordered, now).items():
        for cp_id in ids:
            mark(cp_id, rule)
    if ordered:
        mark(ordered[0].id, "newest available")
    # Every checkpoint that still exists, even one deleted in this pass, protects what it depends on: a
    # base goes in a later run, once its dependants are gone, so a restore never finds a missing base.
    for cp in every:
        if cp.status == "deleted":
            continue
        for dep in depends(cp):
            mark(dep, f"needed by {cp.id}")
    delete: list[str] = []
    due: dict[str, str] = {}
    for cp in reversed(ordered):
        if cp.id in keep:
            continue
        until = locks.locked_until(cp.extra_info)
        if until is not None and until > now:
            due[cp.id] = until.isoformat()
        else:
            delete.append(cp.id)
    return Decision(delete=delete, keep=keep, due=due)
