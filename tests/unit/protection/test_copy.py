"""Copy to a second provider's bank on real parts: two providers with memory banks (encrypted, keys under a
local KEK file), memory volumes, sqlite metadata; the catalogue's copy steps; what the manager refuses."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom import config, datamover, exceptions, keys
from strongroom.context import get_context
from strongroom.datamover import hashing
from strongroom.db.api import Database
from strongroom.objects.kinds import LoggedOperation, RestoreKind
from strongroom.objects.records import Resource, Restore
from strongroom.objects.status import CheckpointStatus
from strongroom.protection import copying
from strongroom.protection.checkpoint import CheckpointStore
from strongroom.protection.flows import FlowPersistence
from strongroom.protection.manager import ProtectionManager
from strongroom.protection.providers import ProviderRegistry
from strongroom.protection.wiring import protection_manager
from tests.unit.protection.test_engine import PROVIDER, make_volume, plan_for, protect
from tests.unit.protection.test_providers import GOOD, write

TARGET = "99999999-2222-3333-4444-555555555555"
CLEAR = "88888888-2222-3333-4444-555555555555"
CTX = get_context("proj")
CHUNKS = "projects/proj/chunks/"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[ProtectionManager]:
    write(tmp_path, GOOD)
    directory = write(tmp_path, GOOD.replace("name = Test", "name = Second").replace(PROVIDER, TARGET), "q.conf")
    clear = GOOD.replace("name = Test", "name = Clear").replace(PROVIDER, CLEAR).replace(
        "enabled = true", "enabled = true\nencryption = none")
    write(tmp_path, clear, "r.conf")
    conf = config.new_conf(overrides={"DEFAULT": {"state_dir": str(tmp_path / "state")}})
    registry = ProviderRegistry.load(str(directory), str(tmp_path), kek=keys.kek_source(conf))
    url = f"sqlite:///{tmp_path / 'meta.sqlite'}"
    db = Database(url)
    db.sync()
    manager = protection_manager(db, registry, host="test", flow_workers=2, persistence=FlowPersistence(url))
    yield manager
    manager.stop()
    db.dispose()


def copy(engine: ProtectionManager, cid: str) -> dict[str, object]:
    record = engine.copy_checkpoint(CTX, PROVIDER, cid, TARGET)
    assert record["status"] == "copying" and record["provider_id"] == TARGET
    engine.wait_idle()
    return record


def restored(engine: ProtectionManager, cid: str, name: str, size: int) -> bytes:
    restore = engine.db.create_restore(Restore(id=name, project_id="proj", provider_id=TARGET, checkpoint_id=cid,
                                               parameters={"OS::Cinder::Volume": {"restore_name": name}}))
    engine.restore(CTX, restore.id)
    engine.wait_idle()
    assert engine.db.get_restore(name).status == "success", engine.db.get_restore(name)
    backend = engine.registry.get(TARGET).block_backend("memory")
    [volume] = [v for v in backend.list_volumes() if v.name == name]
    with backend.open_volume_reader(volume.id) as reader:
        return bytes(reader.read(0, size))


def headers(bank: object, cid: str) -> list[datamover.ManifestHeader]:
    return [datamover.read_manifest_header(s) for s in CheckpointStore(bank).data_sections(cid)]  # type: ignore[arg-type]


def test_a_copy_keeps_chunk_ids_sends_only_what_the_target_lacks_and_restores(engine: ProtectionManager) -> None:
    data = bytearray(os.urandom(600_000))
    volume = make_volume(engine, "v1", bytes(data))
    plan = plan_for(engine, volume)
    first = protect(engine, plan)
    copy(engine, first)
    source, target = engine.registry.get(PROVIDER).bank, engine.registry.get(TARGET).bank

    row = engine.db.get_checkpoint(first, provider_id=TARGET)
    assert row.status == "available"
    assert engine.db.get_checkpoint(first, provider_id=PROVIDER).status == "available"
    in_bank = CheckpointStore(target).read(first)
    assert in_bank.status == "available" and in_bank.provider_id == TARGET and in_bank.encryption
    report = in_bank.extra_info["copied"]
    assert report["chunks_sent"] > 0 and report["chunks_present"] == 0 and not report["rehashed"]
    assert in_bank.extra_info["copied_from"]["provider_id"] == PROVIDER
    assert target.list(CHUNKS) == source.list(CHUNKS)  # the same ids: the target adopted the id key
    [header] = headers(target, first)
    assert hashing.key_id_of(header.hash) == target.keyring.current("proj").key_id  # type: ignore[union-attr]
    assert not target.list("indices/active/")
    assert target.list(f"indices/by-plan/{plan.id}/")
    [log] = engine.db.list_operation_logs(None, filters={"operation_type": LoggedOperation.COPY})
    assert (log.status, log.provider_id, log.extra_info["copy"]["bytes_written"]) == (
        "success", TARGET, report["bytes_written"])
    assert restored(engine, first, "back1", len(data)) == bytes(data)
    verification = engine.db.create_restore(Restore(id="v1", project_id="proj", provider_id=TARGET,
                                                    checkpoint_id=first, kind=RestoreKind.VERIFICATION))
    engine.verify(CTX, verification.id)
    engine.wait_idle()
    checked = engine.db.get_restore("v1", kind=RestoreKind.VERIFICATION)
    assert checked.status == "success", checked
    assert CheckpointStore(target).read(first).extra_info["last_verification"]["id"] == "v1"
    assert "last_verification" not in CheckpointStore(source).read(first).extra_info

    data[65536:65536 + 5] = b"fresh"  # one chunk changes
    backend = engine.registry.get(PROVIDER).block_backend("memory")
    with backend.writing_volume(volume) as writer:
        writer.write(0, bytes(data))
    second = protect(engine, plan)
    copy(engine, second)
    report2 = CheckpointStore(target).read(second).extra_info["copied"]
    assert report2["chunks_sent"] == 1 and report2["chunks_present"] >= 1, report2
    assert restored(engine, second, "back2", len(data)) == bytes(data)

    engine.delete_checkpoint(CTX, TARGET, first)  # the copy's life is the target's
    engine.wait_idle()
    assert engine.db.get_checkpoint(first, provider_id=TARGET).status == "deleted"
    assert engine.db.get_checkpoint(first, provider_id=PROVIDER).status == "available"
    assert CheckpointStore(source).read(first).status == "available"


def test_a_target_with_its_own_id_key_gets_every_chunk_named_again(engine: ProtectionManager) -> None:
    data = os.urandom(300_000)
    plan = plan_for(engine, make_volume(engine, "v1", data))
    cid = protect(engine, plan)
    source, target = engine.registry.get(PROVIDER).bank, engine.registry.get(TARGET).bank
    target.keyring.current("proj")  # type: ignore[union-attr]  # the target made a keyset of its own first
    copy(engine, cid)
    record = CheckpointStore(target).read(cid)
    assert record.status == "available" and record.extra_info["copied"]["rehashed"]
    assert set(target.list(CHUNKS)).isdisjoint(source.list(CHUNKS))
    assert restored(engine, cid, "back", len(data)) == data


def test_a_copy_that_fails_verify_ends_error_naming_it(engine: ProtectionManager,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_for(engine, make_volume(engine, "v1", os.urandom(200_000)))
    cid = protect(engine, plan)

    def bad_verify(section: object, store: object, **kwargs: object) -> datamover.VerifyResult:
        return datamover.VerifyResult(chunks_checked=3, bytes_checked=3, errors=["chunk 00ff at offset 0: broken"])

    monkeypatch.setattr(copying.datamover, "verify", bad_verify)
    copy(engine, cid)
    target = engine.registry.get(TARGET).bank
    row = engine.db.get_checkpoint(cid, provider_id=TARGET)
    assert row.status == "error" and "verify of" in str(row.status_reason) and "broken" in str(row.status_reason)
    assert CheckpointStore(target).read(cid).status == "error"
    assert not target.list(f"checkpoints/{cid}/resources/") and not target.list("indices/active/")
    assert target.list(CHUNKS) == []  # the chunks only it wrote went with it
    [log] = engine.db.list_operation_logs(None, filters={"operation_type": LoggedOperation.COPY})
    assert log.status == "error" and "broken" in str(log.error_info)


def test_what_a_copy_refuses(engine: ProtectionManager) -> None:
    plan = plan_for(engine, make_volume(engine, "v1", os.urandom(100_000)))
    cid = protect(engine, plan)
    with pytest.raises(exceptions.InvalidInput, match="copy.parameters.target_provider_id"):
        engine.copy_checkpoint(CTX, PROVIDER, cid, PROVIDER)
    with pytest.raises(exceptions.InvalidInput, match="copy.parameters.target_provider_id: .* would be copied clear"):
        engine.copy_checkpoint(CTX, PROVIDER, cid, CLEAR)
    with pytest.raises(exceptions.InvalidInput, match="copy.parameters.target_provider_id: provider .* not found"):
        engine.copy_checkpoint(CTX, PROVIDER, cid, "00000000-0000-0000-0000-000000000000")
    with pytest.raises(exceptions.NotFound):
        engine.copy_checkpoint(get_context("someone-else"), PROVIDER, cid, TARGET)
    copy(engine, cid)
    with pytest.raises(exceptions.Conflict, match="copy.checkpoint_id: .* already"):
        engine.copy_checkpoint(CTX, PROVIDER, cid, TARGET)
    engine.delete_checkpoint(CTX, TARGET, cid)
    engine.wait_idle()
    with pytest.raises(exceptions.Conflict, match="copy.checkpoint_id: .* deleted, not available"):
        engine.copy_checkpoint(CTX, TARGET, cid, PROVIDER)
    # Deleted in the source, its copy brings it back: a tombstone may be copied over.
    copy(engine, cid)
    engine.delete_checkpoint(CTX, PROVIDER, cid)
    engine.wait_idle()
    assert engine.copy_checkpoint(CTX, TARGET, cid, PROVIDER)["status"] == "copying"
    engine.wait_idle()
    assert engine.db.get_checkpoint(cid, provider_id=PROVIDER).status == "available"
    assert CheckpointStore(engine.registry.get(PROVIDER).bank).read(cid).status == "available"


def test_catalogue_copy_steps(engine: ProtectionManager) -> None:
    plan = plan_for(engine, make_volume(engine, "v1", os.urandom(100_000)))
    cid = protect(engine, plan)
    source = engine.catalogues.of(engine.registry.get(PROVIDER))
    target = engine.catalogues.of(engine.registry.get(TARGET))
    record = copying.target_record(source.read(cid), engine.registry.get(PROVIDER), "writer-1")
    begun = target.begin_copy(record)
    assert begun.status == "copying" and begun.provider_id == TARGET
    [marker] = list(target.store.active_markers())
    assert (marker.owner_id, marker.checkpoint_id, marker.operation) == ("writer-1", cid, LoggedOperation.COPY)
    assert target.read(cid).status == "copying"
    with pytest.raises(exceptions.Conflict, match="already holds"):
        target.begin_copy(copying.target_record(source.read(cid), engine.registry.get(PROVIDER), "writer-2"))
    target.fail_copy(cid, "stopped on purpose", "writer-1", 0)
    assert target.read(cid).status == "error" and not list(target.store.active_markers())
    assert engine.db.get_checkpoint(cid, provider_id=TARGET).status_reason == "stopped on purpose"
    assert source.read(cid).status == "available"

    # A tombstone may be copied again; a reclaim marker of the old copy does not withdraw the new one.
    target.reset(cid, CheckpointStatus.ERROR)  # as an administrator would, then deleted through a delete
    row = engine.db.get_checkpoint(cid, provider_id=TARGET)
    target.begin_delete(row, "writer-1")
    target.finish_delete(cid, "writer-1", sweep=lambda: None)
    assert target.read(cid).status == "deleted"
    again = target.begin_copy(copying.target_record(source.read(cid), engine.registry.get(PROVIDER), "writer-3"))
    assert again.status == "copying"
    assert target.publish_copy(cid, owner_id="writer-3", bytes_done=5, copied={"bytes_written": 0}) is None
    published = target.read(cid)
    assert published.status == "available" and published.extra_info["copied"] == {"bytes_written": 0}
    assert engine.db.get_checkpoint(cid, provider_id=TARGET).status == "available"
    assert not list(target.store.active_markers())


def test_a_clear_checkpoint_copied_into_an_encrypting_bank_is_sealed_and_named_with_its_keys(
        engine: ProtectionManager) -> None:
    data = os.urandom(300_000)
    volume = engine.registry.get(CLEAR).block_backend("memory").create_volume(1 << 20, name="c1")
    with engine.registry.get(CLEAR).block_backend("memory").writing_volume(volume.id) as writer:
        writer.write(0, data)
    plan = engine.db.create_plan(dataclasses.replace(plan_for(engine, "unused"), id="plan-clear",
                                                     provider_id=CLEAR, resources=[
                                                         Resource(id=volume.id, type="OS::Cinder::Volume",
                                                                  name="c1")]))
    record = engine.protect(CTX, plan.to_dict(), CLEAR, {})
    engine.wait_idle()
    cid = str(record["id"])
    clear, target = engine.registry.get(CLEAR).bank, engine.registry.get(TARGET).bank
    [header] = headers(clear, cid)
    assert header.hash == "sha256" and CheckpointStore(clear).read(cid).encryption is None
    engine.copy_checkpoint(CTX, CLEAR, cid, TARGET)
    engine.wait_idle()
    copied = CheckpointStore(target).read(cid)
    assert copied.status == "available" and copied.encryption and copied.extra_info["copied"]["rehashed"]
    [header] = headers(target, cid)
    assert hashing.key_id_of(header.hash) is not None
    assert set(target.list(CHUNKS)).isdisjoint(clear.list(CHUNKS))
    assert restored(engine, cid, "from-clear", len(data)) == data

