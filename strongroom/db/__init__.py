"""The metadata store: SQLAlchemy models, queries and alembic migrations.

Importing this package connects to nothing; :class:`Database` connects on first use.
"""

from strongroom.db.api import Database

__all__ = ["Database"]
