"""Figures the metrics read from the catalogue at each scrape: checkpoints by status, each plan's last
available checkpoint.  Read-only, one query each, whatever the number of checkpoints."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Any

import sqlalchemy as sa

from strongroom.db import core
from strongroom.db.models import CheckpointModel, PlanModel
from strongroom.objects.status import CheckpointStatus


@dataclasses.dataclass(frozen=True)
class PlanRecovery:
    """A live plan and its newest available checkpoint in the plan's provider (None: it has none)."""

    plan_id: str
    project_id: str
    provider_id: str
    status: str
    created_at: _dt.datetime
    last_available_at: _dt.datetime | None
    #: ``extra_info`` of that checkpoint (what each resource's protect read and stored, under ``protected``).
    extra_info: dict[str, Any]


class StatsQueries(core.Core):
    def count_checkpoints(self) -> dict[tuple[str, str], int]:
        """How many catalogue rows each (provider_id, status) has."""
        model = CheckpointModel
        with self.session() as s:
            rows = s.execute(sa.select(model.provider_id, model.status, sa.func.count())
                             .group_by(model.provider_id, model.status)).all()
        return {(str(provider), str(status)): int(count) for provider, status, count in rows}

    def plan_recoveries(self) -> list[PlanRecovery]:
        """Every live plan with its newest available checkpoint in its own provider (copies elsewhere do not
        count: the plan is restored from its provider's bank)."""
        cp, plan = CheckpointModel, PlanModel
        available = CheckpointStatus.AVAILABLE.value
        newest = (sa.select(cp.plan_id, cp.provider_id, sa.func.max(cp.created_at).label("at"))
                  .where(cp.status == available, cp.plan_id.is_not(None))
                  .group_by(cp.plan_id, cp.provider_id).subquery())
        stmt = (sa.select(plan.id, plan.project_id, plan.provider_id, plan.status, plan.created_at, newest.c.at,
                          cp.extra_info)
                .select_from(plan)
                .outerjoin(newest, sa.and_(newest.c.plan_id == plan.id, newest.c.provider_id == plan.provider_id))
                .outerjoin(cp, sa.and_(cp.plan_id == plan.id, cp.provider_id == plan.provider_id,
                                       cp.created_at == newest.c.at, cp.status == available))
                .where(plan.deleted_at.is_(None))
                .order_by(plan.id))
        out: dict[str, PlanRecovery] = {}
        with self.session() as s:
            for plan_id, project, provider, status, created, at, extra in s.execute(stmt):
                if plan_id not in out:  # two checkpoints of the same instant: either one
                    out[plan_id] = PlanRecovery(plan_id, project, provider, status, core.utc(created) or created,
                                                core.utc(at) if at is not None else None, dict(extra or {}))
        return list(out.values())
