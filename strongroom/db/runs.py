"""Runs and their logs: restores and verifications (one table, ``kind`` says which), and operation logs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import orm
from sqlalchemy.sql.elements import ColumnElement

from strongroom import exceptions
from strongroom.db import core
from strongroom.db.models import OperationLogModel, RestoreModel
from strongroom.objects.records import OperationLog, Restore
from strongroom.objects.status import RestoreStatus, check_transition

RESTORE_KINDS = ("restore", "verification")

RESTORE_SORT = core.sortable(RestoreModel, "id", "status", "provider_id", "project_id", "checkpoint_id",
                             "created_at", "updated_at")
OPLOG_SORT = core.sortable(OperationLogModel, "id", "status", "operation_type", "project_id", "created_at",
                           "updated_at", nullable=("provider_id", "checkpoint_id", "plan_id"))

RESTORE_FILTERS = ("checkpoint_id", "provider_id", "status", "restore_target")
OPLOG_FILTERS = ("checkpoint_id", "plan_id", "restore_id", "status", "operation_type", "provider_id")

#: The JSON fields of a restore: each is stored as a copy of the dict given (None: empty).
_RESTORE_DICTS = ("parameters", "resources_status", "resources_reason", "extra_info", "progress", "resume_state")
RESTORE_UPDATABLE = frozenset({"status", "restore_target", *_RESTORE_DICTS})
OPLOG_UPDATABLE = frozenset({"status", "provider_id", "checkpoint_id", "plan_id", "restore_id",
                             "scheduled_operation_id", "host", "error_info", "extra_info", "started_at",
                             "ended_at"})


def restore_row_before_progress(row: dict[str, Any]) -> dict[str, Any]:
    """A restores row written before 0003_restore_progress, as that migration changed stored rows: the
    ``progress`` and ``resume`` keys of its extra_info become its ``progress`` and ``resume_state``."""
    extra = dict(row.get("extra_info") or {})
    progress, resume = extra.pop("progress", None), extra.pop("resume", None)
    return {**row, "extra_info": extra, "progress": progress if isinstance(progress, dict) else {},
            "resume_state": resume if isinstance(resume, dict) else {}}


def _kind_name(kind: str | None) -> str:
    return "Verification" if kind == "verification" else "Restore"


def _check_kind(kind: str) -> str:
    if kind not in RESTORE_KINDS:
        raise exceptions.InvalidInput(
            reason=f"unknown restore kind '{kind}' (allowed: {', '.join(RESTORE_KINDS)})")
    return kind


def _kind_scope(kind: str | None) -> list[ColumnElement[bool]]:
    return [] if kind is None else [RestoreModel.kind == kind]


def _load_restore(session: orm.Session, restore_id: str, project_id: str | None, kind: str | None, *,
                  for_update: bool = False) -> RestoreModel:
    return core.load(session, RestoreModel, restore_id, kind=_kind_name(kind), project_id=project_id,
                     scope=_kind_scope(kind), for_update=for_update)


class RunQueries(core.Core):
    """Restores, verifications and operation logs."""

    # -- restores and verifications --------------------------------------------------------------------

    def create_restore(self, r: Restore) -> Restore:
        now = self.now()
        kind = _check_kind(r.kind)
        status = core.status_value(kind, r.status, RestoreStatus)
        with self.session(write=True) as s:
            model = RestoreModel(**core.columns(RestoreModel, r, skip=("status", "created_at", "updated_at")),
                                 status=status, created_at=core.utc(r.created_at) or now,
                                 updated_at=core.utc(r.updated_at) or core.utc(r.created_at) or now)
            for key in _RESTORE_DICTS:
                setattr(model, key, dict(getattr(r, key) or {}))
            core.insert(s, model, _kind_name(kind), r.id)
            return core.to_record(Restore, model)

    def get_restore(self, restore_id: str, project_id: str | None = None, kind: str | None = None) -> Restore:
        if kind is not None:
            _check_kind(kind)
        with self.session() as s:
            return core.to_record(Restore, _load_restore(s, restore_id, project_id, kind))

    def list_restores(self, project_id: str | None, *, kind: str = "restore",
                      filters: Mapping[str, Any] | None = None, marker: str | None = None,
                      limit: int | None = None,
                      sort: Sequence[tuple[str, str]] = core.DEFAULT_SORT) -> list[Restore]:
        """Restores (or verifications); filters: checkpoint_id, provider_id, status, restore_target."""
        _check_kind(kind)
        conds = core.filter_conditions(RestoreModel, filters, RESTORE_FILTERS)
        scope = [*core.project_scope(RestoreModel, project_id), *_kind_scope(kind)]
        with self.session() as s:
            rows = core.list_rows(s, RestoreModel, scope=scope, conditions=conds, sort=sort,
                                  allowed_sort=RESTORE_SORT, marker=marker, limit=limit)
            return [core.to_record(Restore, m) for m in rows]

    def update_restore(self, restore_id: str, values: Mapping[str, Any]) -> Restore:
        """Update a restore or verification; status changes follow the transition table."""
        core.check_keys("restore", values, RESTORE_UPDATABLE)
        with self.session(write=True) as s:
            model = _load_restore(s, restore_id, None, None, for_update=True)
            for key, value in values.items():
                if key == "status":
                    target = core.status_value(model.kind, value, RestoreStatus)
                    check_transition(_kind_name(model.kind), restore_id, model.status, target, RestoreStatus)
                    model.status = target
                elif key == "restore_target":
                    model.restore_target = value
                else:
                    setattr(model, key, dict(value or {}))
            model.updated_at = self.now()
            s.flush()
            return core.to_record(Restore, model)

    def delete_restore(self, restore_id: str) -> None:
        with self.session(write=True) as s:
            s.delete(_load_restore(s, restore_id, None, None, for_update=True))

    # -- operation logs --------------------------------------------------------------------------------

    def create_operation_log(self, log: OperationLog) -> OperationLog:
        now = self.now()
        with self.session(write=True) as s:
            model = OperationLogModel(**core.columns(OperationLogModel, log, skip=(
                "created_at", "updated_at", "started_at", "ended_at")),
                created_at=core.utc(log.created_at) or now,
                updated_at=core.utc(log.updated_at) or core.utc(log.created_at) or now,
                started_at=core.utc(log.started_at), ended_at=core.utc(log.ended_at))
            model.extra_info = dict(log.extra_info or {})
            core.insert(s, model, "OperationLog", log.id)
            return core.to_record(OperationLog, model)

    def get_operation_log(self, log_id: str, project_id: str | None = None) -> OperationLog:
        with self.session() as s:
            return core.to_record(OperationLog, core.load(s, OperationLogModel, log_id, kind="OperationLog",
                                                          project_id=project_id))

    def list_operation_logs(self, project_id: str | None, *, filters: Mapping[str, Any] | None = None,
                            marker: str | None = None, limit: int | None = None,
                            sort: Sequence[tuple[str, str]] = core.DEFAULT_SORT) -> list[OperationLog]:
        """Filters: checkpoint_id, plan_id, restore_id, status, operation_type, provider_id."""
        conds = core.filter_conditions(OperationLogModel, filters, OPLOG_FILTERS)
        with self.session() as s:
            rows = core.list_rows(s, OperationLogModel, scope=core.project_scope(OperationLogModel, project_id),
                                  conditions=conds, sort=sort, allowed_sort=OPLOG_SORT, marker=marker, limit=limit)
            return [core.to_record(OperationLog, m) for m in rows]

    def update_operation_log(self, log_id: str, values: Mapping[str, Any]) -> OperationLog:
        core.check_keys("operation log", values, OPLOG_UPDATABLE)
        with self.session(write=True) as s:
            model = core.load(s, OperationLogModel, log_id, kind="OperationLog", for_update=True)
            for key, value in values.items():
                if key in ("started_at", "ended_at"):
                    value = core.utc(value)
                elif key == "extra_info":
                    value = dict(value or {})
                setattr(model, key, value)
            model.updated_at = self.now()
            s.flush()
            return core.to_record(OperationLog, model)
