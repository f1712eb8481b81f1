"""Encryption at rest, as an operator of the bank would try to read it: through the real all-in-one on fs,
Swift and S3 banks, with the default key manager (a local KEK file in the state directory).

- No object of the bank holds a 4 KiB window of the volume's plaintext, and no object is named by the
  SHA-256 of a chunk of it (a clear bank, protected the same way, is the control: there the scan finds both).
- One byte flipped in any sealed object, or two chunks swapped, makes verify and restore fail naming the
  object, and the failed restore publishes no volume.
- ``strongroom-manage keys rotate`` rewraps the data keys under a new KEK and deletes the old one; old and
  new checkpoints then restore byte-identical; without the KEK file restore fails naming the key and the bank.
- Checkpoints written in the clear (an index of format 1, as before encryption) stay readable beside
  encrypted ones of the same volume.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from strongroom.bank_plugins.base import BankPlugin
from strongroom.bank_plugins.layout import BankLayout, classify
from tests.functional.banks import (
    BankUnderTest,
    bank_under_test,
    configure,
    create_plan,
    restore_and_hash,
    sha256,
    start_checkpoint,
)
from tests.functional.harness import AllInOne, MiB, running_all_in_one, wait_for

pytestmark = [pytest.mark.functional]

SIZE = 8 * MiB
CHUNK = 256 * 1024  # the volume plugin's default chunk size
WINDOW = 4096
#: Any 4 KiB run of plaintext in an object covers a whole object-aligned run of half that, whose first
#: bytes are then a substring of the volume: sampling every half window finds every such run.
PROBE_STEP = WINDOW // 2
PROBE_BYTES = 64
MANAGE = str(Path(sys.executable).parent / "strongroom-manage")


def _write_volume(path: Path, seed: int) -> bytes:
    """Random bytes (incompressible: stored as they are when not encrypted, the hardest case)."""
    data = random.Random(seed).randbytes(SIZE)
    path.write_bytes(data)
    return data


def _protect(service: AllInOne, provider: str, plan: str) -> str:
    api = service.api()
    cid = start_checkpoint(api, provider, plan)
    body = wait_for(f"{api}/providers/{provider}/checkpoints/{cid}", "checkpoint", {"available", "error"})
    assert body["status"] == "available", body
    return cid


def _objects(plugin: BankPlugin) -> dict[str, bytes]:
    """Every object of the bank as the storage holds it (below the facade: nothing is unsealed).  One that
    goes between its listing and its read (a garbage collection pass's own marker, ``gc/sweeping/...``, is
    there only while the pass runs) holds nothing to scan."""
    from strongroom import exceptions

    out: dict[str, bytes] = {}
    for key in plugin.iter_objects(""):
        try:
            out[key] = plugin.get_object(key)
        except exceptions.BankObjectNotFound:
            continue
    return out


def _plaintext_found(objects: dict[str, bytes], volume: bytes) -> list[str]:
    """Objects holding a 4 KiB window of ``volume`` (see :data:`PROBE_STEP`)."""
    found = []
    for key, blob in objects.items():
        for offset in range(0, max(len(blob) - PROBE_BYTES + 1, 0), PROBE_STEP):
            if volume.find(blob[offset:offset + PROBE_BYTES]) >= 0:
                found.append(key)
                break
    return found


def _named_by_plaintext(objects: dict[str, bytes], volume: bytes) -> list[str]:
    digests = {hashlib.sha256(volume[o:o + CHUNK]).hexdigest() for o in range(0, len(volume), CHUNK)}
    return [key for key in objects if key.rsplit("/", 1)[-1] in digests]


def _service(tmp_path: Path, bank: BankUnderTest, **provider: Any) -> tuple[AllInOne, str, str, bytes]:
    service, provider_id = configure(tmp_path, bank, f"aio-crypt-{bank.kind}", provider=provider or None)
    volume = _write_volume(service.volumes / "vol.img", seed=13)
    service.start()
    plan = create_plan(service.api(), provider_id, "vol.img")
    return service, provider_id, plan, volume


@pytest.mark.parametrize("kind", ["fs", "swift", "s3"])
def test_no_object_holds_plaintext_or_is_named_by_it(request: pytest.FixtureRequest, tmp_path: Path,
                                                      kind: str) -> None:
    bank = bank_under_test(kind, request, tmp_path)
    service, provider, plan, volume = _service(tmp_path, bank)
    try:
        cid = _protect(service, provider, plan)
        objects = _objects(bank.plugin())
        kinds = {classify(key) for key in objects}
        assert {"chunk", "manifest header", "manifest part", "resource metadata", "wrapped data key"} <= kinds
        assert _plaintext_found(objects, volume) == []
        assert _named_by_plaintext(objects, volume) == []
        index = json.loads(objects[BankLayout.index_key(cid)])
        assert index["version"] == 2 and index["encryption"]["algorithm"] == "AES-256-GCM"
        assert set(index) == {"version", "id", "status", "owner_id", "provider_id", "project_id", "plan_id",
                              "bytes_total", "created_at", "updated_at", "encryption", "sealed"}, index
        assert "vol.img" not in json.dumps(index)  # the plan, graph and results name the volume: sealed
        assert not [key for key in objects if "vol.img" in key]  # nor do the objects' names
        # ... and yet the service reads it all back.
        digest, body = restore_and_hash(service, provider, cid, "back.img")
        assert body["status"] == "success", body
        assert digest == hashlib.sha256(volume).hexdigest()
        shown = requests.get(f"{service.api()}/providers/{provider}/checkpoints/{cid}", timeout=10).json()
        assert shown["checkpoint"]["protection_plan"]["resources"][0]["id"] == "vol.img"
        assert shown["checkpoint"]["extra_info"]["encryption"] == index["encryption"]  # the user sees how
    finally:
        service.stop()


def test_the_scan_finds_plaintext_in_a_clear_bank(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The control of the test above: the same protect with ``encryption = none`` leaves both traces."""
    bank = bank_under_test("fs", request, tmp_path)
    service, provider, plan, volume = _service(tmp_path, bank, encryption="none")
    try:
        _protect(service, provider, plan)
        objects = _objects(bank.plugin())
        chunks = [key for key in objects if classify(key) == "chunk"]
        assert len(chunks) == SIZE // CHUNK
        assert sorted(_plaintext_found(objects, volume)) == sorted(chunks)
        assert sorted(_named_by_plaintext(objects, volume)) == sorted(chunks)
    finally:
        service.stop()


def _verify(service: AllInOne, provider: str, cid: str) -> dict[str, Any]:
    api = service.api()
    response = requests.post(f"{api}/verifications", json={"verification": {
        "provider_id": provider, "checkpoint_id": cid, "parameters": {}}}, timeout=30)
    assert response.status_code == 200, response.text
    vid = response.json()["verification"]["id"]
    return wait_for(f"{api}/verifications/{vid}", "verification", {"success", "fail", "error"})


def _reasons(body: dict[str, Any]) -> str:
    return json.dumps(body.get("resources_reason") or body)


def test_tampering_fails_verify_and_restore_naming_the_object(request: pytest.FixtureRequest,
                                                              tmp_path: Path) -> None:
    bank = bank_under_test("fs", request, tmp_path)
    service, provider, plan, volume = _service(tmp_path, bank)
    plugin = bank.plugin()
    try:
        cid = _protect(service, provider, plan)
        objects = _objects(plugin)
        by_kind: dict[str, list[str]] = {}
        for key in sorted(objects):
            by_kind.setdefault(str(classify(key)), []).append(key)
        victims = [by_kind["chunk"][3], by_kind["manifest header"][0], by_kind["manifest part"][0],
                   by_kind["resource metadata"][0]]
        for number, key in enumerate(victims):
            original = objects[key]
            flipped = bytearray(original)
            flipped[len(flipped) // 2] ^= 0x01
            plugin.put_object(key, bytes(flipped))
            try:
                verified = _verify(service, provider, cid)
                assert verified["status"] != "success", (key, verified)
                assert key.rsplit("/", 1)[-1] in _reasons(verified), (key, verified)
                name = f"tampered-{number}.img"
                _, restored = restore_and_hash(service, provider, cid, name)
                assert restored["status"] == "fail", (key, restored)
                assert key.rsplit("/", 1)[-1] in _reasons(restored), (key, restored)
                assert not (service.volumes / name).exists()  # no unauthenticated byte became a volume
            finally:
                plugin.put_object(key, original)
        # Two chunks swapped: each is authentic, but not under its own key.
        first, second = by_kind["chunk"][0], by_kind["chunk"][1]
        plugin.put_object(first, objects[second])
        plugin.put_object(second, objects[first])
        verified = _verify(service, provider, cid)
        assert verified["status"] != "success" and first.rsplit("/", 1)[-1] in _reasons(verified), verified
        _, restored = restore_and_hash(service, provider, cid, "swapped.img")
        assert restored["status"] == "fail" and not (service.volumes / "swapped.img").exists(), restored
        plugin.put_object(first, objects[first])
        plugin.put_object(second, objects[second])
        digest, restored = restore_and_hash(service, provider, cid, "mended.img")
        assert restored["status"] == "success" and digest == hashlib.sha256(volume).hexdigest()
    finally:
        service.stop()


def plugin_key_ids(bank: BankUnderTest) -> str:
    """The one data key id of the bank, as JSON text."""
    ids = [key.rsplit("/", 1)[1] for key in bank.plugin().iter_objects(BankLayout.KEYS)
           if classify(key) == "wrapped data key"]
    assert len(ids) == 1, ids
    return json.dumps(ids[0])


def _manage(service: AllInOne, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MANAGE, "--config-file", str(service.config_file), *args],
                          capture_output=True, text=True, timeout=120)


def test_rotation_then_old_and_new_restore_and_a_missing_kek_is_named(request: pytest.FixtureRequest,
                                                                      tmp_path: Path) -> None:
    bank = bank_under_test("fs", request, tmp_path)
    service, provider, plan, volume = _service(tmp_path, bank)
    kek_file = service.state_dir / "key-encryption-keys.json"
    try:
        old_cid = _protect(service, provider, plan)
        assert kek_file.stat().st_mode & 0o777 == 0o600
        old_keks = set(json.loads(kek_file.read_text())["keys"])
        service.stop()

        rotated = _manage(service, "keys", "rotate", "--provider", provider)
        assert rotated.returncode == 0, rotated.stderr
        assert "rewrapped 1 data key(s)" in rotated.stdout and "Traceback" not in rotated.stderr
        new_keks = set(json.loads(kek_file.read_text())["keys"])
        assert len(new_keks) == 1 and not new_keks & old_keks  # the old KEK is gone from the key manager
        shown = _manage(service, "keys", "show", "--provider", provider)
        assert shown.returncode == 0 and next(iter(new_keks)) in shown.stdout, shown

        service.start()
        changed = bytearray(volume)
        changed[:MiB] = random.Random(2).randbytes(MiB)
        (service.volumes / "vol.img").write_bytes(bytes(changed))
        new_cid = _protect(service, provider, plan)
        for cid, want in ((old_cid, volume), (new_cid, bytes(changed))):
            digest, body = restore_and_hash(service, provider, cid, f"rotated-{cid[:8]}.img")
            assert body["status"] == "success", body
            assert digest == hashlib.sha256(want).hexdigest()
        service.stop()

        moved = tmp_path / "kek-elsewhere.json"
        shutil.move(kek_file, moved)
        service.start()
        response = requests.post(f"{service.api()}/restores", json={"restore": {
            "provider_id": provider, "checkpoint_id": new_cid,
            "parameters": {"OS::Cinder::Volume": {"restore_name": "no-kek.img"}}}}, timeout=30)
        assert response.status_code == 503, response.text
        message = response.json()["serviceUnavailable"]["message"]
        data_key = json.loads(plugin_key_ids(bank))
        assert f"data key {data_key} of project demo of bank 'fs' of provider 'Test fs'" in message, message
        assert "key-encryption key" in message and "does not have it" in message, message
        assert not (service.volumes / "no-kek.img").exists()
        assert not any("Traceback" in line for line in service.output), "".join(service.output)
        service.stop()
        shutil.move(moved, kek_file)  # the backed-up KEK file put back: all is readable again
        service.start()
        digest, body = restore_and_hash(service, provider, old_cid, "kek-back.img")
        assert body["status"] == "success" and digest == hashlib.sha256(volume).hexdigest(), body
    finally:
        if service.process is not None and service.process.poll() is None:
            service.stop()


def test_clear_checkpoints_of_before_stay_readable_beside_encrypted_ones(request: pytest.FixtureRequest,
                                                                         tmp_path: Path) -> None:
    bank = bank_under_test("fs", request, tmp_path)
    service, provider, plan, volume = _service(tmp_path, bank, encryption="none")
    plugin = bank.plugin()
    try:
        clear_cid = _protect(service, provider, plan)
        service.stop()
        # As an index written before encryption existed: format 1, no encryption field.
        key = BankLayout.index_key(clear_cid)
        index = json.loads(plugin.get_object(key))
        index["version"] = 1
        index.pop("encryption", None)
        plugin.put_object(key, json.dumps(index).encode())
        conf = next((tmp_path / "providers.d").glob("*.conf"))
        conf.write_text(conf.read_text().replace("encryption = none\n", ""))
        service.start()
        changed = bytearray(volume)
        changed[-MiB:] = random.Random(3).randbytes(MiB)
        (service.volumes / "vol.img").write_bytes(bytes(changed))
        sealed_cid = _protect(service, provider, plan)
        shown = requests.get(f"{service.api()}/providers/{provider}/checkpoints/{sealed_cid}", timeout=10).json()
        protected = shown["checkpoint"]["extra_info"]["protected"]["OS::Cinder::Volume#vol.img"]
        assert protected["mode"] == "full", protected  # a clear parent's chunk ids are not this one's
        listed = requests.get(f"{service.api()}/providers/{provider}/checkpoints", timeout=10).json()["checkpoints"]
        assert {c["id"]: "encryption" in c["extra_info"] for c in listed} == {clear_cid: False, sealed_cid: True}
        refused = requests.post(f"{service.api()}/providers/{provider}/checkpoints", json={"checkpoint": {
            "plan_id": plan, "extra_info": {"encryption": "none please"}}}, timeout=30)
        assert refused.status_code == 400 and "extra_info.encryption" in refused.text, refused.text
        for cid, want in ((clear_cid, volume), (sealed_cid, bytes(changed))):
            digest, body = restore_and_hash(service, provider, cid, f"mixed-{cid[:8]}.img")
            assert body["status"] == "success", body
            assert digest == hashlib.sha256(want).hexdigest()
            assert _verify(service, provider, cid)["status"] == "success"
        assert sha256(service.volumes / "vol.img") == hashlib.sha256(changed).hexdigest()
    finally:
        service.stop()


def test_start_up_says_loudly_where_the_local_kek_is_and_to_back_it_up(tmp_path: Path) -> None:
    """The embedded default keeps the key-encryption keys in a local file: the all-in-one's banner and a
    WARNING of its log both name that file and say to back it up."""
    with running_all_in_one(tmp_path) as service:
        pass
    key_file = service.state_dir / "key-encryption-keys.json"
    output = "".join(service.output)
    assert f"encryption keys : {key_file}  (BACK IT UP" in output, output
    [warning] = [line for line in service.output if "WARNING" in line and "key-encryption keys are in" in line]
    assert str(key_file) in warning and "BACK IT UP" in warning and "doc/encryption.md" in warning, warning
