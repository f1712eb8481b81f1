"""Restores: progress and resume state get columns of their own (they were keys of extra_info).

``restores.progress`` holds ``{"bytes_total": ..., "bytes_done": ...}`` and ``restores.resume_state`` what
each resource's hook saved to resume an interrupted run; rows written before this revision have them under
``extra_info["progress"]`` / ``extra_info["resume"]``, which are moved into the new columns.

Revision ID: 0003_restore_progress
Revises: 0002_scheduling
Create Date: 2026-01-03 00:00:00
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003_restore_progress"
down_revision = "0002_scheduling"
branch_labels = None
depends_on = None

#: The new column, and the key of extra_info it takes its value from.
_MOVED = {"progress": "progress", "resume_state": "resume"}
_BATCH = 500

_RESTORES = sa.table(
    "restores",
    sa.column("id", sa.String(36)),
    sa.column("extra_info", sa.JSON()),
    *(sa.column(name, sa.JSON()) for name in _MOVED),
)


def _literal_default(bind: sa.Connection) -> bool:
    """An empty JSON object as a column default: sqlite, PostgreSQL and MariaDB take one, MySQL does not."""
    return bind.dialect.name not in ("mysql", "mariadb") or bool(getattr(bind.dialect, "is_mariadb", False))


def _each_restore(bind: sa.Connection, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
    """Apply ``change(row)`` to every restore, by pages of ids; it returns the values to write, or None."""
    columns = [_RESTORES.c.id, _RESTORES.c.extra_info, *(_RESTORES.c[name] for name in _MOVED)]
    last = ""
    while True:
        rows = bind.execute(sa.select(*columns).where(_RESTORES.c.id > last)
                            .order_by(_RESTORES.c.id).limit(_BATCH)).mappings().all()
        for row in rows:
            values = change(dict(row))
            if values is not None:
                bind.execute(sa.update(_RESTORES).where(_RESTORES.c.id == row["id"]).values(**values))
        if len(rows) < _BATCH:
            return
        last = rows[-1]["id"]


def _to_columns(row: dict[str, Any]) -> dict[str, Any] | None:
    extra = row["extra_info"] if isinstance(row["extra_info"], dict) else {}
    if not any(key in extra for key in _MOVED.values()):
        return None
    rest = {k: v for k, v in extra.items() if k not in _MOVED.values()}
    moved = {column: extra.get(key) for column, key in _MOVED.items()}
    return {"extra_info": rest, **{c: v if isinstance(v, dict) else {} for c, v in moved.items()}}


def _to_extra_info(row: dict[str, Any]) -> dict[str, Any] | None:
    moved = {key: row[column] for column, key in _MOVED.items() if row[column]}
    if not moved:
        return None
    extra = row["extra_info"] if isinstance(row["extra_info"], dict) else {}
    return {"extra_info": {**extra, **moved}}


def upgrade() -> None:
    bind = op.get_bind()
    literal = _literal_default(bind)
    for name in _MOVED:
        op.add_column("restores", sa.Column(name, sa.JSON(), nullable=not literal,
                                            server_default=sa.text("'{}'") if literal else None))
    if not literal:  # MySQL: fill the new columns, then forbid NULL
        bind.execute(sa.update(_RESTORES).values(**{name: {} for name in _MOVED}))
        for name in _MOVED:
            op.alter_column("restores", name, existing_type=sa.JSON(), nullable=False)
    _each_restore(bind, _to_columns)


def downgrade() -> None:
    _each_restore(op.get_bind(), _to_extra_info)
    with op.batch_alter_table("restores") as batch:
        for name in _MOVED:
            batch.drop_column(name)
