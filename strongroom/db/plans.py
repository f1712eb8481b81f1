"""Plans and their resources: the plan aggregate of the metadata store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.sql.elements import ColumnElement

from strongroom import exceptions
from strongroom.db import core, pagination, quotas
from strongroom.db.models import PlanModel, ResourceModel
from strongroom.objects.records import Plan, Resource
from strongroom.objects.status import PlanStatus, check_transition

PLAN_SORT = core.sortable(PlanModel, "id", "name", "status", "provider_id", "project_id", "created_at", "updated_at")
PLAN_FILTERS = ("name", "status", "provider_id")
PLAN_UPDATABLE = frozenset({"name", "description", "status", "parameters", "resources"})

_PLANS = cast(sa.Table, PlanModel.__table__)
_RESOURCES = cast(sa.Table, ResourceModel.__table__)
#: Plan ids per ``IN (...)`` of a list's resources query (as SQLAlchemy's selectin loader chunks them).
_IN_CHUNK = 500

#: A deleted plan is kept (soft-deleted) but is found by no query.
_LIVE: Sequence[ColumnElement[bool]] = (PlanModel.deleted_at.is_(None),)


def _resource_models(plan_id: str, resources: Sequence[Resource | Mapping[str, Any]]) -> list[ResourceModel]:
    out: list[ResourceModel] = []
    seen: set[str] = set()
    for item in resources:
        res = item if isinstance(item, Resource) else Resource.from_dict(dict(item))
        if res.key in seen:
            raise exceptions.InvalidInput(reason=f"resource {res.key} is listed twice in plan {plan_id}")
        seen.add(res.key)
        out.append(ResourceModel(resource_id=res.id, resource_type=res.type, resource_name=res.name or "",
                                 extra_info=dict(res.extra_info or {})))
    return out


def _plan_record(model: PlanModel) -> Plan:
    resources = [Resource(id=r.resource_id, type=r.resource_type, name=r.resource_name,
                          extra_info=dict(r.extra_info or {})) for r in model.resources]
    return core.to_record(Plan, model, resources=resources)


def _load_plan(session: orm.Session, plan_id: str, project_id: str | None, *,
               for_update: bool = False) -> PlanModel:
    # Read alone, the plan and its resources come in one query (a join); locked, in two (FOR UPDATE cannot
    # lock the nullable side of an outer join).
    load = orm.selectinload(PlanModel.resources) if for_update else orm.joinedload(PlanModel.resources)
    return core.load(session, PlanModel, plan_id, kind="Plan", project_id=project_id, scope=_LIVE,
                     for_update=for_update, options=[load])


class PlanQueries(core.Core):
    """Plans: created by id, soft-deleted, scoped to their project."""

    def create_plan(self, plan: Plan, *, enforce_quota: bool = False) -> Plan:
        """Insert ``plan`` (its id is chosen by the caller); Conflict if the id is taken.

        ``enforce_quota`` (a user's create, not a rebuilt plan): QuotaExceeded when the project has its ``plans``
        limit in use, counted in the insert's transaction (:mod:`.quotas`)."""
        now = self.now()
        status = core.status_value("plan", plan.status, PlanStatus)

        def insert(s: orm.Session) -> Plan:
            if enforce_quota:
                quotas.reserve(self, s, plan.project_id, quotas.PLANS)
            model = PlanModel(**core.columns(PlanModel, plan, skip=("status", "created_at", "updated_at")),
                              status=status, created_at=core.utc(plan.created_at) or now,
                              updated_at=core.utc(plan.updated_at) or core.utc(plan.created_at) or now)
            model.description = model.description or ""
            model.parameters = dict(plan.parameters or {})
            model.resources = _resource_models(plan.id, plan.resources)
            core.insert(s, model, "Plan", plan.id)
            return _plan_record(model)

        if enforce_quota:
            quotas.ensure_row(self, plan.project_id, quotas.PLANS)
        return self.write(insert)

    def get_plan(self, plan_id: str, project_id: str | None = None) -> Plan:
        with self.session() as s:
            return _plan_record(_load_plan(s, plan_id, project_id))

    def list_plans(self, project_id: str | None, *, filters: Mapping[str, Any] | None = None,
                   marker: str | None = None, limit: int | None = None,
                   sort: Sequence[tuple[str, str]] = core.DEFAULT_SORT) -> list[Plan]:
        """Plans of ``project_id`` (None: every project), filtered by name, status, provider_id."""
        conds = core.filter_conditions(PlanModel, filters, PLAN_FILTERS)
        scope = [*_LIVE, *core.project_scope(PlanModel, project_id)]
        # Plain rows, not ORM objects: building 20 plans and their resources as mapped instances (identity
        # map, instance state, the selectin loader) was most of a list request's time.  Same two queries.
        with self.session() as s:
            stmt = pagination.paginate(s, sa.select(*_PLANS.c).where(*scope, *conds), id_column=_PLANS.c.id,
                                       scope=scope, sort=sort, allowed_sort=PLAN_SORT, marker=marker, limit=limit)
            rows = s.execute(stmt).all()
            resources: dict[str, list[Resource]] = {}
            ids = [row.id for row in rows]
            for start in range(0, len(ids), _IN_CHUNK):
                query = (sa.select(_RESOURCES).where(_RESOURCES.c.plan_id.in_(ids[start:start + _IN_CHUNK]))
                         .order_by(_RESOURCES.c.id))  # the relationship's order
                for r in s.execute(query):
                    resources.setdefault(r.plan_id, []).append(
                        Resource(id=r.resource_id, type=r.resource_type, name=r.resource_name,
                                 extra_info=dict(r.extra_info or {})))
        return [core.row_record(Plan, row, resources=resources.get(row.id, [])) for row in rows]

    def update_plan(self, plan_id: str, values: Mapping[str, Any], project_id: str | None = None) -> Plan:
        """Change name, description, status, parameters or resources (a list that replaces all)."""
        core.check_keys("plan", values, PLAN_UPDATABLE)
        with self.session(write=True) as s:
            model = _load_plan(s, plan_id, project_id, for_update=True)
            for key, value in values.items():
                if key == "status":
                    target = core.status_value("plan", value, PlanStatus)
                    check_transition("Plan", plan_id, model.status, target, PlanStatus)
                    model.status = target
                elif key == "resources":
                    new_resources = _resource_models(plan_id, value or [])
                    model.resources.clear()
                    s.flush()  # delete before insert: the unique (plan, type, id) key
                    model.resources.extend(new_resources)
                elif key == "parameters":
                    model.parameters = dict(value or {})
                elif key == "description":
                    model.description = value or ""
                else:
                    setattr(model, key, value)
            model.updated_at = self.now()
            s.flush()
            return _plan_record(model)

    def delete_plan(self, plan_id: str, project_id: str | None = None) -> None:
        """Soft-delete a plan: it disappears from get and list."""
        with self.session(write=True) as s:
            model = _load_plan(s, plan_id, project_id, for_update=True)
            model.deleted_at = model.updated_at = self.now()
