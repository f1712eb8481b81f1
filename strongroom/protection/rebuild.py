"""Recovery from the bank alone: what ``strongroom-manage catalogue rebuild`` decides and reports.

A bank's indices are the source of truth (``doc/architecture.md``); the metadata database's catalogue is a
copy.  :meth:`strongroom.protection.catalogue.CheckpointCatalogue.rebuild` reads every index of one
provider's bank and adds to the database the checkpoints it lacks, with the plans they were protected
under.  This module holds the parts that write nothing: how each index is judged (:func:`judge`), the
plan row made from a checkpoint's plan snapshot (:func:`recovered_plan`) and the report
(:class:`RebuildReport`).

Per status of an index the database lacks:

* ``available``, ``error``, ``error-deleting``: added as they are (an errored checkpoint can then be
  deleted through the API; an available one listed, verified and restored).
* ``deleted``: a tombstone, skipped (nothing is left to restore).
* ``protecting``, ``deleting``, ``copying``: skipped.  A live writer finishes it and writes its own
  row; a dead writer's checkpoint is garbage collection's to reclaim, after which a rebuild adds it
  as ``error`` (or skips it as ``deleted``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
from collections.abc import Callable
from typing import Any

from strongroom.objects.records import CheckpointRecord, Plan, Resource
from strongroom.objects.status import CheckpointStatus, PlanStatus

#: The start of a recovered plan's description: how an operator tells it from a plan made through the API.
RECOVERED = "Recovered from the bank by strongroom-manage catalogue rebuild"
#: Statuses added to the catalogue as they stand in the index.
SETTLED = frozenset({CheckpointStatus.AVAILABLE, CheckpointStatus.ERROR, CheckpointStatus.ERROR_DELETING})
#: Statuses of a checkpoint some writer is (or was, until it died) working on.
WRITING = frozenset({CheckpointStatus.PROTECTING, CheckpointStatus.DELETING, CheckpointStatus.COPYING})


class Skip(enum.StrEnum):
    """Why an index of the bank was not added to the catalogue."""

    CATALOGUED = "catalogued"
    OTHER_PROVIDER = "other-provider"
    DELETED = "deleted"
    IN_PROGRESS = "in-progress"
    ABANDONED = "abandoned"
    UNREADABLE = "unreadable"


#: What each kind of skip means, as the report prints it.
SKIP_REASONS: dict[Skip, str] = {
    Skip.CATALOGUED: "already in the catalogue",
    Skip.OTHER_PROVIDER: "of another provider (its index, or its catalogue row, names another provider id)",
    Skip.DELETED: "deleted tombstones (nothing is left to restore)",
    Skip.IN_PROGRESS: "being written by a live owner (its writer adds its row; rebuild again once it ends)",
    Skip.ABANDONED: "left unfinished by a dead writer: garbage collection reclaims them "
                    "(`bank gc`; a rebuild after it adds them as error)",
    Skip.UNREADABLE: "unreadable indices",
}


@dataclasses.dataclass(frozen=True)
class Skipped:
    checkpoint_id: str
    kind: Skip
    detail: str = ""


def judge(record: CheckpointRecord, provider_id: str, writer_alive: Callable[[str], bool]) -> Skipped | None:
    """None if the catalogue should take ``record`` (an index the database lacks), else why not."""
    if record.provider_id != provider_id:
        return Skipped(record.id, Skip.OTHER_PROVIDER, f"index names provider {record.provider_id}")
    status = record.status
    if status == CheckpointStatus.DELETED:
        return Skipped(record.id, Skip.DELETED)
    if status in WRITING:
        owner = record.owner_id
        if owner and writer_alive(owner):
            return Skipped(record.id, Skip.IN_PROGRESS, f"{status} by {owner}")
        return Skipped(record.id, Skip.ABANDONED, f"{status}, writer {owner or 'unknown'} gone")
    if status not in SETTLED:
        return Skipped(record.id, Skip.UNREADABLE, f"unknown status {status!r}")
    return None


def recovered_plan(record: CheckpointRecord, at: _dt.datetime) -> Plan | None:
    """The plan row a checkpoint's plan snapshot gives (None if it names no plan), suspended and marked
    recovered in its description.  ``ValueError`` if the snapshot is malformed."""
    snapshot: dict[str, Any] = dict(record.protection_plan or {})
    plan_id = snapshot.get("id") or record.plan_id
    if not plan_id:
        return None
    resources = snapshot.get("resources") or []
    if not isinstance(resources, list) or not all(isinstance(r, dict) and r.get("id") and r.get("type")
                                                  for r in resources):
        raise ValueError(f"the plan snapshot of checkpoint {record.id} has malformed resources")
    parameters = snapshot.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ValueError(f"the plan snapshot of checkpoint {record.id} has malformed parameters")
    return Plan(id=str(plan_id), name=str(snapshot.get("name") or plan_id), provider_id=record.provider_id,
                project_id=record.project_id, status=PlanStatus.SUSPENDED,
                description=f"{RECOVERED} on {at:%Y-%m-%d %H:%M:%S}Z, from the snapshot in checkpoint "
                            f"{record.id} (created {record.to_dict()['created_at']})",
                parameters=dict(parameters), resources=[Resource.from_dict(r) for r in resources])


def newest_first(records: list[CheckpointRecord]) -> list[CheckpointRecord]:
    """``records`` by creation time, newest first (the newest snapshot of a plan is the one recovered)."""
    epoch = _dt.datetime.min.replace(tzinfo=_dt.UTC)
    return sorted(records, key=lambda r: (r.created_at or epoch, r.id), reverse=True)


@dataclasses.dataclass
class RebuildReport:
    """What one rebuild of one provider's catalogue added and skipped (or, in a dry run, would)."""

    provider_id: str
    bank: str
    dry_run: bool = False
    indices: int = 0
    #: Added checkpoint ids, by status.
    added: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    plans_added: list[str] = dataclasses.field(default_factory=list)
    #: Plans named by added checkpoints that could not be recreated, and why (id -> reason).
    plans_not_added: dict[str, str] = dataclasses.field(default_factory=dict)
    skipped: list[Skipped] = dataclasses.field(default_factory=list)

    @property
    def added_count(self) -> int:
        return sum(len(ids) for ids in self.added.values())

    @property
    def unreadable(self) -> list[Skipped]:
        return [s for s in self.skipped if s.kind == Skip.UNREADABLE]

    def add(self, record: CheckpointRecord) -> None:
        self.added.setdefault(record.status, []).append(record.id)

    def lines(self, verbose: bool = False) -> list[str]:
        """One line per kind of outcome, with counts; ``verbose``: the ids under each."""
        would = "would add" if self.dry_run else "added"
        out = [f"{self.bank} (provider {self.provider_id}): {self.indices} checkpoint index(es)"
               f"{' (dry run: nothing written)' if self.dry_run else ''}"]
        if self.added_count:
            by_status = ", ".join(f"{len(ids)} {status}" for status, ids in sorted(self.added.items()))
            out.append(f"  {would} {self.added_count} checkpoint(s): {by_status}")
            if verbose:
                out += [f"    {cid} ({status})" for status, ids in sorted(self.added.items()) for cid in ids]
        else:
            out.append("  nothing to add: the catalogue already holds every checkpoint this bank can give")
        if self.plans_added:
            out.append(f"  {would} {len(self.plans_added)} plan(s), suspended, described as recovered")
            if verbose:
                out += [f"    plan {pid}" for pid in self.plans_added]
        if self.plans_not_added:
            out.append(f"  {len(self.plans_not_added)} plan(s) not recreated (their checkpoints are added)")
            out += [f"    plan {pid}: {why}" for pid, why in sorted(self.plans_not_added.items())]
        for kind in Skip:
            items = [s for s in self.skipped if s.kind == kind]
            if not items:
                continue
            first = f" (first: {items[0].checkpoint_id}: {items[0].detail})" if (
                kind == Skip.UNREADABLE and not verbose) else ""
            out.append(f"  skipped {len(items)} {SKIP_REASONS[kind]}{first}")
            if verbose:
                out += [f"    {s.checkpoint_id}{': ' + s.detail if s.detail else ''}" for s in items]
        return out

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["skipped"] = [{"checkpoint_id": s.checkpoint_id, "kind": str(s.kind), "detail": s.detail}
                           for s in self.skipped]
        return data
