"""Scheduling: triggers, scheduled_operations and scheduled_fires (planned runs, claimed once, then logs).

Revision ID: 0002_scheduling
Revises: 0001_initial
Create Date: 2026-01-02 00:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002_scheduling"
down_revision = "0001_initial"
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


_TABLE_KW: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4",
                             "mariadb_engine": "InnoDB", "mariadb_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "triggers",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        *_timestamps(),
        **_TABLE_KW,
    )
    op.create_index("ix_triggers_project_id", "triggers", ["project_id"])

    op.create_table(
        "scheduled_operations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("operation_type", sa.String(32), nullable=False),
        sa.Column("trigger_id", sa.String(36),
                  sa.ForeignKey("triggers.id", name="fk_scheduled_operations_trigger_id"), nullable=False),
        sa.Column("plan_id", sa.String(36), nullable=False),
        sa.Column("provider_id", sa.String(36), nullable=False),
        sa.Column("operation_definition", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("trust_id", sa.String(255), nullable=True),
        sa.Column("planned_until", _datetime(), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        *_timestamps(),
        **_TABLE_KW,
    )
    op.create_index("ix_scheduled_operations_project_id", "scheduled_operations", ["project_id"])
    op.create_index("ix_scheduled_operations_plan_id", "scheduled_operations", ["plan_id"])
    op.create_index("ix_scheduled_operations_trigger_id", "scheduled_operations", ["trigger_id"])
    op.create_index("ix_scheduled_operations_enabled_planned", "scheduled_operations",
                    ["enabled", "planned_until"])

    op.create_table(
        "scheduled_fires",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("operation_id", sa.String(36),
                  sa.ForeignKey("scheduled_operations.id", ondelete="CASCADE",
                                name="fk_scheduled_fires_operation_id"), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("fire_time", _datetime(), nullable=False),
        sa.Column("window_end", _datetime(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("claim_token", sa.String(36), nullable=True),
        sa.Column("claim_expires_at", _datetime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("triggered_at", _datetime(), nullable=True),
        sa.Column("started_at", _datetime(), nullable=True),
        sa.Column("ended_at", _datetime(), nullable=True),
        sa.Column("checkpoint_id", sa.String(36), nullable=True),
        sa.Column("error_info", _long_text(), nullable=True),
        sa.Column("extra_info", sa.JSON(), nullable=False),
        *_timestamps(),
        sa.UniqueConstraint("operation_id", "fire_time", name="uq_scheduled_fires_operation_time"),
        **_TABLE_KW,
    )
    op.create_index("ix_scheduled_fires_state_fire_time", "scheduled_fires", ["state", "fire_time"])
    op.create_index("ix_scheduled_fires_state_claim_expires", "scheduled_fires", ["state", "claim_expires_at"])


def downgrade() -> None:
    for table in ("scheduled_fires", "scheduled_operations", "triggers"):
        op.drop_table(table)
