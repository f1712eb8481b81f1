"""Records of scheduling: triggers, scheduled operations and their fires (which double as their logs).

A *fire* is one planned run of one scheduled operation at one time.  Its row is
planned ahead in the metadata store, claimed by exactly one operation engine,
and, once claimed, is the run's log: the states below are what
``GET /scheduled_operations/{id}/logs`` shows (``planned`` rows are not shown).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
from typing import Any

from strongroom.objects.records import Record


class FireState(enum.StrEnum):
    PLANNED = "planned"  # not yet due, or due and not yet claimed
    IN_PROGRESS = "in_progress"  # claimed by an engine (owner, claim_expires_at)
    SUCCESS = "success"
    FAILED = "failed"
    DROPPED_OUT_OF_WINDOW = "dropped_out_of_window"  # nobody could start it before its window closed


#: States a fire never leaves.
FINAL_FIRE_STATES = frozenset({FireState.SUCCESS, FireState.FAILED, FireState.DROPPED_OUT_OF_WINDOW})
#: The states a scheduled-operation log shows.
LOG_STATES = frozenset(FireState) - {FireState.PLANNED}


class OperationType(enum.StrEnum):
    PROTECT = "protect"
    RETENTION_PROTECT = "retention_protect"
    #: Copy the plan's newest available checkpoint to ``target_provider_id``'s bank, then apply the
    #: definition's retention options (if any) to the plan's copies there.
    COPY = "copy"


@dataclasses.dataclass
class Trigger(Record):
    """A time trigger; ``properties`` are normalized (see :mod:`strongroom.operationengine.schedule`)."""

    id: str
    project_id: str
    name: str
    type: str = "time"
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)
    created_at: _dt.datetime | None = None
    updated_at: _dt.datetime | None = None


@dataclasses.dataclass
class ScheduledOperation(Record):
    id: str
    project_id: str
    name: str
    operation_type: str
    trigger_id: str
    plan_id: str
    provider_id: str
    operation_definition: dict[str, Any] = dataclasses.field(default_factory=dict)
    description: str = ""
    user_id: str | None = None
    enabled: bool = True
    trust_id: str | None = None  # Keystone trust that lets the engine act as user_id
    planned_until: _dt.datetime | None = None  # fires are planned up to (and including) this time
    plan_version: int = 0  # bumped by every change of planned_until: compare-and-set guard
    created_at: _dt.datetime | None = None
    updated_at: _dt.datetime | None = None


@dataclasses.dataclass
class ScheduledFire(Record):
    """One run of one scheduled operation, planned for ``fire_time``; may start until ``window_end``."""

    id: str
    operation_id: str
    project_id: str
    fire_time: _dt.datetime
    window_end: _dt.datetime
    state: str = FireState.PLANNED
    owner: str | None = None  # the engine that holds the claim
    claim_token: str | None = None  # fresh for every claim: every write of the run is guarded by it
    claim_expires_at: _dt.datetime | None = None
    attempts: int = 0  # claims so far (more than one: another engine took it over)
    version: int = 0  # bumped by every change: compare-and-set guard of claims
    triggered_at: _dt.datetime | None = None  # first claim
    started_at: _dt.datetime | None = None  # protection accepted the run
    ended_at: _dt.datetime | None = None
    checkpoint_id: str | None = None
    error_info: str | None = None
    extra_info: dict[str, Any] = dataclasses.field(default_factory=dict)
    created_at: _dt.datetime | None = None
    updated_at: _dt.datetime | None = None
