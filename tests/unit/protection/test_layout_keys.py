"""Every key Strongroom touches in a bank is one the bank layout declares.

Protect, restore, verify, delete, a zombie's reclaim and a chunk sweep run on a
recording bank; each key read, written, headed or deleted must match a pattern
of :data:`strongroom.bank_plugins.layout.PATTERNS`, and each listing must be
under a prefix the layout lists.  A key spelled anywhere but the layout fails here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom import plugins
from strongroom.bank_plugins import layout
from strongroom.bank_plugins.lease import BankLease
from strongroom.context import get_context
from strongroom.db.api import Database
from strongroom.objects.records import CheckpointRecord, Plan, Resource, Restore
from strongroom.protection.catalogue import CheckpointCatalogue
from strongroom.protection.manager import ProtectionManager
from strongroom.protection.wiring import protection_manager
from strongroom.testing.recording import RecordingBank
from tests.unit.protection.test_providers import write

PROVIDER = "11111111-2222-3333-4444-555555555555"
CTX = get_context("proj")
CONF = f"""
[provider]
name = Recorded
id = {PROVIDER}
plugin = volume
bank = recording

[volume]
block_backend = memory
chunk_size = 65536
"""


def test_classify_knows_every_kind_of_key() -> None:
    cid = "0b6c8c5e-5a57-4bb4-a3f6-3c0b9b7c2b11"
    res = f"checkpoints/{cid}/resources/OS::Cinder::Volume#v1"
    keys = {
        f"checkpoints/{cid}/index.json": "checkpoint index",
        f"{res}/data/manifest.json": "manifest header",
        f"{res}/data/parts/00000003": "manifest part",
        f"{res}/resume.json": "resume state",
        f"{res}/metadata.json": "resource metadata",
        layout.BankLayout.active_key("svc-1", cid): "active marker",
        layout.BankLayout.sweep_key("proj", "svc-1"): "sweep marker",
        layout.BankLayout.lease_key("svc-1"): "lease",
        layout.BankLayout.clock_probe_key("svc-1"): "clock probe",
        layout.BankLayout.reclaimed_key(cid): "reclaim marker",
        layout.BankLayout.chunks_prefix("proj") + "/" + layout.BankLayout.chunk_key("ab" + "0" * 62): "chunk",
    }
    for key, name in keys.items():
        assert layout.classify(key) == name, key
    for stray in (f"checkpoints/{cid}/notes.txt", f"{res}/data/parts/3", "projects/proj/chunks/zz/zz", "tmp/x"):
        assert layout.classify(stray) is None, stray


@pytest.fixture(params=["encrypted", "clear"])
def recorded(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[ProtectionManager, RecordingBank]]:
    plugins.register_test_plugin(plugins.BANKS, "recording", RecordingBank)
    try:
        from strongroom import config, keys
        from strongroom.protection.providers import ProviderRegistry

        kek = keys.kek_source(config.new_conf(overrides={"DEFAULT": {"state_dir": str(tmp_path)}}))
        registry = ProviderRegistry.load(str(write(tmp_path, CONF)), str(tmp_path),
                                         kek=kek if request.param == "encrypted" else None)
        db = Database(f"sqlite:///{tmp_path / 'meta.sqlite'}")
        db.sync()
        manager = protection_manager(db, registry, host="test", owner_id="svc-1", flow_workers=2)
        bank = registry.get(PROVIDER).bank.plugin
        inner = getattr(bank, "inner", bank)
        assert isinstance(inner, RecordingBank)
        yield manager, inner
        manager.stop()
        db.dispose()
    finally:
        plugins.unregister_test_plugin(plugins.BANKS, "recording")


def test_every_key_a_workload_touches_is_declared_by_the_layout(
        recorded: tuple[ProtectionManager, RecordingBank]) -> None:
    manager, bank = recorded
    provider = manager.registry.get(PROVIDER)
    backend = provider.block_backend("memory")
    volume = backend.create_volume(1 << 20, name="v1")
    with backend.writing_volume(volume.id) as writer:
        writer.write(0, os.urandom(300_000))
    plan = manager.db.create_plan(Plan(id="plan-1", name="p", provider_id=PROVIDER, project_id="proj",
                                       resources=[Resource(id=volume.id, type="OS::Cinder::Volume", name="v1")]))
    first = manager.protect(CTX, plan.to_dict(), PROVIDER, {})["id"]
    manager.wait_idle()
    second = manager.protect(CTX, plan.to_dict(), PROVIDER, {})["id"]
    manager.wait_idle()
    assert manager.db.get_checkpoint(second).status == "available"
    for kind, key in (("restore", "r1"), ("verification", "v1")):
        manager.db.create_restore(Restore(id=key, project_id="proj", provider_id=PROVIDER, checkpoint_id=first,
                                          kind=kind))
    manager.restore(CTX, "r1")
    manager.verify(CTX, "v1")
    manager.wait_idle()
    assert manager.db.get_restore("r1").status == "success"
    assert manager.db.get_restore("v1", kind="verification").status == "success"
    manager.delete_checkpoint(CTX, PROVIDER, first)
    manager.wait_idle()
    assert manager.db.get_checkpoint(first).status == "deleted"
    # A writer that died mid-protect, then garbage collection: its reclaim and a chunk sweep.
    dead = BankLease(bank, "svc-dead", provider.lease_windows)
    dead.acquire_lease()
    CheckpointCatalogue(provider.bank, None, manager.clock, provider_id=PROVIDER).begin_protect(CheckpointRecord(
        id="zombie", provider_id=PROVIDER, project_id="proj", status="protecting", owner_id="svc-dead",
        resource_graph="[{}, []]"))
    dead.release_lease()
    [result] = manager.collection.collect()
    assert [r["checkpoint_id"] for r in result["reclaimed"]] == ["zombie"]

    touched = bank.touched()
    assert any(layout.classify(k) == "chunk" for k in touched) and any(
        layout.classify(k) == "sweep marker" for k in touched)
    if provider.bank.encrypt:
        assert {"wrapped data key", "current key-encryption key"} <= {layout.classify(k) for k in touched}
    strays = sorted(k for k in touched if layout.classify(k) is None)
    assert strays == [], f"keys the bank layout does not declare: {strays}"
    unlisted = sorted({p for p in bank.prefixes if not p.startswith(layout.LISTED_PREFIXES)})
    assert unlisted == [], f"listings outside the layout's prefixes: {unlisted}"
