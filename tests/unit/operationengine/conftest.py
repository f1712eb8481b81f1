"""The metadata-store fixtures of ``tests/unit/db``: claiming is tested on sqlite, PostgreSQL and MariaDB."""

from tests.unit.db.conftest import Server, database, db, fresh_url, server  # noqa: F401 - fixtures
