"""Initial schema: plans, resources, checkpoints, restores, operation_logs, services.

Revision ID: 0001_initial
Revises:
Create Date: 2026-01-01 00:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def _datetime() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    # Naive UTC; microseconds on MariaDB/MySQL (DATETIME(6)).
    return sa.DateTime(timezone=False).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _long_text() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def _timestamps() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("created_at", _datetime(), nullable=False),
        sa.Column("updated_at", _datetime(), nullable=False),
    ]


# InnoDB and utf8mb4 on MySQL/MariaDB (ignored elsewhere).
_TABLE_KW: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4",
                             "mariadb_engine": "InnoDB", "mariadb_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("provider_id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        *_timestamps(),
        sa.Column("deleted_at", _datetime(), nullable=True),
        **_TABLE_KW,
    )
    op.create_index("ix_plans_project_id", "plans", ["project_id"])

    op.create_table(
        "resources",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("plan_id", sa.String(36),
                  sa.ForeignKey("plans.id", ondelete="CASCADE", name="fk_resources_plan_id"), nullable=False),
        sa.Column("resource_id", sa.String(255), nullable=False),
        sa.Column("resource_type", sa.String(255), nullable=False),
        sa.Column("resource_name", sa.String(255), nullable=False),
        sa.Column("extra_info", sa.JSON(), nullable=False),
        sa.UniqueConstraint("plan_id", "resource_type", "resource_id", name="uq_resources_plan_type_id"),
        **_TABLE_KW,
    )

    op.create_table(
        "checkpoints",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("provider_id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("plan_id", sa.String(36), nullable=True),
        sa.Column("owner_id", sa.String(255), nullable=True),
        sa.Column("protection_plan", sa.JSON(), nullable=False),
        sa.Column("resource_graph", _long_text(), nullable=False),
        sa.Column("extra_info", sa.JSON(), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("bytes_total", sa.BigInteger(), nullable=False),
        sa.Column("bytes_done", sa.BigInteger(), nullable=False),
        *_timestamps(),
        **_TABLE_KW,
    )
    op.create_index("ix_checkpoints_provider_project_created", "checkpoints",
                    ["provider_id", "project_id", "created_at"])
    op.create_index("ix_checkpoints_plan_id", "checkpoints", ["plan_id"])
    op.create_index("ix_checkpoints_status", "checkpoints", ["status"])

    op.create_table(
        "restores",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("provider_id", sa.String(36), nullable=False),
        sa.Column("checkpoint_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("restore_target", sa.String(255), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("resources_status", sa.JSON(), nullable=False),
        sa.Column("resources_reason", sa.JSON(), nullable=False),
        sa.Column("extra_info", sa.JSON(), nullable=False),
        *_timestamps(),
        **_TABLE_KW,
    )
    op.create_index("ix_restores_project_kind_created", "restores", ["project_id", "kind", "created_at"])
    op.create_index("ix_restores_checkpoint_id", "restores", ["checkpoint_id"])

    op.create_table(
        "operation_logs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("operation_type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("provider_id", sa.String(36), nullable=True),
        sa.Column("checkpoint_id", sa.String(36), nullable=True),
        sa.Column("plan_id", sa.String(36), nullable=True),
        sa.Column("restore_id", sa.String(36), nullable=True),
        sa.Column("scheduled_operation_id", sa.String(36), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("error_info", _long_text(), nullable=True),
        sa.Column("extra_info", sa.JSON(), nullable=False),
        sa.Column("started_at", _datetime(), nullable=True),
        sa.Column("ended_at", _datetime(), nullable=True),
        *_timestamps(),
        **_TABLE_KW,
    )
    op.create_index("ix_operation_logs_project_created", "operation_logs", ["project_id", "created_at"])
    op.create_index("ix_operation_logs_checkpoint_id", "operation_logs", ["checkpoint_id"])
    op.create_index("ix_operation_logs_plan_id", "operation_logs", ["plan_id"])

    op.create_table(
        "services",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("binary", sa.String(255), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("disabled", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("disabled_reason", sa.String(255), nullable=True),
        sa.Column("last_heartbeat", _datetime(), nullable=True),
        *_timestamps(),
        sa.UniqueConstraint("host", "binary", name="uq_services_host_binary"),
        **_TABLE_KW,
    )


def downgrade() -> None:
    for table in ("services", "operation_logs", "restores", "checkpoints", "resources", "plans"):
        op.drop_table(table)
