"""Leases, fencing and garbage collection on real parts, with an injected clock.

The bank is a memory bank whose clock is a ``FakeClock`` (its timestamps are
"the bank's clock"), the metadata store is sqlite, volumes are memory volumes.
A dead writer is reproduced as what it leaves in the bank: an active marker, a
``protecting`` index, manifest parts and chunks, and a lease that stops being
renewed.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from strongroom import config, exceptions, keys, metrics, plugins
from strongroom.bank_plugins import Bank, sealing
from strongroom.bank_plugins.keyring import Keyring
from strongroom.bank_plugins.layout import BankLayout, classify
from strongroom.bank_plugins.lease import BankLease, LeaseKeeper, LeaseWindows
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.clock import FakeClock
from strongroom.context import get_context
from strongroom.db.api import Database
from strongroom.objects.records import CheckpointRecord, Plan, Resource, Restore
from strongroom.protection import gc
from strongroom.protection.catalogue import CheckpointCatalogue
from strongroom.protection.checkpoint import CheckpointStore
from strongroom.protection.manager import ProtectionManager
from strongroom.protection.plugin import Operation, OperationContext, OperationKind, ProtectionPlugin
from strongroom.protection.providers import ProviderRegistry
from strongroom.protection.wiring import protection_manager
from strongroom.testing.faults import Fault, FaultyBank
from tests.unit.protection.test_providers import write

PROVIDER = "11111111-2222-3333-4444-555555555555"
CTX = get_context("proj")
WINDOWS = LeaseWindows(expire=60, renew=20, validity=10)

CONF = f"""
[provider]
name = Clocked
id = {PROVIDER}
plugin = volume
bank = clocked
enabled = true

[volume]
block_backend = memory
chunk_size = 65536

[memory]
capacity = 1073741824

[clocked]
lease_expire_window = {WINDOWS.expire}
lease_renew_window = {WINDOWS.renew}
lease_validity_window = {WINDOWS.validity}
"""


class ClockedBank(FaultyBank):
    """A memory bank on the test's fake clock, whose writes under the ``failing`` prefixes fail transiently."""

    clock: ClassVar[FakeClock]
    options_schema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {
        "lease_expire_window": {"type": "integer"}, "lease_renew_window": {"type": "integer"},
        "lease_validity_window": {"type": "integer"}}}
    failing: ClassVar[set[str]] = set()
    deleted: ClassVar[list[str]] = []

    def __init__(self, options: Any = None) -> None:
        super().__init__(MemoryBank(options, clock=self.clock))
        self.inject(Fault.TRANSIENT, operations={"put_object"},
                    when=lambda call: call.key.startswith(tuple(ClockedBank.failing)))

    def delete_object(self, key: str) -> None:
        self.deleted.append(key)
        super().delete_object(key)


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    ClockedBank.clock = fake
    ClockedBank.failing = set()
    ClockedBank.deleted = []
    plugins.register_test_plugin(plugins.BANKS, "clocked", ClockedBank)
    yield fake
    plugins.unregister_test_plugin(plugins.BANKS, "clocked")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'meta.sqlite'}")
    database.sync()
    yield database
    database.dispose()


@pytest.fixture
def registry(tmp_path: Path, clock: FakeClock) -> ProviderRegistry:
    return ProviderRegistry.load(str(write(tmp_path, CONF)), str(tmp_path),
                                 bank_retry={"max_attempts": 1})


def make_manager(db: Database, registry: ProviderRegistry, clock: FakeClock, owner: str,
                 **kwargs: Any) -> ProtectionManager:
    return protection_manager(db, registry, host="test", owner_id=owner, flow_workers=2, clock=clock,
                             chunk_grace=0, **kwargs)


@pytest.fixture
def manager(db: Database, registry: ProviderRegistry, clock: FakeClock) -> Iterator[ProtectionManager]:
    service = make_manager(db, registry, clock, "survivor")
    yield service
    service.stop()


def bank_of(manager: ProtectionManager) -> Bank:
    return manager.registry.get(PROVIDER).bank


def recovered_restore(db: Database, registry: ProviderRegistry, clock: FakeClock, checkpoint_id: str,
                      resume_state: dict[str, Any]) -> Restore:
    """A restore a killed service left ``in_progress`` with ``resume_state``, after its successor's
    start-up recovery (which must end exactly that one)."""
    db.create_restore(Restore(id="dead", project_id="proj", provider_id=PROVIDER, checkpoint_id=checkpoint_id,
                              status="in_progress", resume_state=resume_state))
    successor = make_manager(db, registry, clock, "aio", takeover=True)
    try:
        assert successor.recovery.recover_interrupted()["restores"] == 1
    finally:
        successor.stop()
    return db.get_restore("dead")


def protect_volume(manager: ProtectionManager, data: bytes, name: str = "v1") -> str:
    backend = manager.registry.get(PROVIDER).block_backend("memory")
    volume = backend.create_volume(1 << 20, name=name)
    with backend.writing_volume(volume.id) as writer:
        writer.write(0, data)
    plan = manager.db.create_plan(Plan(id=f"plan-{name}", name=name, provider_id=PROVIDER, project_id="proj",
                                       resources=[Resource(id=volume.id, type="OS::Cinder::Volume", name=name)]))
    record = manager.protect(CTX, plan.to_dict(), PROVIDER, {})
    manager.wait_idle()
    return str(record["id"])


def dead_writer(bank: Bank, clock: FakeClock, owner: str = "dead-writer", status: str = "protecting",
                chunk_data: list[bytes] | None = None) -> tuple[str, list[str]]:
    """What a writer that died mid-protect leaves: lease, marker, index, manifest parts, chunks."""
    lease = BankLease(bank.plugin, owner, WINDOWS, clock=clock)
    lease.acquire_lease()
    store = CheckpointStore(bank, clock)
    catalogue = CheckpointCatalogue(bank, None, clock, provider_id=PROVIDER)  # the writer's own, bank only
    cid = f"zombie-{owner}"
    catalogue.begin_protect(CheckpointRecord(id=cid, provider_id=PROVIDER, project_id="proj", status="protecting",
                                  owner_id=owner, created_at=clock.now(), resource_graph="[{}, []]"))
    from strongroom.datamover import ChunkStore

    chunks = ChunkStore(bank.section(BankLayout.chunks_prefix("proj")))
    digests = []
    for data in chunk_data or [os.urandom(1000), os.urandom(1000)]:
        digest = chunks.hash(data)
        chunks.put(digest, data)
        digests.append(digest)
    section = store.resource_section(cid, "OS::Cinder::Volume#dead")
    section.put("data/parts/000000", b"incomplete manifest part")
    section.put("metadata.json", b"{}")
    if status == "deleting":
        catalogue.publish(cid, owner_id=owner, bytes_done=0)
        catalogue.begin_delete(catalogue.read(cid), owner)
    return cid, digests


def chunk_digests(bank: Bank) -> set[str]:
    return {key.rsplit("/", 1)[1] for key in bank.list(BankLayout.chunks_prefix("proj") + "/")}


# -- lease windows and keepers ----------------------------------------------------------------


@pytest.mark.parametrize(("windows", "key"), [
    ({"expire": 100, "renew": 30, "validity": 10}, "lease_expire_window"),  # not a multiple
    ({"expire": 120, "renew": 60, "validity": 61}, "lease_validity_window"),  # more than renew
    ({"expire": 60, "renew": 60, "validity": 10}, "lease_expire_window"),  # no room for a failed renewal
    ({"expire": 0, "renew": 60, "validity": 10}, "lease_expire_window"),
])
def test_lease_windows_are_validated_naming_the_option(windows: dict[str, int], key: str) -> None:
    with pytest.raises(exceptions.LeaseWindowError) as excinfo:
        LeaseWindows(**windows)
    assert key in str(excinfo.value)


def test_karbor_defaults() -> None:
    assert LeaseWindows.from_options({}) == LeaseWindows(600, 120, 100)


def test_bad_windows_in_a_provider_file_name_file_section_and_key(tmp_path: Path, clock: FakeClock) -> None:
    bad = CONF.replace(f"lease_validity_window = {WINDOWS.validity}", "lease_validity_window = 25")
    with pytest.raises(exceptions.ProviderConfigError) as excinfo:
        ProviderRegistry.load(str(write(tmp_path, bad)), str(tmp_path))
    message = str(excinfo.value)
    assert "p.conf" in message and "[clocked]" in message and "lease_validity_window" in message


def test_keeper_renews_and_a_lapsed_lease_starts_a_new_epoch(clock: FakeClock) -> None:
    ClockedBank.clock = clock
    plugin = ClockedBank()
    lease = BankLease(plugin, "svc", WINDOWS, clock=clock)
    keeper = LeaseKeeper(lease, retry_interval=5)
    assert keeper.tick() == WINDOWS.renew and keeper.valid()
    first = keeper.epoch
    clock.advance(WINDOWS.renew)
    keeper.tick()
    assert keeper.valid(first)
    # The bank refuses writes: renewals fail and are retried; validity runs out after expire - validity.
    ClockedBank.failing = {"leases/"}
    for _ in range(9):
        clock.advance(5)
        assert keeper.tick() == 5
    assert keeper.valid(first), "still inside the validity window"
    clock.advance(WINDOWS.expire - WINDOWS.validity)
    keeper.tick()
    assert not keeper.valid(first) and keeper.last_error
    ClockedBank.failing = set()
    keeper.tick()  # LeaseLost: the old epoch is over
    keeper.tick()  # acquired again
    assert keeper.valid() and keeper.epoch == first + 1
    assert not keeper.valid(first), "operations of the lapsed epoch stay fenced"


# -- zombies ----------------------------------------------------------------------------------


def test_zombie_of_a_dead_writer_is_reclaimed_after_its_lease_expires(manager: ProtectionManager,
                                                                      clock: FakeClock) -> None:
    data = os.urandom(200_000)
    good = protect_volume(manager, data)
    bank = bank_of(manager)
    good_chunks = chunk_digests(bank)
    zombie, zombie_chunks = dead_writer(bank, clock)
    manager.db.create_checkpoint(CheckpointStore(bank).read(zombie))
    zombies_before = _sample("strongroom_gc_zombies_reclaimed_total", provider=PROVIDER)
    passes_before = _sample("strongroom_gc_runs_total", provider=PROVIDER, outcome="success")

    first = manager.collection.collect()[0]
    assert first["reclaimed"] == [] and first["leases_removed"] == []  # its lease is still alive
    assert CheckpointStore(bank).read(zombie).status == "protecting"
    clock.advance(WINDOWS.expire + 2)
    ClockedBank.deleted.clear()
    [result] = manager.collection.collect()
    [reclaim] = result["reclaimed"]
    assert (reclaim["checkpoint_id"], reclaim["owner_id"], reclaim["status"]) == (zombie, "dead-writer", "error")
    # Nothing of the dead writer is left: its expired lease goes in the same pass; the survivor's stays.
    assert result["leases_removed"] == ["dead-writer"] and "removed 1 expired lease(s)" in result["summary"]
    assert bank.list(BankLayout.LEASES) == [BankLayout.lease_key("survivor")]

    index = CheckpointStore(bank).read(zombie)
    assert index.status == "error" and "dead-writer lost its lease" in (index.status_reason or "")
    assert bank.list(f"checkpoints/{zombie}/") == [f"checkpoints/{zombie}/index.json",
                                                   f"checkpoints/{zombie}/reclaimed"]
    assert not bank.list(BankLayout.ACTIVE)
    # Reverse write order: metadata.json (written last) before the manifest parts.
    removed = [k for k in ClockedBank.deleted if k.startswith(f"checkpoints/{zombie}/resources/")]
    assert removed == [f"checkpoints/{zombie}/resources/OS::Cinder::Volume#dead/metadata.json",
                       f"checkpoints/{zombie}/resources/OS::Cinder::Volume#dead/data/parts/000000"]
    # Its chunks are swept; every chunk of the available checkpoint stays.
    assert chunk_digests(bank) == good_chunks and not set(zombie_chunks) & chunk_digests(bank)
    # The catalogue and the operation log say so.
    assert manager.db.get_checkpoint(zombie).status == "error"
    [log] = manager.db.list_operation_logs(None, filters={"operation_type": "reclaim"})
    assert log.checkpoint_id == zombie and log.extra_info["objects_removed"] == 2
    assert manager.collection.totals["zombies_reclaimed"] == 1
    # So do the metrics: two passes, one zombie.
    assert _sample("strongroom_gc_zombies_reclaimed_total", provider=PROVIDER) == zombies_before + 1
    assert _sample("strongroom_gc_runs_total", provider=PROVIDER, outcome="success") == passes_before + 2
    # The available checkpoint still restores.
    assert _restore(manager, good) == data


def _sample(name: str, **labels: str) -> float:
    return metrics.get().registry.get_sample_value(name, labels) or 0.0


def _restore(manager: ProtectionManager, cid: str, size: int = 200_000) -> bytes:
    from strongroom.objects.records import Restore

    restore = manager.db.create_restore(Restore(id=f"r-{cid}", project_id="proj", provider_id=PROVIDER,
                                                checkpoint_id=cid,
                                                parameters={"OS::Cinder::Volume": {"restore_name": f"back-{cid}"}}))
    manager.restore(CTX, restore.id)
    manager.wait_idle()
    assert manager.db.get_restore(restore.id).status == "success"
    backend = manager.registry.get(PROVIDER).block_backend("memory")
    [volume] = [v for v in backend.list_volumes() if v.name == f"back-{cid}"]
    with backend.open_volume_reader(volume.id) as reader:
        return bytes(reader.read(0, size))


def test_live_writers_and_interrupted_deletes(manager: ProtectionManager, clock: FakeClock) -> None:
    bank = bank_of(manager)
    alive, _ = dead_writer(bank, clock, owner="busy-writer")
    deleting, _ = dead_writer(bank, clock, owner="dead-deleter", status="deleting")
    keep_alive = BankLease(bank.plugin, "busy-writer", WINDOWS, clock=clock, takeover=True)
    clock.advance(WINDOWS.expire + 2)
    keep_alive.acquire_lease()  # the busy writer renews; the deleter does not
    [result] = manager.collection.collect()
    assert [r["checkpoint_id"] for r in result["reclaimed"]] == [deleting]
    assert result["reclaimed"][0]["status"] == "deleted"
    store = CheckpointStore(bank)
    assert store.read(alive).status == "protecting"
    assert store.read(deleting).status == "deleted"
    assert "sweep skipped" in result["summary"] and "busy-writer" in result["summary"]
    assert result["leases_removed"] == ["dead-deleter"]  # the busy writer's live lease stays
    assert BankLayout.lease_key("busy-writer") in bank.list(BankLayout.LEASES)


def test_an_expired_lease_stays_while_its_owner_has_a_marker_left(manager: ProtectionManager,
                                                                   clock: FakeClock) -> None:
    bank = bank_of(manager)
    dead_writer(bank, clock, owner="stuck-writer")
    clock.advance(WINDOWS.expire + 2)
    manager.leases.fence(manager.registry.get(PROVIDER))  # the collector's own lease, renewed
    collector = gc.GarbageCollector(manager.catalogues.of(manager.registry.get(PROVIDER)),
                                    manager.leases.fence(manager.registry.get(PROVIDER)).keeper.lease)
    report = gc.Report(bank="b", dry_run=False)
    collector.remove_expired_leases(report)  # its zombie not reclaimed yet: its marker still names it
    assert report.leases_removed == [] and BankLayout.lease_key("stuck-writer") in bank.list(BankLayout.LEASES)
    collector.reclaim_zombies(report)
    collector.remove_expired_leases(report)
    assert report.leases_removed == ["stuck-writer"]
    assert not bank.list(BankLayout.lease_key("stuck-writer")) and not bank.list("clock/stuck-writer")


def test_a_lease_names_the_configured_host(clock: FakeClock) -> None:
    lease = BankLease(MemoryBank(), "svc-7", WINDOWS, clock=clock, host="worker-7")
    lease.acquire_lease()
    [info] = lease.list_leases()
    assert info.host == "worker-7" and info.alive


def test_own_orphans_are_reclaimed_at_once_but_not_running_work(db: Database, registry: ProviderRegistry,
                                                                clock: FakeClock) -> None:
    bank = registry.get(PROVIDER).bank
    orphan, _ = dead_writer(bank, clock, owner="aio")  # a predecessor with the same owner id
    successor = make_manager(db, registry, clock, "aio", takeover=True)
    try:
        counts = successor.recovery.recover_interrupted()
        assert counts["reclaimed"] == 1
        assert CheckpointStore(bank).read(orphan).status == "error"
        assert "stopped (this service restarted)" in (CheckpointStore(bank).read(orphan).status_reason or "")
    finally:
        successor.stop()


def test_a_writer_that_publishes_before_the_reclaim_wins(manager: ProtectionManager, clock: FakeClock) -> None:
    bank = bank_of(manager)
    cid, digests = dead_writer(bank, clock)
    clock.advance(WINDOWS.expire + 2)
    store = CheckpointStore(bank, clock)
    catalogue = manager.catalogues.of(manager.registry.get(PROVIDER))
    collector = gc.GarbageCollector(catalogue, manager.leases.fence(manager.registry.get(PROVIDER)).keeper.lease,
                                    chunk_grace=0)
    [marker] = list(collector.zombies())
    catalogue.publish(cid, owner_id=None, bytes_done=0)  # the "dead" writer was only paused, and publishes now
    assert collector.reclaim(marker) is None
    assert store.read(cid).status == "available"
    assert not bank.exists(BankLayout.reclaimed_key(cid))
    assert set(digests) <= chunk_digests(bank)


def test_dry_run_changes_nothing(manager: ProtectionManager, clock: FakeClock) -> None:
    bank = bank_of(manager)
    cid, digests = dead_writer(bank, clock)
    clock.advance(WINDOWS.expire + 2)

    def content() -> list[str]:  # leases and clock probes aside: those are the collector's own
        return [k for k in bank.list() if not k.startswith(("leases/", "clock/"))]

    before = content()
    [result] = manager.collection.collect(dry_run=True)
    assert [r["checkpoint_id"] for r in result["reclaimed"]] == [cid]
    assert "would reclaim 1 zombie" in result["summary"] and "2 unreferenced chunk" in result["summary"]
    assert content() == before


def test_two_collectors_at_once_are_safe(db: Database, registry: ProviderRegistry, clock: FakeClock) -> None:
    first = make_manager(db, registry, clock, "gc-1")
    second = make_manager(db, registry, clock, "gc-2")
    try:
        data = os.urandom(300_000)
        good = protect_volume(first, data)
        bank = bank_of(first)
        good_chunks = chunk_digests(bank)
        zombies = [dead_writer(bank, clock, owner=f"dead-{i}")[0] for i in range(4)]
        clock.advance(WINDOWS.expire + 2)
        first.leases.fence(first.registry.get(PROVIDER))
        second.leases.fence(second.registry.get(PROVIDER))
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda m: m.collection.collect(), [first, second]))
        reclaimed = [r["checkpoint_id"] for res in results for r in res[0]["reclaimed"]]
        assert set(reclaimed) == set(zombies)
        store = CheckpointStore(bank)
        assert all(store.read(z).status == "error" for z in zombies)
        assert chunk_digests(bank) == good_chunks
        assert _restore(first, good, len(data)) == data
    finally:
        first.stop()
        second.stop()


# -- fencing ------------------------------------------------------------------------------------


class Gate(Operation):
    """A protect that holds its main hook until the test opens the gate."""

    entered = threading.Event()
    gate = threading.Event()

    def on_main(self, ctx: OperationContext) -> None:
        ctx.section.put("data/parts/000000", b"part")
        self.entered.set()
        assert self.gate.wait(30)


class GatePlugin(ProtectionPlugin):
    supported_resource_types = ("OS::Cinder::Volume",)

    def get_operation(self, kind: OperationKind, resource: Resource) -> Operation:
        return Gate() if kind == OperationKind.PROTECT else Operation()


@pytest.fixture
def gated(tmp_path: Path, clock: FakeClock, db: Database) -> Iterator[ProtectionManager]:
    plugins.register_test_plugin(plugins.PROTECTIONS, "gate", GatePlugin)
    Gate.entered.clear()
    Gate.gate.clear()
    conf = CONF.replace("plugin = volume", "plugin = gate").replace("[volume]", "[gate]").replace(
        "block_backend = memory\nchunk_size = 65536\n", "")
    registry = ProviderRegistry.load(str(write(tmp_path, conf)), str(tmp_path), bank_retry={"max_attempts": 1})
    service = make_manager(db, registry, clock, "paused-writer")
    yield service
    Gate.gate.set()
    service.stop()
    plugins.unregister_test_plugin(plugins.PROTECTIONS, "gate")


def start_gated_protect(manager: ProtectionManager) -> str:
    plan = manager.db.create_plan(Plan(id="plan-g", name="g", provider_id=PROVIDER, project_id="proj",
                                       resources=[Resource(id="vol", type="OS::Cinder::Volume", name="vol")]))
    cid = str(manager.protect(CTX, plan.to_dict(), PROVIDER, {})["id"])
    assert Gate.entered.wait(10)
    return cid


def test_a_writer_whose_lease_lapsed_never_publishes(gated: ProtectionManager, clock: FakeClock) -> None:
    cid = start_gated_protect(gated)
    keeper = gated.leases.keeper(gated.registry.get(PROVIDER))
    ClockedBank.failing = {"leases/"}  # renewals fail from now on
    clock.advance(WINDOWS.expire - WINDOWS.validity + 1)
    keeper.tick()
    Gate.gate.set()
    gated.wait_idle()
    record = gated.db.get_checkpoint(cid)
    assert record.status == "error"
    assert "will not publish" in (record.status_reason or "") and "bank 'clocked'" in (record.status_reason or "")
    assert CheckpointStore(bank_of(gated)).read(cid).status == "error"
    assert not bank_of(gated).list("indices/by-")


def test_a_writer_reclaimed_while_publishing_withdraws(gated: ProtectionManager, clock: FakeClock) -> None:
    cid = start_gated_protect(gated)
    bank = bank_of(gated)
    # Garbage collection elsewhere judged this writer dead and wrote its reclaim marker just before
    # the writer's publishing request landed (the writer's own lease check had passed).
    bank.put_json(BankLayout.reclaimed_key(cid), {"by": "gc-elsewhere"})
    Gate.gate.set()
    gated.wait_idle()
    assert CheckpointStore(bank).read(cid).status == "error"
    assert gated.db.get_checkpoint(cid).status == "error"
    assert "reclaimed by garbage collection while its writer was publishing" in (
        gated.db.get_checkpoint(cid).status_reason or "")
    assert not bank.list("indices/by-")


def test_sweep_stands_down_for_a_live_writer_and_writers_wait_for_sweeps(manager: ProtectionManager,
                                                                         clock: FakeClock) -> None:
    bank = bank_of(manager)
    lease = manager.leases.fence(manager.registry.get(PROVIDER)).keeper.lease
    # A live writer elsewhere (its lease renewed) is protecting in the project: no sweep.
    dead_writer(bank, clock, owner="live-writer")
    collector = gc.GarbageCollector(manager.catalogues.of(manager.registry.get(PROVIDER)), lease, chunk_grace=0)
    sweep = collector.sweep_project("proj")
    assert sweep.skipped and "live-writer" in sweep.skipped and sweep.removed == 0
    assert not bank.list("gc/sweeping/")
    # A live sweeper elsewhere holds the project's sweep marker: a writer waits until it is gone.
    other = BankLease(bank.plugin, "sweeper", WINDOWS, clock=clock)
    other.acquire_lease()
    bank.put(BankLayout.sweep_key("proj", "sweeper"), b"sweeper")
    polls = []

    def fake_sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 3:
            bank.delete(BankLayout.sweep_key("proj", "sweeper"))

    clock.sleep = fake_sleep  # type: ignore[method-assign]
    gc.wait_for_sweeps(bank, lease, "proj", gc.Sweeping(), clock=clock)
    assert len(polls) == 3
    # A sweeper that died leaves a stale marker: it is ignored and removed.
    bank.put(BankLayout.sweep_key("proj", "dead-sweeper"), b"x")
    assert gc.wait_for_sweeps(bank, lease, "proj", gc.Sweeping(), clock=clock) == 0
    assert not bank.list("gc/sweeping/")


def test_young_unreferenced_chunks_wait_for_the_grace_period(manager: ProtectionManager, clock: FakeClock) -> None:
    bank = bank_of(manager)
    from strongroom.datamover import ChunkStore

    chunks = ChunkStore(bank.section(BankLayout.chunks_prefix("proj")))
    orphan = os.urandom(500)
    chunks.put(chunks.hash(orphan), orphan)
    lease = manager.leases.fence(manager.registry.get(PROVIDER)).keeper.lease
    collector = gc.GarbageCollector(manager.catalogues.of(manager.registry.get(PROVIDER)), lease, chunk_grace=300)
    assert collector.sweep_project("proj").kept_young == 1
    assert chunk_digests(bank) == {chunks.hash(orphan)}
    clock.advance(301)
    manager.leases.fence(manager.registry.get(PROVIDER))  # renew (a new epoch: no thread renewed it)
    assert collector.sweep_project("proj").removed == 1
    assert chunk_digests(bank) == set()


# -- an encrypted bank ----------------------------------------------------------------------------
# A sealed manifest GC cannot authenticate, or whose key it cannot have, stops the chunk sweep with an error
# naming it: it is never read as "no references", and no chunk is deleted.


@pytest.fixture
def sealed_manager(tmp_path: Path, db: Database, clock: FakeClock) -> Iterator[ProtectionManager]:
    kek = keys.kek_source(config.new_conf(overrides={"DEFAULT": {"state_dir": str(tmp_path)}}))
    registry = ProviderRegistry.load(str(write(tmp_path, CONF)), str(tmp_path), bank_retry={"max_attempts": 1},
                                     kek=kek)
    service = make_manager(db, registry, clock, "survivor")
    yield service
    service.stop()


def _collector(manager: ProtectionManager) -> gc.GarbageCollector:
    provider = manager.registry.get(PROVIDER)
    lease = manager.leases.fence(provider).keeper.lease
    return gc.GarbageCollector(manager.catalogues.of(provider), lease, chunk_grace=0)


def test_an_unreadable_sealed_manifest_stops_the_sweep_and_deletes_no_chunk(sealed_manager: ProtectionManager,
                                                                            tmp_path: Path) -> None:
    bank = sealed_manager.registry.get(PROVIDER).bank
    kept = protect_volume(sealed_manager, os.urandom(300_000), name="kept")
    assert bank.encrypt and sealing.is_sealed(bank.plugin.get_object(
        next(k for k in bank.plugin.iter_objects("") if classify(k) == "manifest part")))
    orphan = os.urandom(500)
    store = sealed_manager.registry.get(PROVIDER).plugin_for("OS::Cinder::Volume").chunk_store(bank, "proj")
    store.put(store.hash(orphan), orphan)  # a chunk nobody references: the sweep's to remove
    before = chunk_digests(bank)
    part = next(k for k in bank.plugin.iter_objects(BankLayout.checkpoint_prefix(kept))
                if classify(k) == "manifest part")
    blob = bytearray(bank.plugin.get_object(part))
    blob[-1] ^= 0x01
    bank.plugin.put_object(part, bytes(blob))

    with pytest.raises(exceptions.SealedObjectRejected, match=part.rsplit("/", 1)[-1]):
        _collector(sealed_manager).sweep_project("proj")
    assert chunk_digests(bank) == before  # not even the orphan: nothing is known safe to delete

    bank.plugin.put_object(part, bytes(blob[:-1]) + bytes([blob[-1] ^ 0x01]))  # mended
    os.rename(tmp_path / "key-encryption-keys.json", tmp_path / "away.json")
    kek = bank.keyring.kek  # type: ignore[union-attr]
    bank.keyring = Keyring(bank, kek)  # as after a restart: nothing unwrapped in memory
    with pytest.raises(exceptions.KeyUnavailable, match="does not have it"):
        _collector(sealed_manager).sweep_project("proj")
    assert chunk_digests(bank) == before
    os.rename(tmp_path / "away.json", tmp_path / "key-encryption-keys.json")
    assert _collector(sealed_manager).sweep_project("proj").removed == 1  # readable again: the orphan goes
    assert chunk_digests(bank) == before - {store.hash(orphan)}
