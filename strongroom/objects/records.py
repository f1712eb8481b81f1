"""Typed records exchanged between the metadata store, protection and the API.

The DB layer returns these; the API renders them with ``to_dict()``; RPC sends
``to_dict()`` and rebuilds with ``from_dict()``.  Timestamps are timezone-aware
UTC datetimes in memory and ISO-8601 strings in dicts.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Any, Self


def iso_time(value: _dt.datetime | None) -> str | None:
    """``value`` as ISO-8601 text in UTC (naive means UTC), as :meth:`Record.to_dict` writes times."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.UTC)
    return value.astimezone(_dt.UTC).isoformat()


_iso = iso_time


def parse_time(value: str | _dt.datetime | None) -> _dt.datetime | None:
    if value is None or isinstance(value, _dt.datetime):
        if isinstance(value, _dt.datetime) and value.tzinfo is None:
            return value.replace(tzinfo=_dt.UTC)
        return value
    parsed = _dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.UTC)


@dataclasses.dataclass
class Record:
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, _dt.datetime):
                value = _iso(value)
            elif isinstance(value, list) and value and isinstance(value[0], Record):
                value = [v.to_dict() for v in value]
            out[field.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        kwargs: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name not in data:
                continue
            value = data[field.name]
            if field.name.endswith("_at") or field.name in ("last_heartbeat",):
                value = parse_time(value)
            kwargs[field.name] = value
        obj = cls(**kwargs)
        obj._post_from_dict()
        return obj

    def _post_from_dict(self) -> None:
        """Hook for nested records."""


@dataclasses.dataclass
class Resource(Record):
    """A resource as a plan names it: ``type#id`` is its identity."""

    id: str
    type: str
    name: str = ""
    extra_info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.type}#{self.id}"


@dataclasses.dataclass
class Plan(Record):
    id: str
    name: str
    provider_id: str
    project_id: str
    status: str = "suspended"
    description: str = ""
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    resources: list[Resource] = dataclasses.field(default_factory=list)
    created_at: _dt.datetime | None = None
    updated_at: _dt.datetime | None = None

    def _post_from_dict(self) -> None:
        self.resources = [r if isinstance(r, Resource) else Resource.from_dict(r) for r in self.resources]


@dataclasses.dataclass
class CheckpointRecord(Record):
    """The catalogue's copy of a checkpoint's index (the bank is the source of truth)."""

    id: str
    provider_id: str
    project_id: str
    status: str
    plan_id: str | None = None
    owner_id: str | None = None
    protection_plan: dict[str, Any] = dataclasses.field(default_factory=dict)
    resource_graph: str = "[]"  # JSON text (Karbor's contract), parsed by json.loads
    extra_info: dict[str, Any] = dataclasses.field(default_factory=dict)
    status_reason: str | None = None
    bytes_total: int = 0  # bytes to read for this checkpoint (progress)
    bytes_done: int = 0
    created_at: _dt.datetime | None = None
    updated_at: _dt.datetime | None = None
    #: How the checkpoint's objects are sealed in the bank (``{"algorithm", "key_id"}``), None if clear.
    #: Kept in the bank's index only; the catalogue has no column for it.
    encryption: dict[str, Any] | None = None


@dataclasses.dataclass
class Restore(Record):
    """A restore or a verification run (``kind`` says which)."""

    id: str
    project_id: str
    provider_id: str
    checkpoint_id: str
    kind: str = "restore"  # "restore" | "verification"
    restore_target: str | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    status: str = "in_progress"
    resources_status: dict[str, str] = dataclasses.field(default_factory=dict)
    resources_reason: dict[str, str] = dataclasses.field(default_factory=dict)
    extra_info: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: ``{"bytes_total": int, "bytes_done": int}`` of the data read so far (empty until the run starts).
    progress: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Internal: what each resource's hook saved to resume an interrupted run, by resource key.
    resume_state: dict[str, Any] = dataclasses.field(default_factory=dict)
    created_at: _dt.datetime | None = None
    updated_at: _dt.datetime | None = None


@dataclasses.dataclass
class OperationLog(Record):
    """One row per protect/restore/verify/delete/copy run."""

    id: str
    project_id: str
    operation_type: str  # protect | restore | verify | delete | copy
    status: str
    provider_id: str | None = None
    checkpoint_id: str | None = None
    plan_id: str | None = None
    restore_id: str | None = None
    scheduled_operation_id: str | None = None
    host: str | None = None
    error_info: str | None = None
    extra_info: dict[str, Any] = dataclasses.field(default_factory=dict)
    started_at: _dt.datetime | None = None
    ended_at: _dt.datetime | None = None
    created_at: _dt.datetime | None = None
    updated_at: _dt.datetime | None = None


@dataclasses.dataclass
class Service(Record):
    id: int
    host: str
    binary: str
    topic: str = ""
    disabled: bool = False
    disabled_reason: str | None = None
    last_heartbeat: _dt.datetime | None = None
    created_at: _dt.datetime | None = None
    updated_at: _dt.datetime | None = None
