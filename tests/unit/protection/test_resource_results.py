"""What a checkpoint keeps of each resource's protect (``extra_info.protected``): logical size, bytes stored,
status and the seconds its hooks ran, timed by the injected clock; the bank's index and the catalogue agree.

Real parts as in ``test_gc`` (a memory bank on a fake clock, sqlite catalogue, memory volumes).
"""

from __future__ import annotations

import pytest

from strongroom.clock import FakeClock
from strongroom.protection.checkpoint import CheckpointStore
from strongroom.protection.manager import ProtectionManager
from strongroom.protection.plugins import volume as volume_plugin
from tests.unit.protection import test_gc
from tests.unit.protection.test_incrementals import SIZE, Volume

clock, db, registry, manager = test_gc.clock, test_gc.db, test_gc.registry, test_gc.manager


def test_a_protect_records_size_stored_bytes_status_and_seconds(manager: ProtectionManager, clock: FakeClock,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    main = volume_plugin.ProtectOperation.on_main

    def slow_main(self: volume_plugin.ProtectOperation, ctx: volume_plugin.OperationContext) -> None:
        clock.advance(2.5)  # the backup takes 2.5 s on the injected clock
        main(self, ctx)

    monkeypatch.setattr(volume_plugin.ProtectOperation, "on_main", slow_main)
    vol = Volume(manager)
    vol.write(0, b"s" * 8192)
    cid, info = vol.protect()
    assert info["size_bytes"] == SIZE
    assert 0 < info["bytes_stored"] < SIZE  # mostly zeros, compressed
    assert info["status"] == "available"
    assert info["seconds"] == 2.5  # only the hooks' time, measured by the run's clock
    in_bank = CheckpointStore(test_gc.bank_of(manager)).read(cid)
    assert in_bank.extra_info["protected"][vol.key] == info  # the bank first, the catalogue the same
    second, again = vol.protect()
    assert (again["mode"], again["size_bytes"], again["seconds"]) == ("incremental", SIZE, 2.5)
    assert again["bytes_stored"] < info["bytes_stored"]


def test_a_failed_protect_says_which_resource_failed_and_how_long_it_ran(
        manager: ProtectionManager, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_main(self: volume_plugin.ProtectOperation, ctx: volume_plugin.OperationContext) -> None:
        clock.advance(1.5)
        raise RuntimeError("the disk caught fire")

    monkeypatch.setattr(volume_plugin.ProtectOperation, "on_main", failing_main)
    vol = Volume(manager, "failing")
    vol.write(0, b"f" * 4096)
    record = manager.protect(test_gc.CTX, vol.plan.to_dict(), test_gc.PROVIDER, {})
    manager.wait_idle()
    checkpoint = manager.db.get_checkpoint(str(record["id"]))
    assert checkpoint.status == "error" and "the disk caught fire" in str(checkpoint.status_reason)
    assert checkpoint.extra_info["protected"] == {vol.key: {"status": "error", "seconds": 1.5}}
    in_bank = CheckpointStore(test_gc.bank_of(manager)).read(checkpoint.id)
    assert in_bank.extra_info["protected"] == checkpoint.extra_info["protected"]
