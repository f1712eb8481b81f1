"""The checkpoint catalogue: the only code that changes a checkpoint's status.

A checkpoint's status lives twice: in the bank (``index.json``, the source of
truth, with its listings and markers; :mod:`strongroom.protection.index`) and
in the metadata database (the catalogue the API lists).  Each life-cycle step
here writes the bank first, then the database, then the operation log where the
step has one, and judges the transition in one place (:meth:`_move`, on
:func:`strongroom.objects.status.check_transition`).  Manager, runner, garbage
collection and crash recovery call these steps; none of them writes either copy
itself (``tests/unit/test_owners.py`` and the import-linter contracts keep it so).

The one step that writes the database first is :meth:`begin_delete`: the
database's compare-and-set is what admits a single deleter among several
workers, and the row goes back if the bank then refuses.

``db`` may be None (``strongroom-manage bank gc --no-catalogue``): then only the
bank is written.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import threading
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any

from strongroom import exceptions
from strongroom.bank_plugins import Bank
from strongroom.clock import Clock
from strongroom.db.api import Database
from strongroom.objects import locks
from strongroom.objects.kinds import LoggedOperation
from strongroom.objects.records import CheckpointRecord, OperationLog
from strongroom.objects.status import CheckpointStatus, check_transition
from strongroom.protection.checkpoint import ActiveMarker, CheckpointStore, encryption_key_id
from strongroom.protection.index import BankIndex
from strongroom.protection.locking import lock_checkpoint, lock_index
from strongroom.protection.providers import Provider
from strongroom.protection.rebuild import RebuildReport, Skip, Skipped, judge, newest_first, recovered_plan

LOG = logging.getLogger(__name__)

#: Statuses a writer moves a checkpoint through; a checkpoint left in one by a dead owner is a zombie.
RUNNING = frozenset({CheckpointStatus.PROTECTING, CheckpointStatus.DELETING, CheckpointStatus.COPYING})
#: The status an operation log of an interrupted run ends in, by the status it was left in.
_FINAL_OF: dict[str, str] = {CheckpointStatus.PROTECTING: CheckpointStatus.ERROR,
                              CheckpointStatus.DELETING: CheckpointStatus.ERROR_DELETING,
                              CheckpointStatus.COPYING: CheckpointStatus.ERROR}
#: Operation logs a reclaim closes if their run left them open.
_WRITER_LOGS = frozenset({LoggedOperation.PROTECT, LoggedOperation.DELETE, LoggedOperation.COPY})
RESET_REASON = "reset by an administrator"
#: The ``extra_info`` key of a checkpoint that shows, per resource, what its protect did (the volume plugin:
#: mode full or incremental, bytes read and stored, why a full read, the parent checkpoint).
PROTECTED = "protected"
#: The ``extra_info`` key of a checkpoint that shows its last verification (id, status, at, reason).
LAST_VERIFICATION = "last_verification"
#: The ``extra_info`` key of an encrypted checkpoint that shows how (``{"algorithm", "key_id"}``; the index's
#: own ``encryption`` field says it in the clear for the bank).
ENCRYPTION = "encryption"
#: The ``extra_info`` key of a checkpoint that asked to be locked and could not be (why).
LOCK_ERROR = "lock_error"
#: The ``extra_info`` key of a copy that names where it was copied from (provider and bank).
COPIED_FROM = "copied_from"
#: The ``extra_info`` key of a copy that shows what its copy did (bytes written, chunks sent and present...).
COPIED = "copied"


@dataclasses.dataclass(frozen=True)
class Reclaim:
    """One zombie checkpoint, reclaimed (or, in a dry run, to be reclaimed)."""

    checkpoint_id: str
    owner_id: str
    project_id: str | None
    previous_status: str | None  # None: the index was never written
    status: str | None  # what the index now says
    objects: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _nothing() -> None:
    """A step with nothing to do."""


class CheckpointCatalogue:
    """The life cycle of the checkpoints of one provider's bank, in bank and database."""

    def __init__(self, bank: Bank, db: Database | None, clock: Clock, *, provider_id: str,
                 host: str = "") -> None:
        self.store = CheckpointStore(bank, clock)
        self._index = BankIndex(bank, clock)
        self.db = db
        self.clock = clock
        self.provider_id = provider_id
        self.host = host
        #: Serialises this process's read-modify-writes of an available checkpoint's index (delete,
        #: reset, verification records); a delete in another process is seen by its active marker.
        self._lock = threading.RLock()

    @property
    def bank(self) -> Bank:
        return self.store.bank

    def read(self, checkpoint_id: str) -> CheckpointRecord:
        """The bank's view of the checkpoint (``NotFound`` without an index)."""
        return self.store.read(checkpoint_id)

    # -- the one place transitions are judged -----------------------------------

    def _move(self, checkpoint_id: str, status: CheckpointStatus, reason: str | None, *,
              force: bool = False) -> CheckpointRecord:
        """Bank index to ``status`` (judged unless ``force``), then the catalogue row."""
        record = self.store.read(checkpoint_id)
        if not force:
            check_transition("Checkpoint", checkpoint_id, record.status, status, CheckpointStatus)
        record.status = status
        record.status_reason = reason
        self._index.write(record)
        self._catalogue(checkpoint_id, {"status": status, "status_reason": reason})
        return record

    def _catalogue(self, checkpoint_id: str, changes: dict[str, Any]) -> CheckpointRecord | None:
        """The database copy follows the bank's, already judged: no second transition check."""
        if self.db is None:
            return None
        try:
            return self.db.update_checkpoint(checkpoint_id, changes, check=False, provider_id=self.provider_id)
        except exceptions.NotFound:
            return None  # a writer died between its index and its row: the bank alone knows it

    # -- protect -------------------------------------------------------------------

    def begin_protect(self, record: CheckpointRecord) -> CheckpointRecord:
        """Active marker of the writer, then the index as ``protecting``, then the catalogue row.

        If a step fails, what the earlier ones wrote goes again (the row last, so the index first):
        nothing is left for garbage collection to guess at, unless the bank refuses even that.
        """
        marked = indexed = False
        try:
            record.encryption = self.bank.encryption_of(record.project_id)
            if record.encryption:
                record.extra_info = {**record.extra_info, ENCRYPTION: dict(record.encryption)}
            if record.owner_id:
                self._index.mark_active(record.owner_id, record.id, record.project_id, LoggedOperation.PROTECT)
                marked = True
            self._index.write(record)
            indexed = True
            # The project's checkpoints quota is counted in the row's transaction: over it, the index goes again.
            return self.db.create_checkpoint(record, enforce_quota=True) if self.db is not None else record
        except BaseException:
            try:
                if indexed:
                    self._index.remove(record.id)
                if marked:
                    self._index.clear_active(str(record.owner_id), record.id)
            except exceptions.StrongroomError as err:  # its marker is left: garbage collection reclaims it
                LOG.warning("could not withdraw checkpoint %s after a failed start: %s", record.id, err)
            raise

    def take_over(self, checkpoint_id: str, owner_id: str, operation: LoggedOperation) -> CheckpointRecord:
        """Make ``owner_id`` the writer of an unfinished checkpoint (a job resumed by another worker).

        Its marker is written first, then the index names it, then the previous
        owner's marker goes, then the catalogue row.  Raises ``Conflict`` if garbage
        collection has already reclaimed the checkpoint, or if it is no longer being written.
        """
        record = self.store.read(checkpoint_id)
        if self.store.was_reclaimed(checkpoint_id):
            raise exceptions.Conflict(reason=f"checkpoint {checkpoint_id} was reclaimed by garbage collection "
                                             f"before this worker could resume it")
        running = CheckpointStatus.PROTECTING if operation == LoggedOperation.PROTECT else CheckpointStatus.DELETING
        if record.status != running:
            raise exceptions.Conflict(reason=f"checkpoint {checkpoint_id} is {record.status}, not {running}")
        previous = record.owner_id
        self._index.mark_active(owner_id, checkpoint_id, record.project_id, operation)
        if previous != owner_id:
            record.owner_id = owner_id
            self._index.write(record)
            if previous:
                self._index.clear_active(previous, checkpoint_id)
        self._catalogue(checkpoint_id, {"owner_id": owner_id})
        return record

    def record_progress(self, checkpoint_id: str, bytes_done: int) -> None:
        """Bytes a protect has read so far (the catalogue only: the bank index carries no progress)."""
        self._catalogue(checkpoint_id, {"bytes_done": bytes_done})

    def publish(self, checkpoint_id: str, *, owner_id: str | None, bytes_done: int,
                protected: Mapping[str, Mapping[str, Any]] | None = None) -> str | None:
        """Publish a protect: index ``available`` (after every manifest), listings, marker, catalogue.

        With ``owner_id``, refuses (``Conflict``) unless the index still names that
        writer.  ``protected`` (what each resource's protect reported: mode, bytes read and stored...) goes
        into the checkpoint's ``extra_info`` under :data:`PROTECTED`.  Returns None once published, or why
        the checkpoint was withdrawn: garbage collection judged its writer dead while it was publishing.
        """
        record = self.store.read(checkpoint_id)
        if owner_id is not None and record.owner_id not in (None, owner_id):
            raise exceptions.Conflict(reason=f"checkpoint {checkpoint_id} was taken over by {record.owner_id}")
        check_transition("Checkpoint", checkpoint_id, record.status, CheckpointStatus.AVAILABLE, CheckpointStatus)
        record.status = CheckpointStatus.AVAILABLE
        record.status_reason = None
        if protected:
            record.extra_info = {**record.extra_info, PROTECTED: {k: dict(v) for k, v in sorted(protected.items())}}
        until = self._lock_date(record)
        if until is not None:
            record.extra_info = {**record.extra_info, locks.LOCKED_UNTIL: until.isoformat()}
        self._index.write(record)  # the commit: from here on the checkpoint is available
        if until is not None:
            self._lock_objects(record, until)
        try:
            self._index.add_listings(record)
            if record.owner_id:
                self._index.clear_active(record.owner_id, checkpoint_id)
        except exceptions.BankError as err:
            # Its marker stays: garbage collection writes the listings and clears it (clear_stale_marker).
            LOG.warning("checkpoint %s is available; its listings are left to garbage collection: %s",
                        checkpoint_id, err)
        if self.store.was_reclaimed(checkpoint_id):
            reason = "reclaimed by garbage collection while its writer was publishing it"
            withdrawn = self._move(checkpoint_id, CheckpointStatus.ERROR, reason, force=True)
            self._index.remove_listings(withdrawn)
            return reason
        self._catalogue(checkpoint_id, {"status": CheckpointStatus.AVAILABLE, "status_reason": None,
                                        "bytes_done": bytes_done, "extra_info": record.extra_info})
        return None

    @staticmethod
    def _lock_date(record: CheckpointRecord) -> _dt.datetime | None:
        """The date a checkpoint asked to be locked (``extra_info.retention_lock_days``) is locked until."""
        days = locks.lock_days(record.extra_info)
        if days is None or record.created_at is None:
            return None
        return locks.lock_date(record.created_at, days)

    def _lock_objects(self, record: CheckpointRecord, until: _dt.datetime) -> None:
        """Lock every object of a just published checkpoint (its index, which records the date, last).

        If the bank cannot (it has no object lock, or fails), the checkpoint stays available and says why
        in ``extra_info.lock_error``; the service still refuses to delete it before the date."""
        try:
            report = lock_checkpoint(self.store, record.id, record.project_id, until)
        except exceptions.StrongroomError as err:  # a bank error, or a manifest it cannot read back
            LOG.error("checkpoint %s is available but not locked in %s until %s: %s", record.id,
                      self.bank.name, until.isoformat(), err)
            record.extra_info = {**record.extra_info, LOCK_ERROR: str(err)}
            self._index.write(record)
            return
        LOG.info("checkpoint %s: %d chunk(s) and %d object(s) locked until %s", record.id, report.chunks,
                 report.objects, until.isoformat())

    def _relock_index(self, record: CheckpointRecord) -> None:
        """A locked checkpoint's index was written again (a new version): lock it too (best effort)."""
        until = locks.locked_until(record.extra_info)
        if until is None or until <= self.clock.now() or not self.bank.supports_object_lock:
            return
        try:
            lock_index(self.bank, record.id, until)
        except exceptions.BankError as err:  # its older, locked version still holds the checkpoint
            LOG.warning("could not lock the new index of checkpoint %s: %s", record.id, err)

    def fail_protect(self, checkpoint_id: str, reason: str, owner_id: str, bytes_done: int,
                     release: Callable[[], None] = _nothing,
                     protected: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """End a failed protect: index ``error`` with ``reason`` (kept if garbage collection already
        failed it), its partial data in reverse write order, ``release()`` of the chunks only it wrote
        (a sweep that passes over this checkpoint's own marker), ``owner_id``'s marker, then the catalogue.
        ``protected`` (each resource's status and seconds: which one failed) goes into ``extra_info`` under
        :data:`PROTECTED`, in the index and the catalogue alike (not when garbage collection failed it first).

        A bank too full to take the index gets its space back first (partial data, chunks), then the
        index.  If the bank fails half way, the marker stays and garbage collection finishes the job."""
        record = self.store.read(checkpoint_id)
        values: dict[str, Any] = {"status": CheckpointStatus.ERROR, "status_reason": reason, "bytes_done": bytes_done}
        if record.status != CheckpointStatus.ERROR:
            check_transition("Checkpoint", checkpoint_id, record.status, CheckpointStatus.ERROR, CheckpointStatus)
            record.status = CheckpointStatus.ERROR
            record.status_reason = reason
            if protected:
                record.extra_info = {**record.extra_info,
                                     PROTECTED: {k: dict(v) for k, v in sorted(protected.items())}}
                values["extra_info"] = record.extra_info
            try:
                self._index.write(record)
            except exceptions.BankFull:
                self.store.remove_objects(checkpoint_id)
                release()
                self._index.write(record)
                release = _nothing  # released already
        self.store.remove_objects(checkpoint_id)
        release()
        self._index.clear_active(owner_id, checkpoint_id)
        self._catalogue(checkpoint_id, values)

    def fail_unrecorded(self, checkpoint_id: str, status: CheckpointStatus, reason: str) -> None:
        """A run's end could not be recorded in full.  If the bank index got as far as a settled status,
        the catalogue takes it (the bank is the source of truth); if it still shows the run (or cannot be
        read), the catalogue says ``status``, and garbage collection reclaims the index once the run is over."""
        try:
            in_bank = self.store.read(checkpoint_id)
        except exceptions.StrongroomError:
            in_bank = None
        if in_bank is not None and in_bank.status not in RUNNING:
            self._catalogue(checkpoint_id, {"status": in_bank.status, "status_reason": in_bank.status_reason})
            return
        self._catalogue(checkpoint_id, {"status": status, "status_reason": reason})

    # -- delete ---------------------------------------------------------------------

    def check_may_delete(self, record: CheckpointRecord) -> None:
        """``InvalidStatusTransition`` unless ``record`` (as catalogued) may start deleting;
        ``CheckpointLocked`` (409, naming the date) while its lock date is in the future."""
        check_transition("Checkpoint", record.id, record.status, CheckpointStatus.DELETING, CheckpointStatus)
        self.check_unlocked(record)

    def check_unlocked(self, record: CheckpointRecord) -> None:
        """``CheckpointLocked`` while ``record``'s lock date (``extra_info.locked_until``) is in the future."""
        until = locks.locked_until(record.extra_info)
        if until is not None and until > self.clock.now():
            raise exceptions.CheckpointLocked(id=record.id, until=until.isoformat())

    def begin_delete(self, record: CheckpointRecord, owner_id: str) -> CheckpointRecord:
        """Admit one deleter (the catalogue's compare-and-set), then its marker and the index ``deleting``.

        If the bank refuses (read-only, full, a damaged index), what was written goes back: the index
        as it was, the marker, then the row; the checkpoint stays as usable as it was.
        """
        with self._lock:
            return self._begin_delete(record, owner_id)

    def _begin_delete(self, record: CheckpointRecord, owner_id: str) -> CheckpointRecord:
        self.check_may_delete(record)
        before = dataclasses.replace(record)
        if self.db is not None:
            record = self.db.update_checkpoint(record.id, {"status": CheckpointStatus.DELETING,
                                                           "owner_id": owner_id}, expected_status=[before.status],
                                               provider_id=self.provider_id)
        bank_before: CheckpointRecord | None = None
        try:
            bank_view = self.store.read(record.id)
            check_transition("Checkpoint", record.id, bank_view.status, CheckpointStatus.DELETING,
                             CheckpointStatus)
            self.check_unlocked(bank_view)  # the bank's index is the source of truth
            unchanged = dataclasses.replace(bank_view)
            self._index.mark_active(owner_id, record.id, bank_view.project_id, LoggedOperation.DELETE)
            bank_before = unchanged  # from here on the bank holds something to undo
            bank_view.status = CheckpointStatus.DELETING
            bank_view.status_reason = None
            bank_view.owner_id = owner_id
            self._index.write(bank_view)
        except BaseException:
            self.cancel_delete(before, owner_id, bank_before)
            raise
        return record

    def cancel_delete(self, before: CheckpointRecord, owner_id: str,
                      bank_before: CheckpointRecord | None) -> None:
        """Undo :meth:`begin_delete` (``before``: the row, ``bank_before``: the index as they were; None:
        the bank was not written).  If the bank cannot be put back, the row stays ``deleting`` and the
        marker stays: garbage collection finishes the delete, or reconciles the row with the bank."""
        if bank_before is not None:
            try:
                if self.store.read(before.id).status != bank_before.status:
                    self._index.write(bank_before)
                self._index.clear_active(owner_id, before.id)
            except exceptions.StrongroomError as err:
                LOG.warning("delete of checkpoint %s could not be undone in the bank; garbage collection "
                            "settles it: %s", before.id, err)
                return
        self._catalogue(before.id, {"status": before.status, "status_reason": before.status_reason,
                                    "owner_id": before.owner_id})

    def unlist(self, checkpoint_id: str) -> None:
        """A delete's first bank step: its listing entries go (readers stop finding it)."""
        self._index.remove_listings(self.store.read(checkpoint_id))

    def finish_delete(self, checkpoint_id: str, owner_id: str, sweep: Callable[[], None]) -> None:
        """Objects, then a tombstone index ``deleted``, then ``sweep()`` of the chunks it alone used, then
        the marker, then the catalogue (which says deleted only once its unique chunks are gone)."""
        self.store.remove_objects(checkpoint_id)
        record = self.store.read(checkpoint_id)
        check_transition("Checkpoint", checkpoint_id, record.status, CheckpointStatus.DELETED, CheckpointStatus)
        record.status = CheckpointStatus.DELETED
        record.status_reason = None
        self._index.write(record)
        sweep()
        self._index.clear_active(owner_id, checkpoint_id)
        self._catalogue(checkpoint_id, {"status": CheckpointStatus.DELETED, "status_reason": None})

    def fail_delete(self, checkpoint_id: str, owner_id: str, reason: str) -> None:
        record = self.store.read(checkpoint_id)
        check_transition("Checkpoint", checkpoint_id, record.status, CheckpointStatus.ERROR_DELETING,
                         CheckpointStatus)
        record.status = CheckpointStatus.ERROR_DELETING
        record.status_reason = reason
        self._index.write(record)
        self._index.clear_active(owner_id, checkpoint_id)
        self._catalogue(checkpoint_id, {"status": CheckpointStatus.ERROR_DELETING, "status_reason": reason})

    # -- verification -------------------------------------------------------------------

    def record_verification(self, checkpoint_id: str, verification: dict[str, Any]) -> bool:
        """A verification's outcome on the checkpoint, as ``extra_info["last_verification"]``: the bank
        index first, then the row.  Only an available checkpoint no writer is working on takes it (a
        delete that started meanwhile wins); returns whether it was recorded.  If the bank refuses the
        write, neither copy changes."""
        with self._lock:
            record = self.store.read(checkpoint_id)
            if record.status != CheckpointStatus.AVAILABLE or any(
                    m.checkpoint_id == checkpoint_id for m in self.store.active_markers()):
                return False
            record.extra_info = {**record.extra_info, LAST_VERIFICATION: verification}
            self._index.write(record)
            self._relock_index(record)
            self._catalogue(checkpoint_id, {"extra_info": record.extra_info})
        return True

    # -- administrators ---------------------------------------------------------------

    def reset(self, checkpoint_id: str, state: CheckpointStatus) -> None:
        """``os-resetState``: an administrator forces the status (no transition check, by design)."""
        with self._lock:
            self._relock_index(self._move(checkpoint_id, state, RESET_REASON, force=True))

    # -- garbage collection -------------------------------------------------------------

    def clear_stale_marker(self, marker: ActiveMarker, *, remove_partial: bool = False) -> None:
        """A marker whose checkpoint is finished or taken over goes; with ``remove_partial``, first the
        partial data of a failed protect (useless; never an available checkpoint's)."""
        if remove_partial:
            self.store.remove_objects(marker.checkpoint_id)
        if marker.operation in (LoggedOperation.PROTECT, LoggedOperation.COPY):
            record = self.store.read(marker.checkpoint_id)
            if record.status == CheckpointStatus.AVAILABLE:  # a publish the bank cut short: finish it
                self._index.add_listings(record)
        self._index.clear_active(marker.owner_id, marker.checkpoint_id)

    def reclaim(self, marker: ActiveMarker, record: CheckpointRecord | None, *, by: str, why: str,
                dry_run: bool = False) -> Reclaim | None:
        """Reclaim the checkpoint of a dead owner's ``marker`` (``record``: its index as read, if any).

        The reclaim marker first; the index read again (a writer that published, or
        another worker that took the job over, wins: None); listings, objects in
        reverse write order, index ``error`` (``deleted`` for an interrupted delete),
        the marker; then the catalogue and a ``reclaim`` operation log.
        """
        cid = marker.checkpoint_id
        previous = record.status if record is not None else None
        final = CheckpointStatus.DELETED if previous == CheckpointStatus.DELETING else CheckpointStatus.ERROR
        reason = f"reclaimed by garbage collection: {why}"
        if dry_run:
            objects = self.store.remove_objects(cid, dry_run=True)
            return Reclaim(cid, marker.owner_id, marker.project_id, previous, final, len(objects), reason)
        self._index.mark_reclaimed(cid, by, reason)
        if record is not None:
            again = self.store.read(cid)
            if again.status not in RUNNING or again.owner_id not in (None, marker.owner_id):
                self._index.unmark_reclaimed(cid)
                self._index.clear_active(marker.owner_id, cid)
                return None
            self._index.remove_listings(again)
        objects = self.store.remove_objects(cid)
        if record is not None:
            record = self.store.read(cid)
            record.status = final
            record.status_reason = reason
            self._index.write(record)  # forced: whatever the dead writer left, it ends here
        self._index.clear_active(marker.owner_id, cid)
        reclaim = Reclaim(cid, marker.owner_id, marker.project_id or (record.project_id if record else None),
                          previous, final if record is not None else None, len(objects), reason)
        self._record_reclaim(reclaim)
        return reclaim

    def _record_reclaim(self, reclaim: Reclaim) -> None:
        if self.db is None:
            return
        now = self.clock.now()
        project = reclaim.project_id
        if reclaim.status is not None:
            row = self._catalogue(reclaim.checkpoint_id, {"status": reclaim.status,
                                                          "status_reason": reclaim.reason})
            project = project or (row.project_id if row is not None else None)
        for log in self.db.list_operation_logs(None, filters={"checkpoint_id": reclaim.checkpoint_id}):
            if log.ended_at is None and log.operation_type in _WRITER_LOGS:
                final = _FINAL_OF.get(log.status, CheckpointStatus.ERROR)
                self.db.update_operation_log(log.id, {"status": final, "ended_at": now,
                                                      "error_info": reclaim.reason})
        self.db.create_operation_log(OperationLog(
            id=str(uuid.uuid4()), project_id=project or "-", operation_type=LoggedOperation.RECLAIM,
            status="success", provider_id=self.provider_id, checkpoint_id=reclaim.checkpoint_id, host=self.host,
            started_at=now, ended_at=now, error_info=reclaim.reason,
            extra_info={"owner_id": reclaim.owner_id, "previous_status": reclaim.previous_status,
                        "objects_removed": reclaim.objects}))

    def reconcile(self, running: Collection[str]) -> int:
        """Catalogue rows left running by a writer that died between the bank and the catalogue, or failed
        by a run that could not tell the bank, take the bank's settled status; returns how many were fixed."""
        if self.db is None:
            return 0
        fixed = 0
        for status in (CheckpointStatus.PROTECTING, CheckpointStatus.DELETING, CheckpointStatus.ERROR,
                       CheckpointStatus.ERROR_DELETING, CheckpointStatus.COPYING):
            for row in self.db.list_checkpoints(self.provider_id, None, filters={"status": status}):
                if row.id in running:
                    continue
                try:
                    in_bank = self.store.read(row.id)
                except exceptions.NotFound:
                    continue  # a writer between its catalogue row and its index: garbage collection decides
                except exceptions.BankError as err:
                    LOG.warning("checkpoint %s cannot be reconciled with the bank: %s", row.id, err)
                    continue
                if in_bank.status == row.status or in_bank.status in RUNNING:
                    continue
                self._catalogue(row.id, {"status": in_bank.status, "status_reason": in_bank.status_reason})
                LOG.info("catalogue of checkpoint %s set to %s from the bank", row.id, in_bank.status)
                fixed += 1
        return fixed

    # -- recovery from the bank alone -------------------------------------------------

    def rebuild(self, writer_alive: Callable[[str], bool], *, dry_run: bool = False) -> RebuildReport:
        """Add to the database every checkpoint of this bank it lacks, and the plans they were protected
        under if it has no such plan (``strongroom-manage catalogue rebuild``; what each status gives is in
        :mod:`strongroom.protection.rebuild`).  ``writer_alive(owner_id)`` tells whether the writer of an
        unfinished checkpoint still holds its lease.  Indices are read through the store; nothing is
        written to the bank.  Idempotent: a second run adds nothing."""
        if self.db is None:
            raise exceptions.ConfigError(reason="a catalogue rebuild needs the metadata database")
        report = RebuildReport(self.provider_id, self.bank.name, dry_run=dry_run)
        wanted: list[CheckpointRecord] = []
        for checkpoint_id in sorted(self.store.list_ids()):
            report.indices += 1
            try:  # a copy of it in another provider's bank is a row of its own: only this provider's counts
                row = self.db.get_checkpoint(checkpoint_id, provider_id=self.provider_id)
            except exceptions.NotFound:
                row = None
            if row is not None:
                report.skipped.append(Skipped(checkpoint_id, Skip.CATALOGUED, row.status))
                continue
            try:
                record = self.store.read(checkpoint_id)
            except (exceptions.StrongroomError, TypeError, ValueError) as err:
                report.skipped.append(Skipped(checkpoint_id, Skip.UNREADABLE, str(err)))
                continue
            skipped = judge(record, self.provider_id, writer_alive)
            if skipped is not None:
                report.skipped.append(skipped)
            else:
                wanted.append(record)
        self._rebuild_plans(newest_first(wanted), report)
        for record in reversed(newest_first(wanted)):
            record.bytes_done = record.bytes_total if record.status == CheckpointStatus.AVAILABLE else 0
            record.plan_id = record.plan_id or (record.protection_plan or {}).get("id")  # lists under its plan
            if not dry_run:
                try:
                    self.db.create_checkpoint(record)
                except exceptions.Conflict:  # its writer (or another rebuild) catalogued it meanwhile
                    report.skipped.append(Skipped(record.id, Skip.CATALOGUED, "added meanwhile"))
                    continue
            report.add(record)
        if not dry_run and report.added_count:
            LOG.info("catalogue of %s rebuilt from the bank: %d checkpoint(s), %d plan(s) added", self.bank.name,
                     report.added_count, len(report.plans_added))
        return report

    def _rebuild_plans(self, records: list[CheckpointRecord], report: RebuildReport) -> None:
        """The plan row of each plan ``records`` (newest first) name that the database lacks, from the
        newest snapshot of it."""
        assert self.db is not None
        seen: set[str] = set()
        for record in records:
            plan_id = str((record.protection_plan or {}).get("id") or record.plan_id or "")
            if not plan_id or plan_id in seen:
                continue
            seen.add(plan_id)
            try:
                self.db.get_plan(plan_id)
                continue
            except exceptions.NotFound:
                pass
            try:
                plan = recovered_plan(record, self.clock.now())
                if plan is not None and not report.dry_run:
                    self.db.create_plan(plan)
            except exceptions.Conflict:
                report.plans_not_added[plan_id] = "the database holds it as deleted"
                continue
            except (exceptions.StrongroomError, TypeError, ValueError) as err:
                report.plans_not_added[plan_id] = str(err)
                continue
            if plan is not None:
                report.plans_added.append(plan_id)

    # -- copy (this catalogue's bank is the target) -------------------------------------

    def begin_copy(self, record: CheckpointRecord) -> CheckpointRecord:
        """Start a copy of a checkpoint into this bank under its own id: the writer's active marker (operation
        ``copy``), then the index ``copying``, then the catalogue row.  ``Conflict`` if this bank already
        holds the id (a tombstone ``deleted`` excepted: a deleted copy may be made again).  If a step fails,
        what the earlier ones wrote goes again, as :meth:`begin_protect` does."""
        try:
            existing: CheckpointRecord | None = self.store.read(record.id)
        except exceptions.NotFound:
            existing = None
        if existing is not None and existing.status != CheckpointStatus.DELETED:
            raise exceptions.Conflict(reason=f"copy.checkpoint_id: the bank of provider {self.provider_id} already "
                                             f"holds checkpoint {record.id} ({existing.status})")
        row_exists = False
        if self.db is not None:
            try:
                row = self.db.get_checkpoint(record.id, provider_id=self.provider_id)
            except exceptions.NotFound:
                pass
            else:
                if row.status != CheckpointStatus.DELETED:
                    raise exceptions.Conflict(reason=f"copy.checkpoint_id: provider {self.provider_id} already "
                                                     f"catalogues checkpoint {record.id} ({row.status})")
                row_exists = True
        record.status = CheckpointStatus.COPYING
        record.provider_id = self.provider_id
        marked = indexed = False
        try:
            record.encryption = self.bank.encryption_of(record.project_id)
            if record.owner_id:
                self._index.mark_active(record.owner_id, record.id, record.project_id, LoggedOperation.COPY)
                marked = True
            self._index.write(record)
            indexed = True
            if existing is not None:  # a deleted copy made again: a reclaim of the old one must not withdraw it
                self._index.unmark_reclaimed(record.id)
            if self.db is None:
                return record
            if row_exists:
                self.store.bank.note_checkpoint(record.id, record.project_id, encryption_key_id(record))
                return self.db.update_checkpoint(record.id, {
                    "status": CheckpointStatus.COPYING, "status_reason": None, "owner_id": record.owner_id,
                    "plan_id": record.plan_id, "protection_plan": record.protection_plan,
                    "resource_graph": record.resource_graph, "extra_info": record.extra_info,
                    "bytes_total": record.bytes_total, "bytes_done": 0}, check=False, provider_id=self.provider_id)
            return self.db.create_checkpoint(record)
        except BaseException:
            try:
                if indexed:
                    if existing is not None:
                        self._index.write(existing)
                    else:
                        self._index.remove(record.id)
                if marked:
                    self._index.clear_active(str(record.owner_id), record.id)
            except exceptions.StrongroomError as err:  # its marker is left: garbage collection reclaims it
                LOG.warning("could not withdraw the copy of checkpoint %s after a failed start: %s", record.id, err)
            raise

    def publish_copy(self, checkpoint_id: str, *, owner_id: str | None, bytes_done: int,
                     copied: Mapping[str, Any]) -> str | None:
        """Publish a verified copy: index ``available`` (after every manifest), listings, marker, catalogue,
        as :meth:`publish` does; what the copy did goes into ``extra_info["copied"]``.  Returns None once
        published, or why it was withdrawn (garbage collection judged its writer dead meanwhile)."""
        record = self.store.read(checkpoint_id)
        if record.status != CheckpointStatus.COPYING:
            raise exceptions.Conflict(reason=f"checkpoint {checkpoint_id} is {record.status}, not copying")
        record.extra_info = {**record.extra_info, COPIED: dict(copied)}
        self._index.write(record)  # still copying: publish judges and commits
        return self.publish(checkpoint_id, owner_id=owner_id, bytes_done=bytes_done)

    def fail_copy(self, checkpoint_id: str, reason: str, owner_id: str, bytes_done: int,
                  release: Callable[[], None] = _nothing) -> None:
        """End a failed copy as :meth:`fail_protect` ends a protect: index ``error`` naming ``reason``, the
        copied objects, ``release()`` of chunks only it wrote, the marker, the catalogue."""
        self.fail_protect(checkpoint_id, reason, owner_id, bytes_done, release=release)


class Catalogues:
    """One :class:`CheckpointCatalogue` per provider, built in this one place."""

    def __init__(self, db: Database | None, clock: Clock, host: str = "") -> None:
        self.db = db
        self.clock = clock
        self.host = host
        self._by_provider: dict[str, CheckpointCatalogue] = {}

    def of(self, provider: Provider) -> CheckpointCatalogue:
        """The catalogue of ``provider`` (built again if its bank was rebuilt)."""
        catalogue = self._by_provider.get(provider.id)
        if catalogue is None or catalogue.bank is not provider.bank:
            catalogue = CheckpointCatalogue(provider.bank, self.db, self.clock, provider_id=provider.id,
                                            host=self.host)
            self._by_provider[provider.id] = catalogue
        return catalogue
