"""Test doubles of the scheduling tests, named as such, and helpers that create plans, triggers and operations
directly in the metadata store."""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import threading
import uuid
from typing import Any

from strongroom.clock import Clock
from strongroom.context import RequestContext
from strongroom.db.api import Database
from strongroom.db.scheduling import SchedulingStore
from strongroom.objects.records import CheckpointRecord, Plan, Resource
from strongroom.objects.scheduling import ScheduledOperation, Trigger
from strongroom.operationengine.schedule import Limits, parse_properties

PROVIDER_ID = "cf56bd3e-97a7-4078-b6d5-f36246333fd9"
PROJECT = "proj-sched"


class FakeProtectionForSchedulingTests:
    """A FAKE protection service: writes catalogue rows to the real metadata store, as the real one does,
    finishing each checkpoint at once (or leaving it ``protecting`` when ``finish`` is None); records every
    protect by the fire that asked for it, so that tests can count doubles."""

    def __init__(self, db: Database, clock: Clock, finish: str | None = "available") -> None:
        self.db = db
        self.clock = clock
        self.finish = finish
        self.protects: dict[str, list[str]] = collections.defaultdict(list)  # fire id -> checkpoint ids
        self.deletes: list[str] = []
        self.copies: list[tuple[str, str]] = []
        #: ``retention_lock_days`` of each copy asked for, in order (None: not given).
        self.copy_locks: list[int | None] = []
        self.contexts: list[RequestContext] = []
        self.fail_with: Exception | None = None
        self._lock = threading.Lock()

    def protect(self, ctxt: RequestContext, plan: dict[str, Any], provider_id: str,
                extra_info: dict[str, Any] | None = None,
                scheduled_operation_id: str | None = None,
                retention_lock_days: int | None = None) -> dict[str, Any]:
        if self.fail_with is not None:
            raise self.fail_with
        the_plan = Plan.from_dict(plan)
        if retention_lock_days is not None:  # what the real service's publish records (doc/immutability.md)
            until = self.clock.now() + _dt.timedelta(days=retention_lock_days)
            extra_info = {**(extra_info or {}), "retention_lock_days": retention_lock_days,
                          "locked_until": until.isoformat()}
        record = CheckpointRecord(
            id=str(uuid.uuid4()), provider_id=provider_id, project_id=the_plan.project_id,
            status=self.finish or "protecting", plan_id=the_plan.id, owner_id="fake-protection",
            protection_plan={"id": the_plan.id, "name": the_plan.name, "provider_id": provider_id,
                             "resources": [r.to_dict() for r in the_plan.resources]},
            resource_graph="[]", extra_info=dict(extra_info or {}), created_at=self.clock.now())
        self.db.create_checkpoint(record)
        with self._lock:
            self.protects[str((extra_info or {}).get("scheduled_fire_id"))].append(record.id)
            self.contexts.append(ctxt)
        return record.to_dict()

    def delete_checkpoint(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str) -> None:
        self.db.update_checkpoint(checkpoint_id, {"status": "deleting"}, provider_id=provider_id)
        self.db.update_checkpoint(checkpoint_id, {"status": "deleted"}, provider_id=provider_id)
        with self._lock:
            self.deletes.append(checkpoint_id)

    def copy_checkpoint(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str,
                        target_provider_id: str, scheduled_operation_id: str | None = None,
                        retention_lock_days: int | None = None) -> dict[str, Any]:
        """A row of the checkpoint in the target, finished at once (``finish``)."""
        source = self.db.get_checkpoint(checkpoint_id, provider_id=provider_id)
        copied = dataclasses.replace(source, provider_id=target_provider_id, status=self.finish or "copying",
                                     updated_at=None)
        self.db.create_checkpoint(copied)
        with self._lock:
            self.copies.append((checkpoint_id, target_provider_id))
            self.copy_locks.append(retention_lock_days)
        return copied.to_dict()


def add_plan(db: Database, project: str = PROJECT) -> Plan:
    plan = Plan(id=str(uuid.uuid4()), name="nightly", provider_id=PROVIDER_ID, project_id=project,
                resources=[Resource(id="vol-1", type="OS::Cinder::Volume", name="vol-1")])
    return db.create_plan(plan)


def add_trigger(store: SchedulingStore, properties: dict[str, Any], now: _dt.datetime,
                limits: Limits | None = None, project: str = PROJECT) -> Trigger:
    spec = parse_properties(properties, limits or Limits(min_interval=60, min_window=1), now)
    return store.create_trigger(Trigger(id=str(uuid.uuid4()), project_id=project, name="t",
                                        properties=spec.to_properties(), created_at=now))


def add_operation(store: SchedulingStore, trigger: Trigger, plan: Plan, *, kind: str = "protect",
                  definition: dict[str, Any] | None = None) -> ScheduledOperation:
    return store.create_operation(ScheduledOperation(
        id=str(uuid.uuid4()), project_id=plan.project_id, name="op", operation_type=kind,
        trigger_id=trigger.id, plan_id=plan.id, provider_id=plan.provider_id, user_id="owner",
        operation_definition={"plan_id": plan.id, "provider_id": plan.provider_id, **(definition or {})}))
