"""The protection engine on real parts: memory bank, memory volumes, sqlite metadata, taskflow persistence."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom import exceptions, plugins
from strongroom.context import get_context
from strongroom.db.api import Database
from strongroom.objects.records import Plan, Resource, Restore
from strongroom.protection.checkpoint import CheckpointStore
from strongroom.protection.flows import SPECS, FlowPersistence, ResourceTracker, build_flow, run_flow
from strongroom.protection.graph import build_graph
from strongroom.protection.manager import ProtectionManager
from strongroom.protection.plugin import Operation, OperationContext, OperationKind, ProtectionPlugin
from strongroom.protection.providers import ProviderRegistry
from strongroom.protection.wiring import protection_manager
from strongroom.testing.flaky_block import Call, Fault, FaultKind, FlakyBlockBackend, Method, on
from tests.unit.protection.test_providers import GOOD, write

PROVIDER = "11111111-2222-3333-4444-555555555555"
CTX = get_context("proj")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[ProtectionManager]:
    registry = ProviderRegistry.load(str(write(tmp_path, GOOD)), str(tmp_path))
    url = f"sqlite:///{tmp_path / 'meta.sqlite'}"
    db = Database(url)
    db.sync()
    manager = protection_manager(db, registry, host="test", flow_workers=2,
                                persistence=FlowPersistence(url))
    yield manager
    manager.stop()
    db.dispose()


def plan_for(manager: ProtectionManager, *volume_ids: str) -> Plan:
    plan = Plan(id=f"plan-{'-'.join(volume_ids)}", name="p", provider_id=PROVIDER, project_id="proj",
                resources=[Resource(id=v, type="OS::Cinder::Volume", name=v) for v in volume_ids])
    return manager.db.create_plan(plan)


def make_volume(manager: ProtectionManager, name: str, data: bytes, size: int = 1 << 20) -> str:
    backend = manager.registry.get(PROVIDER).block_backend("memory")
    volume = backend.create_volume(size, name=name)
    with backend.writing_volume(volume.id) as writer:
        writer.write(0, data)
    return volume.id


def protect(manager: ProtectionManager, plan: Plan) -> str:
    record = manager.protect(CTX, plan.to_dict(), PROVIDER, {"k": "v"})
    manager.wait_idle()
    return str(record["id"])


def test_protect_restore_delete_keeps_shared_chunks(engine: ProtectionManager) -> None:
    data = os.urandom(300_000)
    plan = plan_for(engine, make_volume(engine, "v1", data))
    first, second = protect(engine, plan), protect(engine, plan)
    for cid in (first, second):
        assert engine.db.get_checkpoint(cid).status == "available"
    bank = engine.registry.get(PROVIDER).bank
    assert bank.list(f"indices/by-plan/{plan.id}/") and not bank.list("indices/active/")
    chunks = bank.list("projects/proj/chunks/")
    assert chunks

    engine.delete_checkpoint(CTX, PROVIDER, first)
    engine.wait_idle()
    assert engine.db.get_checkpoint(first).status == "deleted"
    assert bank.list("projects/proj/chunks/") == chunks  # still referenced by the second checkpoint
    assert CheckpointStore(bank).read(first).status == "deleted"

    restore = engine.db.create_restore(Restore(id="r1", project_id="proj", provider_id=PROVIDER,
                                               checkpoint_id=second,
                                               parameters={"OS::Cinder::Volume": {"restore_name": "back"}}))
    engine.restore(CTX, restore.id)
    engine.wait_idle()
    assert engine.db.get_restore("r1").status == "success"
    backend = engine.registry.get(PROVIDER).block_backend("memory")
    [restored] = [v for v in backend.list_volumes() if v.name == "back"]
    reader = backend.open_volume_reader(restored.id)
    with reader:
        assert reader.read(0, len(data)) == data

    engine.delete_checkpoint(CTX, PROVIDER, second)
    engine.wait_idle()
    assert bank.list("projects/proj/chunks/") == []

    # Deleting a deleted checkpoint again answers as the first delete did and changes nothing.
    logs = len(engine.db.list_operation_logs("proj"))
    before = engine.db.get_checkpoint(first)
    engine.delete_checkpoint(CTX, PROVIDER, first)
    engine.wait_idle()
    assert engine.db.get_checkpoint(first) == before and len(engine.db.list_operation_logs("proj")) == logs
    assert CheckpointStore(bank).read(first).status == "deleted"


def test_failed_protect_is_never_available(engine: ProtectionManager, monkeypatch: pytest.MonkeyPatch) -> None:
    volume_id = make_volume(engine, "v1", b"x" * 1000)
    plan = plan_for(engine, volume_id)
    provider = engine.registry.get(PROVIDER)

    def pool_full(call: Call) -> Exception:  # the backend fails mid-run, after the checkpoint was accepted
        return exceptions.BlockError(reason=f"snapshot of {call.target} failed: pool is full")

    flaky = FlakyBlockBackend(provider.block_backend("memory"),
                              [Fault(on("create_snapshot"), kind=FaultKind.PERMANENT, error=pool_full)])
    monkeypatch.setitem(provider._backends, "memory", flaky)  # what the volume plugin looks up by name
    cid = protect(engine, plan)
    assert flaky.injected == {Method.CREATE_SNAPSHOT: 1}
    record = engine.db.get_checkpoint(cid)
    assert record.status == "error"
    assert volume_id in (record.status_reason or "") and "pool is full" in (record.status_reason or "")
    assert CheckpointStore(engine.registry.get(PROVIDER).bank).read(cid).status == "error"
    [log] = engine.db.list_operation_logs("proj", filters={"checkpoint_id": cid})
    assert log.status == "error" and log.ended_at is not None


def test_runs_of_the_own_pool_save_no_flow(engine: ProtectionManager, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing resumes a run of this process's pool (crash recovery ends it), so its flow is not written to
    the metadata store at every step; jobs handed out by a jobboard are (``test_conductor.py``)."""
    persistence = engine.jobs.runner.persistence
    assert persistence is not None
    connections: list[object] = []
    real = persistence.backend.get_connection
    monkeypatch.setattr(persistence.backend, "get_connection", lambda: connections.append(1) or real())
    cid = protect(engine, plan_for(engine, make_volume(engine, "v1", b"x" * 1000)))
    assert engine.db.get_checkpoint(cid).status == "available"
    assert connections == []


def test_delete_while_protecting_is_refused(engine: ProtectionManager) -> None:
    record = engine.db.get_checkpoint(protect(engine, plan_for(engine, make_volume(engine, "v1", b"x"))))
    engine.db.update_checkpoint(record.id, {"status": "protecting"}, check=False)
    with pytest.raises(exceptions.InvalidStatusTransition):
        engine.delete_checkpoint(CTX, PROVIDER, record.id)


def test_restore_rejects_unknown_parameters_and_targets(engine: ProtectionManager) -> None:
    cid = protect(engine, plan_for(engine, make_volume(engine, "v1", b"abc")))
    engine.db.create_restore(Restore(id="bad", project_id="proj", provider_id=PROVIDER, checkpoint_id=cid,
                                     parameters={"OS::Cinder::Volume": {"colour": "red"}}))
    with pytest.raises(exceptions.InvalidInput, match="colour"):
        engine.restore(CTX, "bad")
    engine.db.create_restore(Restore(id="far", project_id="proj", provider_id=PROVIDER, checkpoint_id=cid,
                                     restore_target="http://elsewhere"))
    with pytest.raises(exceptions.InvalidInput, match="restore_target is not supported"):
        engine.restore(CTX, "far")


class Recorder(Operation):
    calls: list[str] = []
    lock = threading.Lock()

    def _note(self, hook: str, ctx: OperationContext) -> None:
        with self.lock:
            self.calls.append(f"{hook}:{ctx.resource.id}")

    def on_prepare_begin(self, ctx: OperationContext) -> None:
        self._note("begin", ctx)

    def on_prepare_finish(self, ctx: OperationContext) -> None:
        self._note("finish", ctx)

    def on_main(self, ctx: OperationContext) -> None:
        self._note("main", ctx)
        if ctx.resource.id == "boom":
            raise RuntimeError("the disk caught fire")

    def on_complete(self, ctx: OperationContext) -> None:
        self._note("complete", ctx)


def run_recorded(roots_spec: dict[str, list[str]], root: str, tracker: ResourceTracker) -> list[str]:
    from concurrent import futures

    Recorder.calls = []
    res = {k: Resource(id=k, type="T", name=k) for k in roots_spec}
    roots = build_graph([res[root]], lambda r: [res[d] for d in roots_spec[r.id]])

    def prepare(resource: Resource) -> tuple[Operation, OperationContext]:
        from strongroom.bank_plugins import Bank
        from strongroom.bank_plugins.memory import MemoryBank

        bank = Bank(MemoryBank())
        return Recorder(), OperationContext(context=CTX, kind=OperationKind.PROTECT, checkpoint_id="c",
                                            project_id="p", resource=resource, parameters={}, bank=bank,
                                            section=bank.section("x"))

    with futures.ThreadPoolExecutor(2) as pool:
        run_flow(build_flow(SPECS[OperationKind.PROTECT], roots, prepare, tracker), pool, None, "protect-t",
                 describe=lambda: "test")
    return Recorder.calls


def test_hooks_run_in_graph_order() -> None:
    calls = run_recorded({"parent": ["child"], "child": []}, "parent", ResourceTracker())
    pos = {c: i for i, c in enumerate(calls)}
    assert pos["begin:parent"] < pos["begin:child"]
    assert pos["finish:child"] < pos["finish:parent"]
    assert pos["complete:child"] < pos["complete:parent"]
    assert pos["finish:parent"] < pos["main:parent"] < pos["complete:parent"]


def test_a_failing_hook_fails_its_resource_with_the_reason() -> None:
    tracker = ResourceTracker()
    with pytest.raises(exceptions.FlowFailed, match="the disk caught fire"):
        run_recorded({"parent": ["boom"], "boom": []}, "parent", tracker)
    assert tracker.status["T#boom"] == "error"
    assert "the disk caught fire" in tracker.reason["T#boom"]
    assert tracker.status.get("T#parent") != "available"


def test_plugins_can_be_injected_without_entry_points() -> None:
    class Nothing(ProtectionPlugin):
        def get_operation(self, kind: OperationKind, resource: Resource) -> Operation:
            return Operation()

    plugins.register_test_plugin(plugins.PROTECTIONS, "nothing", Nothing)
    try:
        assert plugins.load_class(plugins.PROTECTIONS, "nothing") is Nothing
    finally:
        plugins.unregister_test_plugin(plugins.PROTECTIONS, "nothing")


def test_a_scheduled_fire_protects_once_however_often_it_is_sent(engine: ProtectionManager) -> None:
    plan = plan_for(engine, make_volume(engine, "v1", b"scheduled"))
    fire = {"scheduled_fire_id": "fire-1", "fire_time": "2026-11-26T05:00:00+00:00"}
    first = engine.protect(CTX, plan.to_dict(), PROVIDER, dict(fire), scheduled_operation_id="op-1")
    # An engine that paused past its claim sends the same fire again after another engine did.
    again = engine.protect(CTX, plan.to_dict(), PROVIDER, dict(fire), scheduled_operation_id="op-1")
    other = engine.protect(CTX, plan.to_dict(), PROVIDER, {**fire, "scheduled_fire_id": "fire-2"})
    engine.wait_idle()
    assert again["id"] == first["id"] != other["id"]
    assert len(engine.db.list_checkpoints(PROVIDER, "proj", filters={"plan_id": plan.id})) == 2


@pytest.mark.parametrize("name", ["../..", "/etc/passwd", ".", "..", ".hidden", "-rf", "a\x00b", "x\nERROR forged",
                                  "txt\u202egpj.exe", "é" * 101])
def test_restore_refuses_a_path_like_or_unprintable_name_before_it_starts(engine: ProtectionManager,
                                                                          name: str) -> None:
    cid = protect(engine, plan_for(engine, make_volume(engine, "v1", b"abc")))
    engine.db.create_restore(Restore(id="named", project_id="proj", provider_id=PROVIDER, checkpoint_id=cid,
                                     parameters={"OS::Cinder::Volume": {"restore_name": name}}))
    with pytest.raises(exceptions.InvalidInput) as info:
        engine.restore(CTX, "named")
    assert info.value.kwargs["reason"].startswith("parameters.OS::Cinder::Volume.restore_name: ")
    assert len(name) < 3 or name not in info.value.message
    assert engine.db.list_operation_logs("proj", filters={"restore_id": "named"}) == []
