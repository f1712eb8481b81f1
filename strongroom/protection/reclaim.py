"""Garbage collection as a service runs it: one provider's bank, with the catalogue kept in step.

The bank is the source of truth; the metadata database is a catalogue.  When
garbage collection reclaims a zombie, :func:`record_reclaim` sets the
checkpoint's catalogue status, closes its operation log if one was left open,
and writes a ``reclaim`` operation log, so that users see what happened and
operators can count it.  :func:`reconcile` fixes catalogue rows left
non-terminal by a writer that died between publishing in the bank and updating
the catalogue.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection

from strongroom import exceptions
from strongroom.bank_plugins.lease import BankLease
from strongroom.clock import Clock
from strongroom.db.api import Database
from strongroom.objects.records import OperationLog
from strongroom.objects.status import CheckpointStatus
from strongroom.protection.checkpoint import CheckpointStore
from strongroom.protection.gc import GarbageCollector, Reclaim, Report, Sweeping
from strongroom.protection.providers import Provider

LOG = logging.getLogger(__name__)

#: Catalogue statuses a run moves; rows left in them by a dead run are reconciled from the bank.
RUNNING = (CheckpointStatus.PROTECTING, CheckpointStatus.DELETING)
_FINAL_OF: dict[str, str] = {CheckpointStatus.PROTECTING: CheckpointStatus.ERROR,
                              CheckpointStatus.DELETING: CheckpointStatus.ERROR_DELETING}


def record_reclaim(db: Database | None, provider: Provider, host: str,
                   clock: Clock) -> Callable[[Reclaim], None]:
    """The ``on_reclaim`` callback that mirrors a reclaim into the catalogue."""

    def on_reclaim(reclaim: Reclaim) -> None:
        if db is None:
            return
        now = clock.now()
        project = reclaim.project_id
        if reclaim.status is not None:
            try:
                record = db.update_checkpoint(reclaim.checkpoint_id, {
                    "status": reclaim.status, "status_reason": reclaim.reason}, check=False)
                project = project or record.project_id
            except exceptions.NotFound:
                pass  # the writer died before cataloguing it
        for log in db.list_operation_logs(None, filters={"checkpoint_id": reclaim.checkpoint_id}):
            if log.ended_at is None and log.operation_type in ("protect", "delete", "copy"):
                final = _FINAL_OF.get(log.status, CheckpointStatus.ERROR)
                db.update_operation_log(log.id, {"status": final, "ended_at": now, "error_info": reclaim.reason})
        db.create_operation_log(OperationLog(
            id=str(uuid.uuid4()), project_id=project or "-", operation_type="reclaim", status="success",
            provider_id=provider.id, checkpoint_id=reclaim.checkpoint_id, host=host, started_at=now, ended_at=now,
            error_info=reclaim.reason,
            extra_info={"owner_id": reclaim.owner_id, "previous_status": reclaim.previous_status,
                        "objects_removed": reclaim.objects}))

    return on_reclaim


def reconcile(db: Database, provider: Provider, running: Collection[str], clock: Clock) -> int:
    """Catalogue rows in a running status whose bank index is final take the bank's status."""
    store = CheckpointStore(provider.bank, clock)
    fixed = 0
    for status in RUNNING:
        for record in db.list_checkpoints(provider.id, None, filters={"status": status}):
            if record.id in running:
                continue
            try:
                in_bank = store.read(record.id)
            except exceptions.NotFound:
                continue  # a writer between its catalogue row and its index: garbage collection decides
            if in_bank.status == record.status or in_bank.status in RUNNING:
                continue
            db.update_checkpoint(record.id, {"status": in_bank.status, "status_reason": in_bank.status_reason},
                                 check=False)
            LOG.info("catalogue of checkpoint %s set to %s from the bank", record.id, in_bank.status)
            fixed += 1
    return fixed


def collect(provider: Provider, lease: BankLease, db: Database | None, *, host: str, clock: Clock,
            running: Callable[[], Collection[str]] = frozenset, sweeping: Sweeping | None = None,
            chunk_grace: float = 600.0, dry_run: bool = False, sweep: bool = True) -> Report:
    """One garbage collection pass over ``provider``'s bank on behalf of ``lease``'s owner."""
    collector = GarbageCollector(provider.bank, lease, chunk_grace=chunk_grace, running=running,
                                 on_reclaim=record_reclaim(db, provider, host, clock), sweeping=sweeping,
                                 name=provider.bank_description)
    report = collector.collect(dry_run=dry_run, sweep=sweep)
    if db is not None and not dry_run:
        try:
            reconcile(db, provider, running(), clock)
        except exceptions.StrongroomError as err:
            report.errors.append(f"catalogue reconciliation: {err}")
    return report
