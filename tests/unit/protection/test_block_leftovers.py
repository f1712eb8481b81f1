"""What block work leaves when a run dies: snapshots of protects, staged volumes of restores.

Real parts (memory bank on a fake clock, memory volumes, sqlite), as in ``test_gc``; a dead writer is
what it leaves behind.  The loopback backend's own leftovers (partial images of a killed process) are
in ``tests/unit/block/test_block_loopback.py``; the SIGKILL of a real all-in-one in
``tests/functional/test_killed_block_runs.py``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from strongroom.bank_plugins.lease import BankLease
from strongroom.clock import FakeClock
from strongroom.objects.records import Restore
from strongroom.protection.bases import base_tags
from strongroom.protection.manager import ProtectionManager
from strongroom.protection.plugins import volume as volume_plugin
from strongroom.protection.snapshots import run_tags
from tests.unit.protection import test_gc
from tests.unit.protection.test_gc import (
    CTX,
    PROVIDER,
    WINDOWS,
    bank_of,
    dead_writer,
    make_manager,
    protect_volume,
    recovered_restore,
)

# The fixtures of test_gc: the same clocked bank, sqlite catalogue, memory volumes and managers.
clock, db, registry, manager = test_gc.clock, test_gc.db, test_gc.registry, test_gc.manager

VOLUME_KEY = "OS::Cinder::Volume#v1"


def backend_of(manager: ProtectionManager) -> Any:
    return manager.registry.get(PROVIDER).block_backend("memory")


def test_gc_reclaims_the_snapshots_of_dead_protects_and_only_those(manager: ProtectionManager,
                                                                   clock: FakeClock) -> None:
    bank = bank_of(manager)
    dead, _ = dead_writer(bank, clock, owner="dead-writer")
    alive, _ = dead_writer(bank, clock, owner="busy-writer")
    backend = backend_of(manager)
    volume = backend.create_volume(1 << 20, name="src")
    doomed = {backend.create_snapshot(volume.id, run_tags(PROVIDER, dead)).id,
              backend.create_snapshot(volume.id, run_tags(PROVIDER, "checkpoint-long-gone")).id}
    kept = {backend.create_snapshot(volume.id, run_tags(PROVIDER, alive)).id,  # its writer lives
            backend.create_snapshot(volume.id, run_tags("another-provider", dead)).id,  # not ours to judge
            backend.create_snapshot(volume.id).id}  # an operator's
    keep_alive = BankLease(bank.plugin, "busy-writer", WINDOWS, clock=clock, takeover=True)
    clock.advance(WINDOWS.expire + 2)
    keep_alive.acquire_lease()

    [dry] = manager.collection.collect(dry_run=True)
    assert len(dry["snapshots_removed"]) == 2 and "would reclaim 2 block snapshot(s)" in dry["summary"]
    assert {s.id for s in backend.list_snapshots()} == doomed | kept

    [result] = manager.collection.collect()
    assert {entry.split("/")[1].split(" ")[0] for entry in result["snapshots_removed"]} == doomed
    assert "reclaimed 2 block snapshot(s) of interrupted protects" in result["summary"]
    assert {s.id for s in backend.list_snapshots()} == kept
    assert manager.collection.totals["snapshots_removed"] == 2


def test_a_protect_tags_its_snapshot_and_keeps_it_as_the_next_base(manager: ProtectionManager,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, str]] = []
    backup = volume_plugin.datamover.backup

    def watching(*args: Any, **kwargs: Any) -> Any:
        seen.extend(dict(s.tags) for s in backend_of(manager).list_snapshots())
        return backup(*args, **kwargs)

    monkeypatch.setattr(volume_plugin.datamover, "backup", watching)
    cid = protect_volume(manager, os.urandom(200_000))
    assert manager.db.get_checkpoint(cid).status == "available"
    assert seen == [base_tags(PROVIDER, cid)]
    assert [dict(s.tags) for s in backend_of(manager).list_snapshots()] == [base_tags(PROVIDER, cid)]


def _restore(manager: ProtectionManager, cid: str, restore_id: str = "r1") -> Restore:
    restore = manager.db.create_restore(Restore(
        id=restore_id, project_id="proj", provider_id=PROVIDER, checkpoint_id=cid,
        parameters={"OS::Cinder::Volume": {"restore_name": "back"}}))
    manager.restore(CTX, restore.id)
    manager.wait_idle()
    return manager.db.get_restore(restore.id)


def test_a_failed_restore_leaves_no_volume(manager: ProtectionManager, monkeypatch: pytest.MonkeyPatch) -> None:
    cid = protect_volume(manager, os.urandom(300_000))
    backend = backend_of(manager)
    restore = volume_plugin.datamover.restore

    def half_then_fail(manifest: Any, store: Any, writer: Any, **kwargs: Any) -> Any:
        writer.write(0, b"half of it")
        assert [v.name for v in backend.list_staged_volumes()] == ["back"]
        assert "back" not in [v.name for v in backend.list_volumes()], "a half-restored volume is listed"
        raise OSError("the disk went away")

    monkeypatch.setattr(volume_plugin.datamover, "restore", half_then_fail)
    assert _restore(manager, cid).status == "fail"
    assert backend.list_staged_volumes() == []
    assert "back" not in [v.name for v in backend.list_volumes()]

    monkeypatch.setattr(volume_plugin.datamover, "restore", restore)
    done = _restore(manager, cid, "r2")
    assert done.status == "success"
    [restored] = [v for v in backend.list_volumes() if v.name == "back"]
    assert done.extra_info["restored_resources"][next(iter(done.extra_info["restored_resources"]))]["id"] \
        == restored.id and not restored.staged


def test_recovery_discards_the_staged_volume_of_a_dead_restore(db: Any, registry: Any, clock: FakeClock) -> None:
    predecessor = make_manager(db, registry, clock, "aio", takeover=True)
    try:
        cid = protect_volume(predecessor, os.urandom(100_000))
    finally:
        predecessor.stop()
    backend = registry.get(PROVIDER).block_backend("memory")
    staged = backend.create_volume(1 << 20, name="back", staged=True)  # what the killed restore wrote into
    resume = {VOLUME_KEY: {"volume_id": staged.id, "name": "back"}}
    record = recovered_restore(db, registry, clock, cid, resume)
    assert record.status == "fail" and record.resume_state == {}
    assert "interrupted" in record.resources_reason["_"]
    assert "the partly restored volume back was never published and has been removed" in \
        record.resources_reason[VOLUME_KEY]
    assert backend.list_staged_volumes() == []
    assert "back" not in [v.name for v in backend.list_volumes()]
