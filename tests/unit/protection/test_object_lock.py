"""Immutable retention on real parts with an injected clock (``doc/immutability.md``).

The bank is a memory bank that locks like S3 Object Lock does (by the test's fake clock: a locked key
refuses deletes until its date; a lock only extends), the metadata store is sqlite, volumes are memory
volumes.  The S3 plugin itself is tested on moto in ``tests/conformance/test_bank_s3.py`` and the whole
service in ``tests/functional/test_object_lock.py``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from strongroom import exceptions, plugins
from strongroom.bank_plugins import Bank
from strongroom.bank_plugins.layout import BankLayout
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.clock import FakeClock
from strongroom.context import get_context
from strongroom.db.api import Database
from strongroom.objects import locks
from strongroom.objects.records import CheckpointRecord, Plan, Resource
from strongroom.operationengine import retention
from strongroom.protection import gc
from strongroom.protection.checkpoint import CheckpointStore
from strongroom.protection.manager import ProtectionManager
from strongroom.protection.providers import ProviderRegistry
from strongroom.protection.wiring import protection_manager
from tests.functional.banks import referenced_chunks
from tests.unit.protection.test_providers import write

LOCKED = "22222222-3333-4444-5555-666666666666"
PLAIN = "33333333-4444-5555-6666-777777777777"
CTX = get_context("proj")
CONF = """
[provider]
name = {name}
id = {id}
plugin = volume
bank = {bank}
enabled = true

[volume]
block_backend = memory
chunk_size = 65536

[memory]
capacity = 1073741824
"""


class LockingBank(MemoryBank):
    """A memory bank with object lock, on the test's fake clock."""

    clock: ClassVar[FakeClock]
    supports_object_lock = True
    fail_locks: ClassVar[bool] = False

    def __init__(self, options: Any = None) -> None:
        super().__init__(options, clock=self.clock)
        self.locks: dict[str, _dt.datetime] = {}
        self.lock_calls = 0

    def lock_object(self, key: str, until: _dt.datetime, mode: str | None = None) -> _dt.datetime:
        self.lock_calls += 1
        if self.fail_locks:
            raise exceptions.BankError(reason="the store refuses to lock")
        self.head_object(key)  # BankObjectNotFound for a missing key
        current = self.locks.get(key)
        if current is None or current < until:
            self.locks[key] = current = until
        return current

    def object_lock(self, key: str) -> _dt.datetime | None:
        self.head_object(key)
        return self.locks.get(key)

    def delete_object(self, key: str) -> None:
        until = self.locks.get(key)
        if until is not None and until > self.clock.now():
            raise exceptions.BankObjectLocked(key=key, until=until.isoformat(), reason="locked")
        self.locks.pop(key, None)
        super().delete_object(key)


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    fake = FakeClock(_dt.datetime(2026, 12, 1, tzinfo=_dt.UTC))
    LockingBank.clock = fake
    LockingBank.fail_locks = False
    plugins.register_test_plugin(plugins.BANKS, "locking", LockingBank)
    plugins.register_test_plugin(plugins.BANKS, "plain", MemoryBank)
    yield fake
    plugins.unregister_test_plugin(plugins.BANKS, "locking")
    plugins.unregister_test_plugin(plugins.BANKS, "plain")


@pytest.fixture
def manager(tmp_path: Path, clock: FakeClock) -> Iterator[ProtectionManager]:
    write(tmp_path, CONF.format(name="Locked", id=LOCKED, bank="locking"), "locked.conf")
    directory = write(tmp_path, CONF.format(name="Plain", id=PLAIN, bank="plain"), "plain.conf")
    registry = ProviderRegistry.load(str(directory), str(tmp_path), bank_retry={"max_attempts": 1})
    db = Database(f"sqlite:///{tmp_path / 'meta.sqlite'}", clock=clock)
    db.sync()
    service = protection_manager(db, registry, host="test", owner_id="lock-test", flow_workers=2, clock=clock,
                                 chunk_grace=0)
    yield service
    service.stop()
    db.dispose()


def bank_of(manager: ProtectionManager, provider: str = LOCKED) -> Bank:
    return manager.registry.get(provider).bank


def plan(manager: ProtectionManager, provider: str = LOCKED, name: str = "v1", data: bytes = b"x" * 200_000,
         **parameters: Any) -> Plan:
    backend = manager.registry.get(provider).block_backend("memory")
    volume = backend.create_volume(1 << 20, name=name)
    with backend.writing_volume(volume.id) as writer:
        writer.write(0, data)
    return manager.db.create_plan(Plan(id=f"plan-{name}-{provider[:4]}", name=name, provider_id=provider,
                                       project_id="proj", parameters=parameters,
                                       resources=[Resource(id=volume.id, type="OS::Cinder::Volume", name=name)]))


def protect(manager: ProtectionManager, the_plan: Plan, **kwargs: Any) -> CheckpointRecord:
    record = manager.protect(CTX, the_plan.to_dict(), the_plan.provider_id, {}, **kwargs)
    manager.wait_idle()
    return manager.db.get_checkpoint(str(record["id"]))


def test_lock_days_are_checked_naming_the_field() -> None:
    assert locks.check_lock_days(7, "f") == 7
    for bad in (0, -1, True, "3", 1.5, None, locks.MAX_LOCK_DAYS + 1):
        with pytest.raises(exceptions.InvalidInput) as excinfo:
            locks.check_lock_days(bad, "plan.parameters.retention_lock_days")
        assert "plan.parameters.retention_lock_days" in str(excinfo.value)
    assert locks.locked_until({"locked_until": "garbage"}) is None
    assert locks.lock_days({"retention_lock_days": True}) is None


def test_a_bank_without_object_lock_is_refused_naming_provider_and_bank(manager: ProtectionManager) -> None:
    with pytest.raises(exceptions.InvalidInput) as excinfo:
        manager.validate_plan_parameters(CTX, PLAIN, {"retention_lock_days": 3})
    message = str(excinfo.value)
    assert "parameters.retention_lock_days" in message and PLAIN in message and "'plain'" in message
    manager.validate_plan_parameters(CTX, LOCKED, {"retention_lock_days": 3})
    with pytest.raises(exceptions.InvalidInput):
        manager.check_retention_lock(CTX, PLAIN, 3, "scheduled_operation.operation_definition.retention_lock_days")
    # At protect too (the bank's options may have changed since the plan was made): never a silent no-op.
    with pytest.raises(exceptions.InvalidInput) as again:
        protect(manager, plan(manager, PLAIN), retention_lock_days=3)
    assert "operation_definition.retention_lock_days" in str(again.value)
    with pytest.raises(exceptions.InvalidInput) as reserved:
        manager.protect(CTX, plan(manager, LOCKED).to_dict(), LOCKED, {"locked_until": "2099-01-01T00:00:00+00:00"})
    assert "extra_info.locked_until" in str(reserved.value)


def test_publish_locks_every_object_until_created_at_plus_days(manager: ProtectionManager,
                                                               clock: FakeClock) -> None:
    first = protect(manager, plan(manager, retention_lock_days=2))
    assert first.status == "available"
    assert first.created_at is not None
    until = first.created_at + _dt.timedelta(days=2)
    assert first.extra_info["locked_until"] == until.isoformat()  # the catalogue row
    bank = bank_of(manager)
    store = CheckpointStore(bank)
    assert store.read(first.id).extra_info["locked_until"] == until.isoformat()  # the bank's index
    plugin: LockingBank = bank.plugin.inner  # type: ignore[attr-defined]
    chunks = referenced_chunks(bank, first.id)
    prefix = bank.section(BankLayout.chunks_prefix("proj")).prefix
    keys = [prefix + BankLayout.chunk_key(d) for d in chunks] + list(bank.iter(BankLayout.checkpoint_prefix(first.id)))
    assert chunks and all(plugin.locks.get(key) == until for key in keys)
    # A later checkpoint of the same volume (same chunks) extends them; a shorter lock never shortens.
    clock.advance(3600)
    second = protect(manager, manager.db.get_plan(first.plan_id, "proj"), retention_lock_days=5)
    assert locks.lock_days(second.extra_info) == 5  # the longer of the plan's 2 and the operation's 5
    later = locks.locked_until(second.extra_info)
    assert second.created_at is not None and later == second.created_at + _dt.timedelta(days=5)
    for digest in chunks:
        assert plugin.locks[prefix + BankLayout.chunk_key(digest)] == later
    plugin.lock_object(keys[0], until - _dt.timedelta(days=1))
    assert plugin.locks[keys[0]] == later


def test_a_locked_checkpoint_refuses_delete_until_its_date(manager: ProtectionManager, clock: FakeClock) -> None:
    record = protect(manager, plan(manager, retention_lock_days=1))
    until = locks.locked_until(record.extra_info)
    assert until is not None
    with pytest.raises(exceptions.CheckpointLocked) as excinfo:
        manager.delete_checkpoint(CTX, LOCKED, record.id)
    assert until.isoformat() in str(excinfo.value) and isinstance(excinfo.value, exceptions.Conflict)
    assert manager.db.get_checkpoint(record.id).status == "available"
    # A verification rewrites the index: the new version is locked too.
    plugin: LockingBank = bank_of(manager).plugin.inner  # type: ignore[attr-defined]
    catalogue = manager.catalogues.of(manager.registry.get(LOCKED))
    plugin.locks.pop(BankLayout.index_key(record.id))
    assert catalogue.record_verification(record.id, {"id": "v", "status": "success"})
    assert plugin.locks[BankLayout.index_key(record.id)] == until
    clock.advance(24 * 3600 + 1)
    manager.delete_checkpoint(CTX, LOCKED, record.id)
    manager.wait_idle()
    assert manager.db.get_checkpoint(record.id).status == "deleted"


def test_a_lock_the_bank_refuses_is_recorded_and_still_honoured(manager: ProtectionManager) -> None:
    LockingBank.fail_locks = True
    record = protect(manager, plan(manager, retention_lock_days=1))
    assert record.status == "available"
    assert "refuses to lock" in record.extra_info["lock_error"]
    assert CheckpointStore(bank_of(manager)).read(record.id).extra_info["lock_error"] == record.extra_info[
        "lock_error"]
    with pytest.raises(exceptions.CheckpointLocked):
        manager.delete_checkpoint(CTX, LOCKED, record.id)


def test_chunk_sweeps_never_delete_a_locked_chunk(manager: ProtectionManager, clock: FakeClock) -> None:
    bank = bank_of(manager)
    protect(manager, plan(manager))  # makes the project's chunk store
    chunks = bank.section(BankLayout.chunks_prefix("proj"))
    orphan = BankLayout.chunk_key("e" * 64)
    chunks.put(orphan, b"orphan")
    bank.lock(chunks.prefix + orphan, clock.now() + _dt.timedelta(hours=1))
    provider = manager.registry.get(LOCKED)
    lease = manager.leases.fence(provider).keeper.lease
    collector = gc.GarbageCollector(manager.catalogues.of(provider), lease, chunk_grace=0)
    sweep = collector.sweep_project("proj")
    assert (sweep.removed, sweep.kept_locked, sweep.skipped) == (0, 1, None)
    assert chunks.exists(orphan)
    clock.advance(3601)
    lease = manager.leases.fence(provider).keeper.lease  # renewed (or a new epoch) after the hour
    sweep = gc.GarbageCollector(manager.catalogues.of(provider), lease, chunk_grace=0).sweep_project("proj")
    assert (sweep.removed, sweep.kept_locked, sweep.skipped) == (1, 0, None) and not chunks.exists(orphan)


def test_retention_marks_a_locked_checkpoint_due() -> None:
    now = _dt.datetime(2026, 6, 1, tzinfo=_dt.UTC)
    rows = [CheckpointRecord(id=f"cp-{i}", provider_id="p", project_id="proj", status="available", plan_id="pl",
                             created_at=now - _dt.timedelta(days=3 - i)) for i in range(3)]
    rows[0].extra_info = {"locked_until": (now + _dt.timedelta(hours=1)).isoformat()}
    rows[1].extra_info = {"locked_until": (now - _dt.timedelta(hours=1)).isoformat()}
    decision = retention.decide(retention.Policy(max_backups=1), rows, now)
    assert decision.delete == ["cp-1"] and decision.due == {"cp-0": rows[0].extra_info["locked_until"]}
    later = retention.decide(retention.Policy(max_backups=1), rows, now + _dt.timedelta(hours=2))
    assert later.delete == ["cp-0", "cp-1"] and later.due == {}
