"""Strongroom's key-encryption keys in a real Barbican (and its Keystone), through castellan, as deployed.

The configuration is what an operator writes in ``strongroom.conf`` (``[key_manager] backend = barbican`` and
the service user's Keystone credentials; tests/servers/barbican.py): the keyring wraps data keys with a KEK it
made in Barbican, rotation rewraps them under a new one and deletes the old one from Barbican, and a KEK
deleted behind Strongroom's back gives an error naming the data key, the KEK and the bank.  Then the whole
service: an all-in-one whose KEK is in Barbican protects and restores a volume byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from strongroom import config, exceptions, keys
from strongroom.bank_plugins import Bank
from strongroom.bank_plugins.keyring import Keyring
from strongroom.bank_plugins.layout import BankLayout
from strongroom.bank_plugins.memory import MemoryBank
from tests.functional.banks import bank_under_test, configure, create_plan, restore_and_hash, start_checkpoint
from tests.functional.harness import MiB, wait_for
from tests.servers.barbican import BarbicanServer

PART = "checkpoints/c1/resources/OS::Cinder::Volume#v/data/parts/00000000"


def _conf(barbican: BarbicanServer, tmp_path: Path) -> object:
    path = tmp_path / "strongroom.conf"
    path.write_text(f"[DEFAULT]\nstate_dir = {tmp_path / 'state'}\n" + barbican.castellan_config_text())
    return config.new_conf(["--config-file", str(path)])


def _bank(kek: keys.CastellanKek, plugin: MemoryBank) -> Bank:
    bank = Bank(plugin, name="mem")
    bank.keyring = Keyring(bank, kek, name="bank 'mem' of provider 'Cloud'")
    return bank


def test_barbican_holds_the_kek_through_rotation_and_loss(barbican_server: BarbicanServer, tmp_path: Path) -> None:
    kek = keys.kek_source(_conf(barbican_server, tmp_path))  # type: ignore[arg-type]
    assert kek.name == "key manager 'barbican'"
    plugin = MemoryBank()
    bank = _bank(kek, plugin)
    bank.encrypt = True
    bank.put_json(BankLayout.index_key("c1"), {"id": "c1", "project_id": "p1", "encryption": bank.encryption_of("p1")})
    bank.put(PART, b"a manifest part")
    first_kek = json.loads(bank.get(BankLayout.CURRENT_KEK))["kek_id"]
    assert barbican_server.barbican_api("GET", f"/secrets/{first_kek}").status_code == 200
    assert b"a manifest part" not in plugin.get_object(PART)
    assert not (tmp_path / "state" / "key-encryption-keys.json").exists()  # nothing local: Barbican has it

    rotation = bank.keyring.rotate()  # type: ignore[union-attr]
    assert rotation.rewrapped == 1 and rotation.old_kek_ids == (first_kek,)
    assert barbican_server.barbican_api("GET", f"/secrets/{first_kek}").status_code == 404
    assert _bank(kek, plugin).get(PART) == b"a manifest part"  # a new process unwraps with the new KEK

    barbican_server.barbican_api("DELETE", f"/secrets/{rotation.new_kek_id}")
    with pytest.raises(exceptions.KeyUnavailable) as caught:
        _bank(keys.kek_source(_conf(barbican_server, tmp_path)), plugin).get(PART)  # type: ignore[arg-type]
    message = str(caught.value)
    assert f"its key-encryption key {rotation.new_kek_id}" in message and "bank 'mem' of provider 'Cloud'" in message
    assert "key manager 'barbican' does not have it" in message, message
    assert barbican_server.account().password not in message


@pytest.mark.functional
def test_a_service_with_its_kek_in_barbican_protects_and_restores(barbican_server: BarbicanServer,
                                                                   request: pytest.FixtureRequest,
                                                                   tmp_path: Path) -> None:
    service, provider = configure(tmp_path, bank_under_test("fs", request, tmp_path), "aio-barbican")
    with open(service.config_file, "a") as conf:
        conf.write("\n" + barbican_server.castellan_config_text())
    data = random.Random(4).randbytes(4 * MiB)
    (service.volumes / "vol.img").write_bytes(data)
    service.start()
    try:
        assert any("key manager 'barbican'" in line for line in service.output), service.output
        plan = create_plan(service.api(), provider, "vol.img")
        cid = start_checkpoint(service.api(), provider, plan)
        body = wait_for(f"{service.api()}/providers/{provider}/checkpoints/{cid}", "checkpoint",
                        {"available", "error"})
        assert body["status"] == "available", body
        digest, restored = restore_and_hash(service, provider, cid, "back.img")
        assert restored["status"] == "success" and digest == hashlib.sha256(data).hexdigest(), restored
        assert not (service.state_dir / "key-encryption-keys.json").exists()
        logs = "".join(service.output)
        assert barbican_server.account().password not in logs
    finally:
        service.stop()
