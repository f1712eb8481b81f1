"""The checkpoint catalogue: the metadata store's copy of every checkpoint's index (the bank is the truth)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.sql.elements import ColumnElement

from strongroom import exceptions
from strongroom.db import core, pagination, quotas
from strongroom.db.models import CheckpointModel
from strongroom.objects.records import CheckpointRecord
from strongroom.objects.status import CheckpointStatus, check_transition

CHECKPOINT_SORT = core.sortable(CheckpointModel, "id", "status", "provider_id", "project_id", "created_at",
                                "updated_at", nullable=("plan_id",))
CHECKPOINT_FILTERS = ("plan_id", "status", "start_date", "end_date")
CHECKPOINT_UPDATABLE = frozenset({"status", "status_reason", "plan_id", "owner_id", "protection_plan",
                                  "resource_graph", "extra_info", "bytes_total", "bytes_done"})

_TABLE = cast(sa.Table, CheckpointModel.__table__)


def _provider_scope(provider_id: str | None) -> list[ColumnElement[bool]]:
    return [] if provider_id is None else [CheckpointModel.provider_id == provider_id]


class CheckpointQueries(core.Core):
    """Catalogue entries; status changes by compare-and-set, judged by the transition table."""

    def create_checkpoint(self, cp: CheckpointRecord, *, enforce_quota: bool = False) -> CheckpointRecord:
        """Insert a catalogue entry; ``created_at`` is kept when given (the bank's index has one).

        ``enforce_quota`` (a protect's new checkpoint, not a copy or a rebuilt entry): QuotaExceeded when the
        project has its ``checkpoints`` limit in use, counted in the insert's transaction (:mod:`.quotas`)."""
        now = self.now()
        status = core.status_value("checkpoint", cp.status, CheckpointStatus)

        def insert(s: orm.Session) -> CheckpointRecord:
            if enforce_quota:
                quotas.reserve(self, s, cp.project_id, quotas.CHECKPOINTS)
            values = core.columns(CheckpointModel, cp, skip=("status", "created_at", "updated_at"))
            model = CheckpointModel(**values, status=status, created_at=core.utc(cp.created_at) or now,
                                    updated_at=core.utc(cp.updated_at) or core.utc(cp.created_at) or now)
            model.protection_plan = dict(cp.protection_plan or {})
            model.extra_info = dict(cp.extra_info or {})
            core.insert(s, model, "Checkpoint", cp.id)
            return core.to_record(CheckpointRecord, model)

        if enforce_quota:
            quotas.ensure_row(self, cp.project_id, quotas.CHECKPOINTS)
        return self.write(insert)

    def get_checkpoint(self, checkpoint_id: str, project_id: str | None = None,
                       provider_id: str | None = None) -> CheckpointRecord:
        """The checkpoint in ``provider_id``'s bank.  Without a provider, the oldest of its rows: a copy in
        another provider's bank has the same id (and ``created_at``), so a caller that may meet one names
        the provider; only a checkpoint no copy can have yet (a protect's, just made) may be read without."""
        with self.session() as s:
            stmt = (sa.select(CheckpointModel)
                    .where(CheckpointModel.id == checkpoint_id, *core.project_scope(CheckpointModel, project_id),
                           *_provider_scope(provider_id))
                    .order_by(CheckpointModel.created_at, CheckpointModel.provider_id).limit(1))
            model = s.execute(stmt).scalar_one_or_none()
            if model is None:
                raise exceptions.NotFound(kind="Checkpoint", id=checkpoint_id)
            return core.to_record(CheckpointRecord, model)

    def get_checkpoint_with_copies(self, checkpoint_id: str, project_id: str | None = None,
                                   provider_id: str | None = None) -> tuple[CheckpointRecord, list[CheckpointRecord]]:
        """:meth:`get_checkpoint` and :meth:`list_checkpoint_copies` in one query (a checkpoint's show): every
        row of the id is read once, the one asked for chosen as :meth:`get_checkpoint` chooses it."""
        with self.session() as s:
            rows = s.execute(sa.select(CheckpointModel).where(CheckpointModel.id == checkpoint_id)).scalars().all()
            records = [core.to_record(CheckpointRecord, m) for m in rows]
        wanted = [r for r in records if (project_id is None or r.project_id == project_id)
                  and (provider_id is None or r.provider_id == provider_id)]
        if not wanted:
            raise exceptions.NotFound(kind="Checkpoint", id=checkpoint_id)
        found = min(wanted, key=lambda r: (r.created_at, r.provider_id))
        return found, sorted(records, key=lambda r: (r.updated_at, r.provider_id))

    def list_checkpoint_copies(self, checkpoint_id: str) -> list[CheckpointRecord]:
        """Every row of the checkpoint: the original and its copies in other providers' banks."""
        with self.session() as s:
            rows = s.execute(sa.select(CheckpointModel).where(CheckpointModel.id == checkpoint_id)
                             .order_by(CheckpointModel.updated_at, CheckpointModel.provider_id)).scalars().all()
            return [core.to_record(CheckpointRecord, m) for m in rows]

    def list_checkpoints(self, provider_id: str | None, project_id: str | None, *,
                         filters: Mapping[str, Any] | None = None, marker: str | None = None,
                         limit: int | None = None,
                         sort: Sequence[tuple[str, str]] = core.DEFAULT_SORT) -> list[CheckpointRecord]:
        """Catalogue entries; filters: plan_id, status, start_date / end_date (whole UTC days, inclusive)."""
        checked = pagination.check_filters(filters, CHECKPOINT_FILTERS)
        start, end = checked.pop("start_date", None), checked.pop("end_date", None)
        conds = core.filter_conditions(CheckpointModel, checked, CHECKPOINT_FILTERS)
        conds += pagination.date_range(cast(ColumnElement[Any], CheckpointModel.created_at), start, end)
        scope = [*_provider_scope(provider_id), *core.project_scope(CheckpointModel, project_id)]
        with self.session() as s:  # plain rows, not ORM objects: a page of records costs half as much
            stmt = pagination.paginate(s, sa.select(*_TABLE.c).where(*scope, *conds), id_column=_TABLE.c.id,
                                       scope=scope, sort=sort, allowed_sort=CHECKPOINT_SORT, marker=marker,
                                       limit=limit)
            return [core.row_record(CheckpointRecord, row) for row in s.execute(stmt).all()]

    def update_checkpoint(self, checkpoint_id: str, values: Mapping[str, Any], *,
                          expected_status: str | Sequence[str] | None = None,
                          check: bool = True, provider_id: str | None = None) -> CheckpointRecord:
        """Update a catalogue entry.

        ``expected_status``: compare-and-set; Conflict unless the current status
        is one of these when the update is applied (atomic: one of two racing
        callers wins).  ``check=False`` skips the transition table (admin reset).  ``provider_id``: the row
        of the checkpoint in that provider's bank (a copy shares its id); without it, the first catalogued row.
        """
        core.check_keys("checkpoint", values, CHECKPOINT_UPDATABLE)
        updates = dict(values)
        if "status" in updates:
            updates["status"] = core.status_value("checkpoint", updates["status"], CheckpointStatus)
        expected: tuple[str, ...] | None = None
        if expected_status is not None:
            items = [expected_status] if isinstance(expected_status, str) else list(expected_status)
            expected = tuple(core.status_value("checkpoint", v, CheckpointStatus) for v in items)

        def update(s: orm.Session) -> CheckpointRecord:
            found = s.execute(sa.select(CheckpointModel.status, CheckpointModel.provider_id).where(
                CheckpointModel.id == checkpoint_id, *_provider_scope(provider_id))
                .order_by(CheckpointModel.created_at, CheckpointModel.provider_id).limit(1)).one_or_none()
            if found is None:
                raise exceptions.NotFound(kind="Checkpoint", id=checkpoint_id)
            current, provider = found
            where = [_TABLE.c.id == checkpoint_id, _TABLE.c.provider_id == provider]
            if expected is not None and current not in expected:
                raise exceptions.Conflict(
                    reason=f"Checkpoint {checkpoint_id} is '{current}', expected "
                           f"{' or '.join(repr(e) for e in expected)}")
            if check and "status" in updates:
                check_transition("Checkpoint", checkpoint_id, current, updates["status"], CheckpointStatus)
            guard = expected if expected is not None else (current,)
            stmt = (sa.update(_TABLE)
                    .where(*where, _TABLE.c.status.in_(guard))
                    .values(**updates, updated_at=self.now()))
            if cast(sa.CursorResult[Any], s.execute(stmt)).rowcount != 1:
                # The status changed between our read and our write: judge again on the new status.
                raise core.TryAgain
            model = s.execute(sa.select(CheckpointModel).where(*where)
                              .execution_options(populate_existing=True)).scalar_one()
            return core.to_record(CheckpointRecord, model)

        return self.write(update, exhausted=lambda: exceptions.Conflict(
            reason=f"Checkpoint {checkpoint_id} is changing too often; try again"))
