"""Alembic environment of the Strongroom metadata store.

``strongroom.db.migration`` passes an open connection in ``config.attributes``;
the ``alembic`` command line (developers only) passes ``-x url=...``.
"""

from __future__ import annotations

from alembic import context

from strongroom.db import models
from strongroom.db.migration import VERSION_TABLE

config = context.config
target_metadata = models.Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database URL with: alembic -x url=<sqlalchemy url> ...")
    return url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata,
                          version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
        return

    from strongroom.db.api import Database

    database = Database(_url())
    try:
        with database.engine.connect() as conn:
            context.configure(connection=conn, target_metadata=target_metadata, version_table=VERSION_TABLE)
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()
    finally:
        database.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
