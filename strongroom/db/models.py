"""SQLAlchemy models of the metadata store.

The schema itself is created by the alembic migrations in ``migrations/versions``;
these models describe it for queries.  ``tests/unit/db`` checks that both agree.

Timestamps are stored as naive UTC (``DATETIME(6)`` on MariaDB so that ordering
by ``created_at`` is meaningful below one second) and come back timezone-aware.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

ID_LEN = 36  # uuid4 as text
NAME_LEN = 255
PROJECT_LEN = 64
STATUS_LEN = 32

#: Text that may grow past 64 KiB (MariaDB's TEXT limit).
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


class UTCDateTime(sa.types.TypeDecorator[_dt.datetime]):
    """A datetime stored as naive UTC and returned timezone-aware (UTC).

    Naive values given by callers are taken to be UTC already.
    """

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime(timezone=False))

    def process_bind_param(self, value: _dt.datetime | None, dialect: Dialect) -> _dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, _dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is not None:
            value = value.astimezone(_dt.UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: _dt.datetime | None, dialect: Dialect) -> _dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=_dt.UTC)
        return value.astimezone(_dt.UTC)


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


class Base(DeclarativeBase):
    pass


class TimestampMixin:
    created_at: Mapped[_dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[_dt.datetime] = mapped_column(UTCDateTime(), nullable=False)


class PlanModel(TimestampMixin, Base):
    __tablename__ = "plans"

    id: Mapped[str] = mapped_column(sa.String(ID_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_LEN), nullable=False)
    description: Mapped[str] = mapped_column(sa.Text(), nullable=False, default="")
    provider_id: Mapped[str] = mapped_column(sa.String(ID_LEN), nullable=False)
    project_id: Mapped[str] = mapped_column(sa.String(PROJECT_LEN), nullable=False, index=True)
    status: Mapped[str] = mapped_column(sa.String(STATUS_LEN), nullable=False)
    parameters: Mapped[dict[str, Any]] = mapped_column(_json(), nullable=False)
    deleted_at: Mapped[_dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    resources: Mapped[list[ResourceModel]] = relationship(
        back_populates="plan", cascade="all, delete-orphan", order_by="ResourceModel.id",
        passive_deletes=True,
    )


class ResourceModel(Base):
    __tablename__ = "resources"
    __table_args__ = (
        sa.UniqueConstraint("plan_id", "resource_type", "resource_id", name="uq_resources_plan_type_id"),
    )

    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=True)
    plan_id: Mapped[str] = mapped_column(
        sa.String(ID_LEN), sa.ForeignKey("plans.id", ondelete="CASCADE", name="fk_resources_plan_id"),
        nullable=False,
    )
    resource_id: Mapped[str] = mapped_column(sa.String(NAME_LEN), nullable=False)
    resource_type: Mapped[str] = mapped_column(sa.String(NAME_LEN), nullable=False)
    resource_name: Mapped[str] = mapped_column(sa.String(NAME_LEN), nullable=False, default="")
    extra_info: Mapped[dict[str, Any]] = mapped_column(_json(), nullable=False)

    plan: Mapped[PlanModel] = relationship(back_populates="resources")


class CheckpointModel(TimestampMixin, Base):
    __tablename__ = "checkpoints"
    __table_args__ = (
        sa.Index("ix_checkpoints_provider_project_created", "provider_id", "project_id", "created_at"),
        sa.Index("ix_checkpoints_plan_id", "plan_id"),
        sa.Index("ix_checkpoints_status", "status"),
    )

    # (id, provider_id) since 0004_checkpoint_copies: a copy in another provider's bank keeps the checkpoint's id.
    id: Mapped[str] = mapped_column(sa.String(ID_LEN), primary_key=True)
    provider_id: Mapped[str] = mapped_column(sa.String(ID_LEN), primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(PROJECT_LEN), nullable=False)
    status: Mapped[str] = mapped_column(sa.String(STATUS_LEN), nullable=False)
    plan_id: Mapped[str | None] = mapped_column(sa.String(ID_LEN), nullable=True)
    owner_id: Mapped[str | None] = mapped_column(sa.String(NAME_LEN), nullable=True)
    protection_plan: Mapped[dict[str, Any]] = mapped_column(_json(), nullable=False)
    resource_graph: Mapped[str] = mapped_column(LongText, nullable=False)
    extra_info: Mapped[dict[str, Any]] = mapped_column(_json(), nullable=False)
    status_reason: Mapped[str | None] = mapped_column(sa.Text(), nullable=True)
    bytes_total: Mapped[int] = mapped_column(sa.BigInteger(), nullable=False, default=0)
    bytes_done: Mapped[int] = mapped_column(sa.BigInteger(), nullable=False, default=0)


class RestoreModel(TimestampMixin, Base):
    __tablename__ = "restores"
    __table_args__ = (
        sa.Index("ix_restores_project_kind_created", "project_id", "kind", "created_at"),
        sa.Index("ix_restores_checkpoint_id", "checkpoint_id"),
    )

    id: Mapped[str] = mapped_column(sa.String(ID_LEN), primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(PROJECT_LEN), nullable=False)
    provider_id: Mapped[str] = mapped_column(sa.String(ID_LEN), nullable=False)
    checkpoint_id: Mapped[str] = mapped_column(sa.String(ID_LEN), nullable=False)
    kind: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    restore_target: Mapped[str | None] = mapped_column(sa.String(NAME_LEN), nullable=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(_json(), nullable=False)
    status: Mapped[str] = mapped_column(sa.String(STATUS_LEN), nullable=False)
    resources_status: Mapped[dict[str, str]] = mapped_column(_json(), nullable=False)
    resources_reason: Mapped[dict[str, str]] = mapped_column(_json(), nullable=False)
    extra_info: Mapped[dict[str, Any]] = mapped_column(_json(), nullable=False)
    # Since 0003_restore_progress; the default fills them for rows imported from an older export.
    progress: Mapped[dict[str, Any]] = mapped_column(_json(), nullable=False, default=dict)
    resume_state: Mapped[dict[str, Any]] = mapped_column(_json(), nullable=False, default=dict)


class OperationLogModel(TimestampMixin, Base):
    __tablename__ = "operation_logs"
    __table_args__ = (
        sa.Index("ix_operation_logs_project_created", "project_id", "created_at"),
        sa.Index("ix_operation_logs_checkpoint_id", "checkpoint_id"),
        sa.Index("ix_operation_logs_plan_id", "plan_id"),
    )

    id: Mapped[str] = mapped_column(sa.String(ID_LEN), primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(PROJECT_LEN), nullable=False)
    operation_type: Mapped[str] = mapped_column(sa.String(STATUS_LEN), nullable=False)
    status: Mapped[str] = mapped_column(sa.String(STATUS_LEN), nullable=False)
    provider_id: Mapped[str | None] = mapped_column(sa.String(ID_LEN), nullable=True)
    checkpoint_id: Mapped[str | None] = mapped_column(sa.String(ID_LEN), nullable=True)
    plan_id: Mapped[str | None] = mapped_column(sa.String(ID_LEN), nullable=True)
    restore_id: Mapped[str | None] = mapped_column(sa.String(ID_LEN), nullable=True)
    scheduled_operation_id: Mapped[str | None] = mapped_column(sa.String(ID_LEN), nullable=True)
    host: Mapped[str | None] = mapped_column(sa.String(NAME_LEN), nullable=True)
    error_info: Mapped[str | None] = mapped_column(LongText, nullable=True)
    extra_info: Mapped[dict[str, Any]] = mapped_column(_json(), nullable=False)
    started_at: Mapped[_dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[_dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ServiceModel(TimestampMixin, Base):
    __tablename__ = "services"
    __table_args__ = (sa.UniqueConstraint("host", "binary", name="uq_services_host_binary"),)

    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(sa.String(NAME_LEN), nullable=False)
    binary: Mapped[str] = mapped_column(sa.String(NAME_LEN), nullable=False)
    topic: Mapped[str] = mapped_column(sa.String(NAME_LEN), nullable=False, default="")
    disabled: Mapped[bool] = mapped_column(sa.Boolean(create_constraint=False), nullable=False, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(NAME_LEN), nullable=True)
    last_heartbeat: Mapped[_dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


# -- scheduling (operation engine) ----------------------------------------------------------------------


class TriggerModel(TimestampMixin, Base):
    __tablename__ = "triggers"

    id: Mapped[str] = mapped_column(sa.String(ID_LEN), primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(PROJECT_LEN), nullable=False, index=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_LEN), nullable=False)
    type: Mapped[str] = mapped_column(sa.String(STATUS_LEN), nullable=False)
    properties: Mapped[dict[str, Any]] = mapped_column(_json(), nullable=False)


class ScheduledOperationModel(TimestampMixin, Base):
    __tablename__ = "scheduled_operations"
    __table_args__ = (
        sa.Index("ix_scheduled_operations_project_id", "project_id"),
        sa.Index("ix_scheduled_operations_plan_id", "plan_id"),
        sa.Index("ix_scheduled_operations_enabled_planned", "enabled", "planned_until"),
    )

    id: Mapped[str] = mapped_column(sa.String(ID_LEN), primary_key=True)
    project_id: Mapped[str] = mapped_column(sa.String(PROJECT_LEN), nullable=False)
    user_id: Mapped[str | None] = mapped_column(sa.String(NAME_LEN), nullable=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_LEN), nullable=False)
    description: Mapped[str] = mapped_column(sa.Text(), nullable=False, default="")
    operation_type: Mapped[str] = mapped_column(sa.String(STATUS_LEN), nullable=False)
    trigger_id: Mapped[str] = mapped_column(
        sa.String(ID_LEN), sa.ForeignKey("triggers.id", name="fk_scheduled_operations_trigger_id"),
        nullable=False, index=True)
    plan_id: Mapped[str] = mapped_column(sa.String(ID_LEN), nullable=False)
    provider_id: Mapped[str] = mapped_column(sa.String(ID_LEN), nullable=False)
    operation_definition: Mapped[dict[str, Any]] = mapped_column(_json(), nullable=False)
    enabled: Mapped[bool] = mapped_column(sa.Boolean(create_constraint=False), nullable=False, default=True)
    trust_id: Mapped[str | None] = mapped_column(sa.String(NAME_LEN), nullable=True)
    planned_until: Mapped[_dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    plan_version: Mapped[int] = mapped_column(sa.Integer(), nullable=False, default=0)


class ScheduledFireModel(TimestampMixin, Base):
    """One planned run; claimed by compare-and-set on ``version``; once claimed, the run's log."""

    __tablename__ = "scheduled_fires"
    __table_args__ = (
        sa.UniqueConstraint("operation_id", "fire_time", name="uq_scheduled_fires_operation_time"),
        sa.Index("ix_scheduled_fires_state_fire_time", "state", "fire_time"),
        sa.Index("ix_scheduled_fires_state_claim_expires", "state", "claim_expires_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(ID_LEN), primary_key=True)
    operation_id: Mapped[str] = mapped_column(
        sa.String(ID_LEN),
        sa.ForeignKey("scheduled_operations.id", ondelete="CASCADE", name="fk_scheduled_fires_operation_id"),
        nullable=False)
    project_id: Mapped[str] = mapped_column(sa.String(PROJECT_LEN), nullable=False)
    fire_time: Mapped[_dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    window_end: Mapped[_dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    state: Mapped[str] = mapped_column(sa.String(STATUS_LEN), nullable=False)
    owner: Mapped[str | None] = mapped_column(sa.String(NAME_LEN), nullable=True)
    claim_token: Mapped[str | None] = mapped_column(sa.String(ID_LEN), nullable=True)
    claim_expires_at: Mapped[_dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(sa.Integer(), nullable=False, default=0)
    version: Mapped[int] = mapped_column(sa.Integer(), nullable=False, default=0)
    triggered_at: Mapped[_dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    started_at: Mapped[_dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[_dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    checkpoint_id: Mapped[str | None] = mapped_column(sa.String(ID_LEN), nullable=True)
    error_info: Mapped[str | None] = mapped_column(LongText, nullable=True)
    extra_info: Mapped[dict[str, Any]] = mapped_column(_json(), nullable=False)


class QuotaModel(TimestampMixin, Base):
    """A project's limit for one resource (``plans``, ``checkpoints``).

    ``hard_limit`` NULL: the project follows the ``default`` quota class (or the ``[quota]`` options).  The row
    exists all the same once the project has created anything counted: creates lock it (``FOR UPDATE``) so
    that counting and inserting is one step per project.
    """

    __tablename__ = "quotas"
    __table_args__ = (sa.UniqueConstraint("project_id", "resource", name="uq_quotas_project_resource"),)

    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(sa.String(PROJECT_LEN), nullable=False)
    resource: Mapped[str] = mapped_column(sa.String(NAME_LEN), nullable=False)
    hard_limit: Mapped[int | None] = mapped_column(sa.Integer(), nullable=True)


class QuotaClassModel(TimestampMixin, Base):
    """A quota class's limit for one resource; the class ``default`` gives every project's defaults."""

    __tablename__ = "quota_classes"
    __table_args__ = (sa.UniqueConstraint("class_name", "resource", name="uq_quota_classes_class_resource"),)

    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=True)
    class_name: Mapped[str] = mapped_column(sa.String(NAME_LEN), nullable=False)
    resource: Mapped[str] = mapped_column(sa.String(NAME_LEN), nullable=False)
    hard_limit: Mapped[int] = mapped_column(sa.Integer(), nullable=False)


#: Every table, children first (the order in which rows can be deleted).
ALL_MODELS: tuple[type[Base], ...] = (
    ScheduledFireModel, ScheduledOperationModel, TriggerModel,
    ResourceModel, PlanModel, CheckpointModel, RestoreModel, OperationLogModel, ServiceModel,
    QuotaModel, QuotaClassModel,
)
