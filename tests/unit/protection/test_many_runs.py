"""Many protects in a row in one embedded service: what each run made is gone once it ends.

A service protects every night for months without a restart, so whatever a run leaves behind becomes the
service's memory growing run over run.  These count live objects (not RSS, which is noise at this size):
taskflow's engines and saved flows, SQLAlchemy tables (taskflow's SQL persistence, which a jobboard
worker's runs use, once built three per connection, kept by SQLAlchemy's compiled cache) and the RPC
server's threads.
"""

from __future__ import annotations

import collections
import gc
import os
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import pytest
import sqlalchemy
from taskflow import task
from taskflow.engines.action_engine import engine as tf_engine
from taskflow.patterns import graph_flow
from taskflow.persistence import models

from strongroom import rpc
from strongroom.protection.flows import FlowPersistence, run_flow
from tests.unit.protection.embedded import CHUNK, Embedded, embedded

pytestmark = pytest.mark.timeout(180)

#: What one run creates and must not outlive it.
PER_RUN = {"Table": sqlalchemy.Table, "engine": tf_engine.ActionEngine, "LogBook": models.LogBook,
           "FlowDetail": models.FlowDetail, "AtomDetail": models.AtomDetail}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Embedded]:
    with embedded(tmp_path) as running:
        yield running


def live() -> dict[str, int]:
    gc.collect()
    counts = collections.Counter[str]()
    for obj in gc.get_objects():
        for name, kind in PER_RUN.items():
            if isinstance(obj, kind):
                counts[name] += 1
    return {name: counts[name] for name in PER_RUN}


def protect_changed(stack: Embedded, plan: str, name: str, run: int) -> None:
    with open(stack.volumes / name, "r+b") as fh:
        fh.seek((run % 4) * CHUNK)
        fh.write(os.urandom(4096))
    checkpoint = stack.protected(plan)
    assert checkpoint["status"] == "available", checkpoint


def test_protects_in_a_row_leave_no_engine_flow_or_table_behind(stack: Embedded) -> None:
    name = stack.volume("disk.img", os.urandom(3 * CHUNK))
    plan = stack.plan(name)
    for run in range(2):  # warm up: the first runs fill module caches and lazily built parts
        protect_changed(stack, plan, name, run)
    before = live()
    for run in range(2, 8):
        protect_changed(stack, plan, name, run)
    after = live()
    assert after == before, f"six more protects left behind {after} (was {before})"


class Step(task.Task):  # type: ignore[misc]
    def execute(self) -> int:
        return 1


def test_saved_flows_leave_no_tables_behind(tmp_path: Path) -> None:
    """A jobboard worker saves every run's flow (taskflow's SQL persistence): runs in a row build no tables."""
    persistence = FlowPersistence(f"sqlite:///{tmp_path / 'flows.db'}")
    with futures.ThreadPoolExecutor(2) as pool:
        def one_run(n: int) -> None:
            flow = graph_flow.Flow(f"run-{n}")
            flow.add(Step(name=f"a-{n}"), Step(name=f"b-{n}"))
            assert run_flow(flow, pool, persistence, f"protect-{n}", describe=str) == {f"a-{n}": 1, f"b-{n}": 1}

        one_run(0)
        before = live()
        for n in range(1, 6):
            one_run(n)
        after = live()
    persistence.close()
    assert after == before, f"five more saved flows left behind {after} (was {before})"


def test_the_rpc_server_keeps_a_bounded_pool_of_threads(stack: Embedded) -> None:
    plan = stack.plan(stack.volume("disk.img", os.urandom(CHUNK)))
    checkpoint = stack.protected(plan)
    for _ in range(3 * rpc.RPC_SERVER_THREADS):  # each answered by the protection service over RPC
        assert stack.call("GET", stack.checkpoint_url(checkpoint["id"])).status_code == 200
    workers = [t for t in threading.enumerate() if type(t).__name__ == "ThreadWorker"]
    assert 0 < len(workers) <= rpc.RPC_SERVER_THREADS
