"""Restore into an existing volume (``restore_target``) and placement parameters, on the real manager.

Real parts as in ``test_block_leftovers``: the clocked memory bank, sqlite, memory volumes.  What a user
notices: the target's bytes afterwards, the restore's record (status, reasons, restored resources) and
the refusal, naming the field and the volume, of a request that cannot be done.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from strongroom import exceptions
from strongroom.block.base import Volume
from strongroom.clock import FakeClock
from strongroom.objects.records import Restore
from strongroom.protection.manager import ProtectionManager
from strongroom.protection.plugins import volume as volume_plugin
from tests.unit.protection import test_gc
from tests.unit.protection.test_gc import CTX, PROVIDER, make_manager, protect_volume, recovered_restore

clock, db, registry, manager = test_gc.clock, test_gc.db, test_gc.registry, test_gc.manager

MiB = 1 << 20
VOLUME = "OS::Cinder::Volume"


def backend_of(manager: ProtectionManager) -> Any:
    return manager.registry.get(PROVIDER).block_backend("memory")


def original(manager: ProtectionManager, name: str = "v1") -> Volume:
    [volume] = [v for v in backend_of(manager).list_volumes() if v.name == name]
    return volume


def start(manager: ProtectionManager, cid: str, parameters: dict[str, Any], restore_id: str = "r1") -> Restore:
    restore = manager.db.create_restore(Restore(id=restore_id, project_id="proj", provider_id=PROVIDER,
                                                checkpoint_id=cid, parameters=parameters))
    manager.restore(CTX, restore.id)
    manager.wait_idle()
    return manager.db.get_restore(restore.id)


def content(manager: ProtectionManager, volume_id: str) -> bytes:
    with backend_of(manager).open_volume_reader(volume_id) as reader:
        return reader.read(0, reader.size)


def stale_target(manager: ProtectionManager, size: int = 2 * MiB, name: str = "target") -> Volume:
    backend = backend_of(manager)
    target = backend.create_volume(size, name=name)
    with backend.writing_volume(target.id) as writer:
        writer.write(0, b"\xee" * size)  # old data that must not survive anywhere
    return target


def test_a_restore_overwrites_the_whole_target_and_reports_it(manager: ProtectionManager) -> None:
    data = os.urandom(300_000)
    cid = protect_volume(manager, data)
    source = original(manager)
    target = stale_target(manager)
    before = {v.id for v in backend_of(manager).list_volumes()}
    done = start(manager, cid, {f"{VOLUME}#{source.id}": {"restore_target": target.id}})
    assert done.status == "success", done.resources_reason
    assert content(manager, target.id) == data + bytes(2 * MiB - len(data))  # zeros to its end, past the backup's
    assert {v.id for v in backend_of(manager).list_volumes()} == before, "a restore into a target made a volume"
    [restored] = done.extra_info["restored_resources"].values()
    assert (restored["id"], restored["name"]) == (target.id, "target")
    assert backend_of(manager).check_overwrite(target.id).id == target.id  # released


def test_the_original_itself_can_be_rolled_back(manager: ProtectionManager) -> None:
    data = os.urandom(200_000)
    cid = protect_volume(manager, data)
    source = original(manager)
    with backend_of(manager).writing_volume(source.id) as writer:
        writer.write(0, b"\x01" * MiB)  # what went wrong after the checkpoint
    done = start(manager, cid, {f"{VOLUME}#{source.id}": {"restore_target": source.id}})
    assert done.status == "success", done.resources_reason
    assert content(manager, source.id) == data + bytes(MiB - len(data))


def refusal(manager: ProtectionManager, cid: str, parameters: dict[str, Any],
            error: type[exceptions.StrongroomError] = exceptions.InvalidInput) -> str:
    record = manager.db.create_restore(Restore(id="refused", project_id="proj", provider_id=PROVIDER,
                                               checkpoint_id=cid, parameters=parameters))
    with pytest.raises(error) as info:
        manager.restore(CTX, record.id)
    manager.db.delete_restore(record.id)
    return str(info.value)


def test_targets_that_cannot_be_overwritten_are_refused_naming_field_and_volume(manager: ProtectionManager) -> None:
    cid = protect_volume(manager, os.urandom(100_000))
    source = original(manager)
    key = f"{VOLUME}#{source.id}"
    field = f"parameters.{key}.restore_target"
    missing = "00000000-0000-4000-8000-00000000dead"
    said = refusal(manager, cid, {key: {"restore_target": missing}})
    assert f"{field}: " in said and missing in said and "does not exist" in said
    small = backend_of(manager).create_volume(MiB // 2, name="small")
    said = refusal(manager, cid, {key: {"restore_target": small.id}})
    assert f"{field}: " in said and small.id in said and str(MiB) in said
    busy = stale_target(manager, name="busy")
    with backend_of(manager).open_volume_overwriter(busy.id):
        said = refusal(manager, cid, {key: {"restore_target": busy.id}}, exceptions.Conflict)
    assert f"{field}: " in said and busy.id in said and "in use" in said
    said = refusal(manager, cid, {VOLUME: {"restore_target": busy.id}})
    assert f"parameters.{VOLUME}.restore_target: " in said and "per resource" in said
    said = refusal(manager, cid, {key: {"restore_target": busy.id, "restore_name": "x"}})
    assert f"parameters.{key}.restore_name: " in said
    assert content(manager, busy.id) == b"\xee" * (2 * MiB), "a refused restore wrote"
    assert manager.db.list_restores("proj") == []


def test_a_placement_the_backend_cannot_honour_is_refused_by_name(manager: ProtectionManager) -> None:
    cid = protect_volume(manager, os.urandom(100_000))
    for key in ("volume_type", "availability_zone"):
        said = refusal(manager, cid, {VOLUME: {key: "fast"}})
        assert f"parameters.{VOLUME}.{key}: " in said and "memory" in said
    said = refusal(manager, cid, {VOLUME: {"volume_type": ""}})  # the plugin's schema: a 400 naming it
    assert f"parameters.{VOLUME}.volume_type" in said


def test_a_recorded_placement_the_backend_cannot_honour_is_not_used(manager: ProtectionManager) -> None:
    data = os.urandom(100_000)
    cid = protect_volume(manager, data)
    section = manager.catalogues.of(manager.registry.get(PROVIDER)).store.resource_section(
        cid, f"{VOLUME}#{original(manager).id}")
    saved = section.get_json(volume_plugin.METADATA)
    assert saved["placement"] == {}  # memory volumes have none
    section.put_json(volume_plugin.METADATA, {**saved, "placement": {"volume_type": "from-elsewhere"}})
    done = start(manager, cid, {VOLUME: {"restore_name": "placed"}})
    assert done.status == "success", done.resources_reason
    assert content(manager, original(manager, "placed").id)[:len(data)] == data


def test_a_failed_overwrite_says_the_target_is_partially_written(manager: ProtectionManager,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cid = protect_volume(manager, os.urandom(300_000))
    source, target = original(manager), stale_target(manager)

    def half_then_fail(manifest: Any, store: Any, writer: Any, **kwargs: Any) -> Any:
        assert kwargs.get("zero_fill") is True
        writer.write(0, b"half of it")
        raise OSError("the disk went away")

    monkeypatch.setattr(volume_plugin.datamover, "restore", half_then_fail)
    done = start(manager, cid, {f"{VOLUME}#{source.id}": {"restore_target": target.id}})
    assert done.status == "fail"
    said = f"the target volume {target.id} was left partially written and must not be used until a restore"
    assert said in done.resources_reason["_"] and said in done.resources_reason[f"{VOLUME}#{source.id}"]
    assert done.resume_state == {}
    assert backend_of(manager).check_overwrite(target.id).id == target.id  # released for the next attempt


def test_recovery_of_a_dead_overwrite_names_the_target(db: Any, registry: Any, clock: FakeClock) -> None:
    predecessor = make_manager(db, registry, clock, "aio", takeover=True)
    try:
        cid = protect_volume(predecessor, os.urandom(100_000))
        key = f"{VOLUME}#{original(predecessor).id}"
    finally:
        predecessor.stop()
    record = recovered_restore(db, registry, clock, cid, {key: {"target": "target-id"}})
    assert record.status == "fail"
    assert "the target volume target-id was left partially written and must not be used" in \
        record.resources_reason[key]
