"""Quotas: per-project limits (``quotas``) and quota classes (``quota_classes``, whose ``default`` class gives
every project's defaults), for Karbor's ``/quotas`` and ``/quota_classes`` APIs.

A ``quotas`` row with a NULL ``hard_limit`` follows the defaults; creates of a counted resource lock their
project's row, so the count and the insert are one step (``doc/api.md``, Quotas).

Revision ID: 0005_quotas
Revises: 0004_checkpoint_copies
Create Date: 2026-12-03 00:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005_quotas"
down_revision = "0004_checkpoint_copies"
branch_labels = None
depends_on = None

_TABLE_KW: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4",
                             "mariadb_engine": "InnoDB", "mariadb_charset": "utf8mb4"}


def _timestamps() -> list[sa.Column]:  # type: ignore[type-arg]
    dt = sa.DateTime(timezone=False).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    return [sa.Column("created_at", dt, nullable=False), sa.Column("updated_at", dt, nullable=False)]


def upgrade() -> None:
    op.create_table(
        "quotas",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(255), nullable=False),
        sa.Column("hard_limit", sa.Integer(), nullable=True),
        *_timestamps(),
        sa.UniqueConstraint("project_id", "resource", name="uq_quotas_project_resource"),
        **_TABLE_KW,
    )
    op.create_table(
        "quota_classes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("class_name", sa.String(255), nullable=False),
        sa.Column("resource", sa.String(255), nullable=False),
        sa.Column("hard_limit", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.UniqueConstraint("class_name", "resource", name="uq_quota_classes_class_resource"),
        **_TABLE_KW,
    )


def downgrade() -> None:
    op.drop_table("quota_classes")
    op.drop_table("quotas")
