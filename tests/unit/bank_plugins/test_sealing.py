"""Sealed objects, keyrings and the strongroom-local key manager, on a memory bank and a real KEK file."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from strongroom import config, exceptions, keys
from strongroom.bank_plugins import Bank
from strongroom.bank_plugins.keyring import Keyring
from strongroom.bank_plugins.layout import BankLayout
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.bank_plugins.sealing import Keyset, Sealer, is_sealed, key_id_of, scope
from strongroom.datamover import hashing

CHUNK = "projects/p1/chunks/ab/" + "ab" * 32
PART = "checkpoints/c1/resources/OS::Cinder::Volume#v/data/parts/00000000"


@pytest.fixture
def kek(tmp_path: Path) -> keys.CastellanKek:
    return keys.kek_source(config.new_conf(overrides={"DEFAULT": {"state_dir": str(tmp_path)}}))


def _bank(kek: keys.CastellanKek, encrypt: bool = True) -> Bank:
    bank = Bank(MemoryBank(), name="mem")
    bank.keyring = Keyring(bank, kek, name="bank 'mem' of provider 'Test'")
    bank.encrypt = encrypt
    return bank


def _index(bank: Bank, cid: str, project: str, encrypted: bool) -> None:
    encryption = bank.encryption_of(project) if encrypted else None
    bank.put_json(BankLayout.index_key(cid), {"id": cid, "project_id": project, "status": "protecting",
                                              **({"encryption": encryption} if encryption else {})})


def test_scope_names_exactly_the_kinds_that_hold_data_or_names() -> None:
    assert scope(CHUNK) == ("chunk", "p1")
    assert scope(PART) == ("checkpoint", "c1")
    for clear in ("checkpoints/c1/index.json", "checkpoints/c1/reclaimed", "indices/active/o/c1", "leases/o",
                  "keys/p1/0123456789abcdef", "keys/kek", "gc/sweeping/p1/o", "projects/p1/other"):
        assert scope(clear) is None, clear


def test_a_sealed_object_is_bound_to_its_key_and_to_every_byte() -> None:
    sealer = Sealer(Keyset.generate("p1"))
    blob = sealer.seal(CHUNK, b"secret volume bytes")
    assert is_sealed(blob) and key_id_of(blob) == sealer.keyset.key_id and b"secret" not in blob
    assert sealer.unseal(CHUNK, blob) == b"secret volume bytes"
    with pytest.raises(exceptions.SealedObjectRejected, match="moved"):
        sealer.unseal(CHUNK.replace("ab/", "ac/"), blob)  # the same object under another key
    for index in range(len(blob)):
        tampered = bytearray(blob)
        tampered[index] ^= 0x80
        with pytest.raises(exceptions.SealedObjectRejected):
            sealer.unseal(CHUNK, bytes(tampered))
    with pytest.raises(exceptions.SealedObjectRejected):
        Sealer(Keyset.generate("p1")).unseal(CHUNK, blob)  # another key of the same project


def test_the_bank_seals_on_the_way_in_and_opens_on_the_way_out(kek: keys.CastellanKek) -> None:
    bank = _bank(kek)
    _index(bank, "c1", "p1", encrypted=True)
    bank.put(CHUNK, b"chunk bytes")
    bank.put(PART, b"manifest part")
    raw = bank.plugin.get_object(CHUNK)
    assert is_sealed(raw) and b"chunk bytes" not in raw
    assert bank.get(CHUNK) == b"chunk bytes" and bank.open(PART).read() == b"manifest part"
    # A fresh facade over the same storage (another process) reads it back through the bank's keys alone.
    other = Bank(bank.plugin, name="mem")
    other.keyring = Keyring(other, kek)
    assert other.get(PART) == b"manifest part" and other.get(CHUNK) == b"chunk bytes"
    # In an encrypted checkpoint a clear object is refused, never taken as data.
    bank.plugin.put_object(PART, b"planted in the clear")
    with pytest.raises(exceptions.SealedObjectRejected, match="not sealed"):
        other.get(PART)


def test_clear_checkpoints_stay_clear_and_readable(kek: keys.CastellanKek) -> None:
    bank = _bank(kek, encrypt=False)
    _index(bank, "c1", "p1", encrypted=False)
    bank.put(PART, b"clear part")
    bank.put(CHUNK, b"clear chunk")
    assert bank.plugin.get_object(PART) == b"clear part" and bank.plugin.get_object(CHUNK) == b"clear chunk"
    sealing_bank = _bank(kek)
    sealing_bank.plugin = bank.plugin
    assert sealing_bank.get(PART) == b"clear part"


def test_one_keyset_per_project_and_concurrent_creators_converge(kek: keys.CastellanKek) -> None:
    bank = _bank(kek)
    rings = [Keyring(bank, kek) for _ in range(6)]
    chosen: list[str] = []
    threads = [threading.Thread(target=lambda r=r: chosen.append(r.current("p1").key_id)) for r in rings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = [k.rsplit("/", 1)[1] for k in bank.list(BankLayout.keys_prefix("p1"))]
    assert set(chosen) <= set(stored)
    assert Keyring(bank, kek).current("p1").key_id == min(stored)  # every later run takes the smallest
    assert Keyring(bank, kek).current("p2").key_id != min(stored)  # dedup, and keys, are per project


def test_rotation_rewraps_without_touching_data_and_retires_the_old_kek(kek: keys.CastellanKek,
                                                                        tmp_path: Path) -> None:
    bank = _bank(kek)
    _index(bank, "c1", "p1", encrypted=True)
    bank.put(PART, b"before rotation")
    sealed_before = bank.plugin.get_object(PART)
    old_kek = json.loads(bank.get("keys/kek"))["kek_id"]
    rotation = bank.keyring.rotate()  # type: ignore[union-attr]
    assert rotation.rewrapped == 1 and rotation.old_kek_ids == (old_kek,)
    assert bank.plugin.get_object(PART) == sealed_before  # no data object rewritten
    fresh = Bank(bank.plugin, name="mem")
    fresh.keyring = Keyring(fresh, kek, name="bank 'mem'")
    assert fresh.get(PART) == b"before rotation"
    with pytest.raises(exceptions.KeyUnavailable, match=f"key-encryption key {old_kek}"):
        kek.get(old_kek)
    # Without the KEK file nothing is readable, and the error names the data key, the KEK and the bank.
    os.rename(tmp_path / "key-encryption-keys.json", tmp_path / "elsewhere.json")
    lost = Bank(bank.plugin, name="mem")
    lost.keyring = Keyring(lost, kek, name="bank 'mem'")
    with pytest.raises(exceptions.KeyUnavailable) as caught:
        lost.get(PART)
    message = str(caught.value)
    assert "of project p1 of bank 'mem'" in message and rotation.new_kek_id in message, message
    assert "does not have it" in message


def test_a_wrong_kek_is_told_from_a_missing_one(kek: keys.CastellanKek) -> None:
    bank = _bank(kek)
    keyset = bank.keyring.current("p1")  # type: ignore[union-attr]
    key = BankLayout.wrapped_key("p1", keyset.key_id)
    wrapped = json.loads(bank.get(key))
    wrapped["kek_id"] = kek.create()  # a real KEK, but not the one it was wrapped with
    bank.put(key, json.dumps(wrapped).encode())
    with pytest.raises(exceptions.KeyUnavailable, match="does not unwrap it"):
        Keyring(bank, kek).get("p1", keyset.key_id)


def test_the_local_kek_file_is_private_and_survives_concurrent_writers(kek: keys.CastellanKek,
                                                                       tmp_path: Path) -> None:
    made: list[str] = []
    threads = [threading.Thread(target=lambda: made.append(kek.create())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    path = tmp_path / "key-encryption-keys.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert set(json.loads(path.read_text())["keys"]) == set(made) and len(made) == 8
    assert all(len(kek.get(k)) == 32 for k in made)


def test_keyed_chunk_ids_need_their_key_and_differ_from_plain_digests() -> None:
    name = hashing.keyed_name("sha256", "0123456789abcdef")
    assert name == "hmac-sha256:0123456789abcdef" and hashing.key_id_of(name) == "0123456789abcdef"
    assert hashing.base_of(name) == "sha256"
    with pytest.raises(exceptions.InvalidInput, match="needs its chunk-id key"):
        hashing.hasher(name)
    data = b"x" * 4096
    keyed = hashing.hasher(name, b"k" * 32)(data)
    assert hashing.is_digest(keyed) and keyed != hashing.hasher("sha256")(data)
    assert keyed != hashing.hasher(name, b"j" * 32)(data)
    blake = hashing.hasher(hashing.keyed_name("blake3", "0123456789abcdef"), b"k" * 32)(data)
    assert hashing.is_digest(blake) and blake != hashing.hasher("blake3")(data)


def test_an_encrypted_checkpoint_names_its_resources_opaquely(kek: keys.CastellanKek) -> None:
    bank = _bank(kek)
    _index(bank, "c1", "p1", encrypted=True)
    _index(bank, "c2", "p1", encrypted=True)
    segment = bank.resource_segment("c1", "OS::Cinder::Volume#payroll.img")
    assert segment.startswith("r") and len(segment) == 33 and "payroll" not in segment
    assert bank.resource_segment("c2", "OS::Cinder::Volume#payroll.img") == segment  # stable: parents are found
    assert bank.resource_segment("c1", "OS::Cinder::Volume#other.img") != segment
    clear = _bank(kek, encrypt=False)
    _index(clear, "c3", "p1", encrypted=False)
    assert clear.resource_segment("c3", "OS::Cinder::Volume#payroll.img") == "OS::Cinder::Volume#payroll.img"


def test_rotating_a_bank_with_nothing_encrypted_makes_no_kek(kek: keys.CastellanKek, tmp_path: Path) -> None:
    bank = _bank(kek)
    rotation = bank.keyring.rotate()  # type: ignore[union-attr]
    assert rotation.rewrapped == 0 and "nothing to rotate" in rotation.describe()
    assert not (tmp_path / "key-encryption-keys.json").exists() and not bank.list("keys/")
