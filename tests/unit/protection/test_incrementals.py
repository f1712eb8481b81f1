"""Incremental protects through the protection manager: retained base snapshots, the parent chain, the
recorded mode and reasons, release and garbage collection of bases, and the source audit.

Real parts as in ``test_gc`` (a memory bank on a fake clock, sqlite catalogue, the memory block backend,
which tracks changes exactly).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from strongroom.bank_plugins.layout import BankLayout
from strongroom.objects.records import Plan, Resource, Restore
from strongroom.protection.bases import base_tags
from strongroom.protection.manager import ProtectionManager
from strongroom.protection.plugins import volume as volume_plugin
from strongroom.protection.snapshots import run_tags
from tests.unit.protection import test_gc
from tests.unit.protection.test_gc import CTX, PROVIDER, bank_of

clock, db, registry, manager = test_gc.clock, test_gc.db, test_gc.registry, test_gc.manager

SIZE = 1 << 20
KEY_TYPE = "OS::Cinder::Volume"


def backend_of(manager: ProtectionManager) -> Any:
    return manager.registry.get(PROVIDER).block_backend("memory")


class Volume:
    """One memory volume, a plan protecting it, and helpers to change it and protect it."""

    def __init__(self, manager: ProtectionManager, name: str = "v1", parameters: dict[str, Any] | None = None):
        self.manager = manager
        self.backend = backend_of(manager)
        self.volume = self.backend.create_volume(SIZE, name=name)
        self.plan = manager.db.create_plan(Plan(
            id=f"plan-{name}", name=name, provider_id=PROVIDER, project_id="proj",
            resources=[Resource(id=self.volume.id, type=KEY_TYPE, name=name)],
            parameters={KEY_TYPE: parameters} if parameters else {}))
        self.key = f"{KEY_TYPE}#{self.volume.id}"
        self.contents: dict[str, bytes] = {}

    def write(self, offset: int, data: bytes) -> None:
        with self.backend.writing_volume(self.volume.id) as writer:
            writer.write(offset, data)

    def data(self) -> bytes:
        with self.backend.open_volume_reader(self.volume.id) as reader:
            return reader.read(0, SIZE)

    def protect(self) -> tuple[str, dict[str, Any]]:
        record = self.manager.protect(CTX, self.plan.to_dict(), PROVIDER, {})
        self.manager.wait_idle()
        cid = str(record["id"])
        checkpoint = self.manager.db.get_checkpoint(cid)
        assert checkpoint.status == "available", checkpoint.status_reason
        self.contents[cid] = self.data()
        return cid, checkpoint.extra_info["protected"][self.key]

    def metadata(self, cid: str) -> dict[str, Any]:
        section = bank_of(self.manager).section(BankLayout.resource_prefix(cid, self.key))
        return section.get_json(volume_plugin.METADATA)  # type: ignore[no-any-return]

    def snapshots(self) -> list[dict[str, str]]:
        return [dict(s.tags) for s in self.backend.list_snapshots(self.volume.id)]

    def restored(self, cid: str) -> bytes:
        restore = self.manager.db.create_restore(Restore(
            id=f"r-{cid[:8]}-{random.randrange(1 << 30)}", project_id="proj", provider_id=PROVIDER, checkpoint_id=cid,
            parameters={KEY_TYPE: {"restore_name": f"back-{cid[:8]}"}}))
        self.manager.restore(CTX, restore.id)
        self.manager.wait_idle()
        done = self.manager.db.get_restore(restore.id)
        assert done.status == "success", done.resources_reason
        volume = next(v for v in self.backend.list_volumes() if v.name == f"back-{cid[:8]}")
        with self.backend.open_volume_reader(volume.id) as reader:
            data = reader.read(0, SIZE)
        self.backend.destroy_volume(volume.id)
        return data


def test_incrementals_in_a_row_read_only_changes_and_every_checkpoint_restores(manager: ProtectionManager) -> None:
    rng = random.Random(11)
    vol = Volume(manager)
    vol.write(0, rng.randbytes(SIZE))
    first, info = vol.protect()
    assert info["mode"] == "full" and info["full_reason"] == volume_plugin.NO_PARENT
    assert info["bytes_read"] == SIZE
    assert vol.snapshots() == [base_tags(PROVIDER, first)], "the protect's snapshot is kept as the next base"
    chain = [first]
    for _ in range(4):
        offset = rng.randrange(0, SIZE - 5000)
        vol.write(offset, rng.randbytes(5000))
        cid, info = vol.protect()
        assert info["mode"] == "incremental" and info["full_reason"] is None, info
        assert info["parent_checkpoint"] == chain[-1]
        assert 0 < info["bytes_read"] <= 2 * 4 * 1024 * 1024  # the slots the write touched, not the volume
        assert vol.snapshots() == [base_tags(PROVIDER, cid)], "older bases are released once published"
        assert vol.metadata(cid)["parent_checkpoint"] == chain[-1]
        chain.append(cid)
    cid, info = vol.protect()
    assert (info["mode"], info["bytes_read"], info["bytes_stored"]) == ("incremental", 0, 0), "nothing changed"
    chain.append(cid)
    for checkpoint in chain:
        assert vol.restored(checkpoint) == vol.contents[checkpoint], f"checkpoint {checkpoint}"


def test_deleting_the_base_checkpoint_releases_its_snapshot_and_the_next_protect_reads_all(
        manager: ProtectionManager) -> None:
    vol = Volume(manager)
    vol.write(0, b"a" * SIZE)
    first, _ = vol.protect()
    vol.write(100, b"b" * 100)
    second, _ = vol.protect()
    manager.delete_checkpoint(CTX, PROVIDER, second)
    manager.wait_idle()
    assert vol.snapshots() == [], "a deleted checkpoint takes its retained snapshot with it"
    assert vol.restored(first) == vol.contents[first], "the parent stays whole"
    third, info = vol.protect()
    assert (info["mode"], info["full_reason"]) == ("full", volume_plugin.NO_PARENT)
    assert vol.restored(third) == vol.contents[third]


def test_full_every_and_retention_off_are_plan_parameters(manager: ProtectionManager) -> None:
    vol = Volume(manager, "periodic", {"full_every": 3})
    vol.write(0, b"x" * 4096)
    modes = [vol.protect()[1] for _ in range(6)]
    assert [m["mode"] for m in modes] == ["full", "incremental", "incremental", "full", "incremental", "incremental"]
    assert modes[3]["full_reason"] == f"{volume_plugin.PERIODIC} (full_every 3)"
    off = Volume(manager, "kept-nothing", {"retain_base_snapshot": False})
    off.write(0, b"y" * 4096)
    for _ in range(2):
        _, info = off.protect()
        assert (info["mode"], info["full_reason"]) == ("full", volume_plugin.NO_PARENT)
        assert off.snapshots() == [], "without retention a protect deletes its snapshot"


def test_a_resized_volume_is_read_in_full_and_says_so(manager: ProtectionManager) -> None:
    vol = Volume(manager)
    vol.write(0, b"r" * 1000)
    vol.protect()
    vol.backend.extend_volume(vol.volume.id, 2 * SIZE)
    record = manager.protect(CTX, vol.plan.to_dict(), PROVIDER, {})
    manager.wait_idle()
    info = manager.db.get_checkpoint(str(record["id"])).extra_info["protected"][vol.key]
    assert info["mode"] == "full" and info["full_reason"].startswith("volume resized"), info


def test_gc_keeps_the_newest_available_base_and_reclaims_leaked_ones(manager: ProtectionManager,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    vol = Volume(manager)
    vol.write(0, b"g" * SIZE)
    first, _ = vol.protect()
    [leaked] = vol.backend.list_snapshots(vol.volume.id)
    # What a crash between publishing and releasing leaves: the older base beside the newest one.
    monkeypatch.setattr(volume_plugin.ProtectOperation, "on_published", lambda self, ctx: None)
    second, _ = vol.protect()
    monkeypatch.undo()
    backend = vol.backend
    assert len(backend.list_snapshots(vol.volume.id)) == 2
    # And the base of a checkpoint that never was (a protect that died before its index).
    never = backend.create_snapshot(vol.volume.id, base_tags(PROVIDER, "checkpoint-never-written"))
    foreign = backend.create_snapshot(vol.volume.id, run_tags("another-provider", first))
    [result] = manager.collection.collect()
    left = {s.id: dict(s.tags) for s in backend.list_snapshots(vol.volume.id)}
    assert leaked.id not in left and never.id not in left, result
    assert foreign.id in left, "another provider's snapshot is never ours to judge"
    assert [t for t in left.values() if t.get("strongroom.provider") == PROVIDER] == [base_tags(PROVIDER, second)]
    _, info = vol.protect()
    assert info["mode"] == "incremental", "the base garbage collection kept is still used"


def test_verify_source_audits_the_tracking_and_finds_a_missed_change(manager: ProtectionManager) -> None:
    vol = Volume(manager)
    vol.write(0, random.Random(3).randbytes(SIZE))
    vol.protect()
    vol.write(4096, b"changed")
    cid, info = vol.protect()
    assert info["mode"] == "incremental"
    ok = _verify(manager, cid, {"source": True})
    assert ok.status == "success", ok.resources_reason
    # A backend whose tracking misses a change: the manifest then keeps the parent's chunk for that slot.
    [snapshot] = vol.backend.list_snapshots(vol.volume.id)
    real = type(vol.backend).changed_extents
    try:
        type(vol.backend).changed_extents = lambda self, new, base: iter([])  # type: ignore[method-assign]
        vol.write(SIZE - 10, b"missed!")
        missed, info = vol.protect()
    finally:
        type(vol.backend).changed_extents = real  # type: ignore[method-assign]
    assert info["mode"] == "incremental" and info["bytes_read"] == 0
    bad = _verify(manager, missed, {"source": True})
    assert bad.status == "fail" and "the snapshot holds" in _reason(bad), bad.resources_reason
    assert snapshot.id not in {s.id for s in vol.backend.list_snapshots(vol.volume.id)}
    old = _verify(manager, cid, {"source": True})
    assert old.status == "fail" and "keeps no snapshot" in _reason(old), old.resources_reason


def _reason(record: Restore) -> str:
    return "; ".join(record.resources_reason.values())


def _verify(manager: ProtectionManager, cid: str, parameters: dict[str, Any]) -> Restore:
    key = f"ver-{cid[:8]}-{random.randrange(1 << 30)}"
    manager.db.create_restore(Restore(id=key, project_id="proj", provider_id=PROVIDER, checkpoint_id=cid,
                                      kind="verification", parameters={KEY_TYPE: parameters}))
    manager.verify(CTX, key)
    manager.wait_idle()
    return manager.db.get_restore(key, kind="verification")
