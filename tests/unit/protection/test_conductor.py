"""Jobs on the real Redis jobboard, claimed by two workers' conductors, resumed after a worker stops.

Two protection managers (two owner ids, as two worker processes would have) share
a sqlite catalogue with taskflow's SQL persistence and one memory bank; jobs go
through the Redis server on 127.0.0.1:6379 (under CI it must be there).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strongroom import metrics, plugins
from strongroom.context import get_context
from strongroom.db.api import Database
from strongroom.objects.records import OperationLog, Plan, Resource, Restore
from strongroom.protection.checkpoint import CheckpointStore
from strongroom.protection.conductor import Conductor, JobBoard, JobSpec
from strongroom.protection.flows import FlowPersistence
from strongroom.protection.plugin import Operation, OperationContext, OperationKind, ProtectionPlugin
from strongroom.protection.providers import ProviderRegistry
from strongroom.protection.wiring import protection_manager
from tests.servers import unavailable
from tests.unit.protection.test_providers import GOOD, write

PROVIDER = "11111111-2222-3333-4444-555555555555"
CTX = get_context("proj")
REDIS = "redis://127.0.0.1:6379?db=0"


def _redis_or_skip() -> Any:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as err:
        unavailable(f"Redis on 127.0.0.1:6379 unreachable: {err}")
    return client


@pytest.fixture
def namespace() -> Iterator[str]:
    client = _redis_or_skip()
    name = f"strongroom-test-{uuid.uuid4().hex[:8]}"
    yield name
    for key in client.scan_iter(f"{name}*"):
        client.delete(key)
    client.close()


class Worker:
    """One protection worker: manager, jobboard and conductor, as ``strongroom-protection`` wires them."""

    def __init__(self, name: str, db: Database, registry: ProviderRegistry, url: str, namespace: str,
                 capacity: int = 2, claim_expiry: float = 3.0) -> None:
        self.persistence = FlowPersistence(url)
        self.board = JobBoard(REDIS, namespace, self.persistence)
        self.manager = protection_manager(db, registry, host=name, owner_id=f"owner-{name}", flow_workers=2,
                                         persistence=self.persistence, board=self.board)
        self.conductor = Conductor(self.board, self.manager.jobs.run_claimed, who=self.manager.owner_id,
                                   capacity=capacity, claim_expiry=claim_expiry, poll_interval=0.1)

    def start(self) -> None:
        self.conductor.start()

    def die(self) -> None:
        """What SIGKILL does to the jobboard: no more claims, no more extensions."""
        self.conductor._stop_claiming.set()
        self.conductor._stop.set()

    def close(self) -> None:
        self.conductor.stop(wait=5)
        self.manager.stop(wait=False)
        self.board.close()
        self.persistence.close()


@pytest.fixture
def cluster(tmp_path: Path, namespace: str) -> Iterator[tuple[Worker, Worker]]:
    url = f"sqlite:///{tmp_path / 'meta.sqlite'}"
    db = Database(url)
    db.sync()
    registry = ProviderRegistry.load(str(write(tmp_path, GOOD)), str(tmp_path))
    workers = (Worker("worker-a", db, registry, url, namespace), Worker("worker-b", db, registry, url, namespace))
    yield workers
    for worker in workers:
        worker.close()
    db.dispose()


def wait_status(db: Database, cid: str, statuses: set[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = db.get_checkpoint(cid).status
        if status in statuses:
            return status
        time.sleep(0.05)
    raise AssertionError(f"checkpoint {cid} did not reach {statuses}: {db.get_checkpoint(cid).status}")


def ended_log(db: Database, cid: str, timeout: float = 30) -> OperationLog:
    """The run's one operation log once its end is written (a moment after the checkpoint's status)."""
    deadline = time.monotonic() + timeout
    while True:
        [log] = db.list_operation_logs(None, filters={"checkpoint_id": cid})
        if log.ended_at is not None or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def test_jobs_posted_by_one_worker_are_spread_over_both(cluster: tuple[Worker, Worker]) -> None:
    a, b = cluster
    backend = a.manager.registry.get(PROVIDER).block_backend("memory")
    plans = []
    for i in range(6):
        volume = backend.create_volume(1 << 20, name=f"v{i}")
        with backend.writing_volume(volume.id) as writer:
            writer.write(0, os.urandom(300_000))
        plans.append(a.manager.db.create_plan(Plan(
            id=f"plan-{i}", name=f"p{i}", provider_id=PROVIDER, project_id="proj",
            resources=[Resource(id=volume.id, type="OS::Cinder::Volume", name=volume.name)])))
    cids = [a.manager.protect(CTX, plan.to_dict(), PROVIDER, {})["id"] for plan in plans]  # all posted by a
    a.start()
    b.start()
    for cid in cids:
        assert wait_status(a.manager.db, cid, {"available", "error"}) == "available"
    hosts = {log.host for cid in cids for log in a.manager.db.list_operation_logs(None, filters={"checkpoint_id": cid})}
    assert hosts == {"worker-a", "worker-b"}
    store = CheckpointStore(a.manager.registry.get(PROVIDER).bank)
    assert {store.read(cid).owner_id for cid in cids} == {"owner-worker-a", "owner-worker-b"}
    assert not a.manager.registry.get(PROVIDER).bank.list("indices/active/")

    # A restore and a delete go the same way.
    restore = a.manager.db.create_restore(Restore(id="r1", project_id="proj", provider_id=PROVIDER,
                                                  checkpoint_id=cids[0],
                                                  parameters={"OS::Cinder::Volume": {"restore_name": "back"}}))
    a.manager.restore(CTX, restore.id)
    deadline = time.monotonic() + 30
    while a.manager.db.get_restore("r1").status == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert a.manager.db.get_restore("r1").status == "success"
    b.manager.delete_checkpoint(CTX, PROVIDER, cids[1])
    assert wait_status(a.manager.db, cids[1], {"deleted", "error-deleting"}) == "deleted"


class Stall(Operation):
    """The first attempt of ``on_main`` hangs (its worker is about to die); a resumed one goes through."""

    attempts: list[str] = []
    release = threading.Event()

    def on_main(self, ctx: OperationContext) -> None:
        Stall.attempts.append(ctx.checkpoint_id)
        ctx.section.put("data/part", b"written by every attempt")
        if len(Stall.attempts) == 1:
            assert Stall.release.wait(60)
        ctx.result["attempt"] = len(Stall.attempts)


class StallPlugin(ProtectionPlugin):
    supported_resource_types = ("OS::Cinder::Volume",)

    def get_operation(self, kind: OperationKind, resource: Resource) -> Operation:
        return Stall() if kind == OperationKind.PROTECT else Operation()


def test_a_dead_workers_job_is_resumed_by_another_and_the_dead_one_never_publishes(
        tmp_path: Path, namespace: str) -> None:
    plugins.register_test_plugin(plugins.PROTECTIONS, "stall", StallPlugin)
    Stall.attempts, Stall.release = [], threading.Event()
    url = f"sqlite:///{tmp_path / 'meta.sqlite'}"
    db = Database(url)
    db.sync()
    conf = GOOD.replace("plugin = volume", "plugin = stall").replace("[volume]", "[stall]").replace(
        "block_backend = memory\nchunk_size = 65536\n", "")
    registry = ProviderRegistry.load(str(write(tmp_path, conf)), str(tmp_path))
    a = Worker("worker-a", db, registry, url, namespace)
    b = Worker("worker-b", db, registry, url, namespace)
    try:
        plan = db.create_plan(Plan(id="plan", name="p", provider_id=PROVIDER, project_id="proj",
                                   resources=[Resource(id="vol", type="OS::Cinder::Volume", name="vol")]))
        cid = str(a.manager.protect(CTX, plan.to_dict(), PROVIDER, {})["id"])
        a.start()
        deadline = time.monotonic() + 30
        while not Stall.attempts and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Stall.attempts == [cid], "worker a never started the job"
        a.die()  # its claim is no longer extended
        b.start()
        status = wait_status(db, cid, {"available", "error"}, timeout=60)
        assert status == "available", db.get_checkpoint(cid).status_reason
        assert len(Stall.attempts) == 2
        store = CheckpointStore(registry.get(PROVIDER).bank)
        assert store.read(cid).owner_id == "owner-worker-b"
        log = ended_log(db, cid)
        assert log.host == "worker-b" and log.extra_info["resumed"] is True and log.status == "available"
        # The "dead" worker wakes up and finishes its hook: it must not publish or record anything.
        Stall.release.set()
        time.sleep(1.0)
        assert store.read(cid).status == "available" and store.read(cid).owner_id == "owner-worker-b"
        assert db.get_checkpoint(cid).status == "available"
        assert not registry.get(PROVIDER).bank.list("indices/active/")
    finally:
        Stall.release.set()
        a.close()
        b.close()
        db.dispose()
        plugins.unregister_test_plugin(plugins.PROTECTIONS, "stall")


def test_the_backlog_counts_unclaimed_and_claimed_jobs(tmp_path: Path, namespace: str) -> None:
    """What ``strongroom_jobboard_jobs`` shows: jobs waiting for a worker, and jobs a worker holds."""
    persistence = FlowPersistence(f"sqlite:///{tmp_path / 'flows.sqlite'}")
    board = JobBoard(REDIS, namespace, persistence)
    try:
        assert board.backlog() == (0, 0)
        for n in range(3):
            board.post(JobSpec(OperationKind.PROTECT, PROVIDER, f"cp-{n}", f"log-{n}", {}))
        assert board.backlog() == (3, 0)
        job = next(iter(board.board.iterjobs(ensure_fresh=True)))
        board.board.claim(job, "worker-a")
        assert board.backlog() == (2, 1)
        family = next(iter(metrics.JobBoardCollector(board.backlog).collect()))
        assert {s.labels["state"]: s.value for s in family.samples} == {"unclaimed": 2, "claimed": 1}
    finally:
        board.close()
        persistence.close()
