"""Checkpoints: the primary key becomes (id, provider_id), so a copy in a second provider's bank is a row of its own.

A copy keeps its checkpoint's id in the target bank (``doc/copy.md``); its status, lease, retention and
deletion are the target's, so the catalogue holds one row per (checkpoint, provider).  Rows written before this
revision are each the only row of their id, and keep it.  Downgrading refuses while any id has two rows.

Revision ID: 0004_checkpoint_copies
Revises: 0003_restore_progress
Create Date: 2026-12-03 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_checkpoint_copies"
down_revision = "0003_restore_progress"
branch_labels = None
depends_on = None

PK_NAME = "pk_checkpoints"


def _set_primary_key(columns: list[str]) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":  # no ALTER of a primary key: the table is rebuilt
        # Upgrading, the new key's columns are given as they will be (sqlalchemy warns when a reflected primary
        # key is replaced by a wider one); downgrading, a column cannot be given as leaving it.
        keyed = tuple(sa.Column(name, sa.String(36), nullable=False, primary_key=True) for name in columns)
        with op.batch_alter_table("checkpoints", recreate="always",
                                  reflect_args=keyed if len(columns) > 1 else ()) as batch:
            batch.create_primary_key(PK_NAME, columns)
        return
    current = sa.inspect(bind).get_pk_constraint("checkpoints").get("name")
    op.drop_constraint(current or PK_NAME, "checkpoints", type_="primary")
    op.create_primary_key(PK_NAME, "checkpoints", columns)


def upgrade() -> None:
    _set_primary_key(["id", "provider_id"])


def downgrade() -> None:
    table = sa.table("checkpoints", sa.column("id", sa.String(36)))
    shared = op.get_bind().execute(sa.select(table.c.id).group_by(table.c.id)
                                   .having(sa.func.count() > 1).limit(1)).scalar_one_or_none()
    if shared is not None:
        raise RuntimeError(f"checkpoint {shared} has copies in several providers: delete them before downgrading")
    _set_primary_key(["id"])
