"""Fixtures: the metadata stores of ``tests/unit/db`` (claiming is tested on sqlite, PostgreSQL and MariaDB)
and FakeKeystone."""

from tests.servers.fake_keystone import fake_keystone  # noqa: F401 - fixture
from tests.unit.db.conftest import Server, database, db, fresh_url, server  # noqa: F401 - fixtures
