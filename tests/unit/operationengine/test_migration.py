"""0002_scheduling upgrades a database that already holds plans, and can be undone."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from strongroom.db import drivers, migration
from strongroom.db.api import Database
from tests.unit.operationengine.fakes import add_plan

pytestmark = pytest.mark.db


def test_upgrade_from_0001_keeps_plans_and_downgrade_removes_only_scheduling(fresh_url: str) -> None:
    db = Database(fresh_url)
    try:
        write = db.engine.execution_options(**{drivers.WRITE_OPTION: True})
        migration.upgrade(write, "0001_initial")
        plan = add_plan(db)
        migration.upgrade(write, "0002_scheduling")
        assert db.version() == "0002_scheduling"
        assert db.get_plan(plan.id).name == plan.name
        with write.begin() as conn:
            command.downgrade(migration.alembic_config(conn), "0001_initial")
        tables = set(sa.inspect(db.engine).get_table_names())
        assert "plans" in tables and not tables & {"triggers", "scheduled_operations", "scheduled_fires"}
        assert db.version() == "0001_initial"
    finally:
        db.dispose()
