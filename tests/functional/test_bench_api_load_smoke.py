"""The API load benchmark's short version: both targets, the embedded all-in-one and the deployed topology
(gunicorn, PostgreSQL, strongroom-protection over RabbitMQ), a few clients for two seconds per run.

It asserts what the benchmark's user relies on, never a timing: it runs to the end and exits 0 (no 5xx, no
request without an answer, every checkpoint available), every endpoint of both runs was measured and
answered 200, the CPU figures were read, and the deployed target's database is dropped afterwards.  The two
targets run side by side (their figures mean nothing here) to stay well under 30 s.
PostgreSQL or RabbitMQ unreachable: SKIP, or FAIL with ``CI=true``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.servers import require_port

pytestmark = pytest.mark.functional
ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN = os.environ.get("STRONGROOM_TEST_POSTGRESQL_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
READS = {"GET /plans", "GET /plans/{id}", "GET /checkpoints", "GET /checkpoints/{id}"}
WRITES = {"POST /plans", "POST /checkpoints"}


def _bench_databases() -> set[str]:
    admin = sa.create_engine(PG_ADMIN, poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            return set(conn.execute(sa.text(
                "SELECT datname FROM pg_database WHERE datname LIKE 'strongroom_bench_%'")).scalars())
    finally:
        admin.dispose()


def test_api_load_benchmark_smoke(tmp_path: Path) -> None:
    require_port("127.0.0.1", 5432, "PostgreSQL")
    require_port("127.0.0.1", 5672, "RabbitMQ")
    before = _bench_databases()
    runs = {}
    for target in ("embedded", "deployed"):
        runs[target] = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "bench_api_load.py"), "--target", target,
             "--duration", "2", "--clients", "4", "--processes", "1", "--seed-checkpoints", "2",
             "--max-checkpoints", "4", "--postgresql-url", PG_ADMIN, "--bench-dir", str(tmp_path / target)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    for target, proc in runs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{target}:\n{out[-4000:]}"

        report = (tmp_path / target / "api-load.md").read_text()
        assert "## reads" in report and "## mixed" in report and f"{target} p99 ms" in report
        figures = json.loads((tmp_path / target / "api-load.json").read_text())["targets"][target]
        reads, mixed = figures["reads"], figures["mixed"]
        assert set(reads["endpoints"]) == READS and set(mixed["endpoints"]) == READS | WRITES
        for run in (reads, mixed):
            for name, endpoint in run["endpoints"].items():
                assert endpoint["requests"] > 0 and set(endpoint["statuses"]) == {"200"}, (target, name, endpoint)
            assert run["all"]["p99_ms"] >= run["all"]["p50_ms"] > 0
            assert run["cpu_ms_per_request"]["api"] > 0 and run["cpu_ms_per_request"]["clients"] > 0
            assert run["fives"] == 0 and run["unanswered"] == 0
        assert set(mixed["checkpoints_at_end"]) == {"available"}
        assert mixed["checkpoints_at_end"]["available"] >= 3  # the 2 seeded and at least one made under load
        if target == "deployed":
            assert "gunicorn" in figures["description"] and reads["cpu_ms_per_request"]["protection"] >= 0
    assert _bench_databases() == before  # the deployed target dropped the database it made
