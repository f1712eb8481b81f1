"""Schema migrations (alembic), driven programmatically.

Our alembic version table is ``strongroom_alembic_version``: taskflow's tables
and its own alembic table live in the same database.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

VERSION_TABLE = "strongroom_alembic_version"
_HERE = os.path.dirname(os.path.abspath(__file__))
MIGRATIONS_DIR = os.path.join(_HERE, "migrations")


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An alembic ``Config`` for our migrations, optionally bound to an open connection."""
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS_DIR)
    cfg.set_main_option("version_table", VERSION_TABLE)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision shipped with this code."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"expected one migration head, found {heads}")
    return heads[0]


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (idempotent)."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def current(engine: sa.Engine) -> str | None:
    """The revision the database is at, or None when it has never been synced."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()
