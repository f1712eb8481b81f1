"""The protection service's side of the volume data route, on the real manager (memory bank, sqlite, memory
volumes, as ``test_gc``): the bytes a range answers and who may read them."""

from __future__ import annotations

import base64
import os

import pytest

from strongroom import exceptions
from strongroom.context import get_context
from strongroom.protection import volume_data
from strongroom.protection.manager import ProtectionManager
from tests.unit.protection import test_gc
from tests.unit.protection.test_gc import CTX, PROVIDER, protect_volume

clock, db, registry, manager = test_gc.clock, test_gc.db, test_gc.registry, test_gc.manager
VOLUME = "OS::Cinder::Volume"


def _key(manager: ProtectionManager, cid: str) -> str:
    [resource] = manager.db.get_checkpoint(cid).protection_plan["resources"]
    return f"{VOLUME}#{resource['id']}"


def test_ranges_answer_the_protected_bytes(manager: ProtectionManager) -> None:
    data = os.urandom(300_000)
    cid = protect_volume(manager, data)
    key = _key(manager, cid)
    volume = data + bytes((1 << 20) - len(data))
    for offset, length in ((0, 10), (299_990, 20), (123_456, 500_000), ((1 << 20) - 5, 100), (1 << 20, 10)):
        answer = manager.read_resource_data(CTX, PROVIDER, cid, key, offset, length)
        assert answer["size"] == 1 << 20
        assert base64.b64decode(answer["data"]) == volume[offset:offset + length]


def test_a_range_is_capped_and_the_reader_is_kept(manager: ProtectionManager, monkeypatch: pytest.MonkeyPatch) -> None:
    cid = protect_volume(manager, os.urandom(200_000))
    key = _key(manager, cid)
    monkeypatch.setattr(volume_data, "MAX_RANGE", 1000)
    answer = manager.read_resource_data(CTX, PROVIDER, cid, key, 0, 5000)
    assert len(base64.b64decode(answer["data"])) == 1000
    reader = manager.volume_data.reader(PROVIDER, manager.registry.get(PROVIDER).bank, "proj", cid, key)
    manager.read_resource_data(CTX, PROVIDER, cid, key, 1000, 1000)
    assert manager.volume_data.reader(PROVIDER, manager.registry.get(PROVIDER).bank, "proj", cid, key) is reader


def test_what_cannot_be_read_is_refused_naming_it(manager: ProtectionManager) -> None:
    cid = protect_volume(manager, os.urandom(100_000))
    key = _key(manager, cid)
    with pytest.raises(exceptions.NotFound, match="other.img"):
        manager.read_resource_data(CTX, PROVIDER, cid, f"{VOLUME}#other.img", 0, 10)
    with pytest.raises(exceptions.NotFound):  # another project's checkpoint is not there for this caller
        manager.read_resource_data(get_context("someone-else"), PROVIDER, cid, key, 0, 10)
    with pytest.raises(exceptions.InvalidInput, match="negative"):
        manager.read_resource_data(CTX, PROVIDER, cid, key, -1, 10)
    manager.db.update_checkpoint(cid, {"status": "error"}, check=False)
    with pytest.raises(exceptions.Conflict, match="only an available checkpoint"):
        manager.read_resource_data(CTX, PROVIDER, cid, key, 0, 10)
