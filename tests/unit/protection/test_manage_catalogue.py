"""``strongroom-manage catalogue rebuild`` as an operator runs it, on a real fs bank: its refusals and exit codes
(the rebuild itself: ``test_catalogue_rebuild.py``; the whole recovery: ``tests/functional/test_disaster_drill.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from strongroom.bank_plugins import Bank
from strongroom.bank_plugins.fs import FilesystemBank
from strongroom.bank_plugins.layout import BankLayout
from strongroom.bank_plugins.lease import BankLease, LeaseWindows
from strongroom.clock import Clock
from strongroom.objects.records import CheckpointRecord
from strongroom.protection.catalogue import CheckpointCatalogue

PROVIDER = "33333333-3333-4444-5555-666666666666"


def _manage(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STRONGROOM_STATE_DIR"}
    return subprocess.run([sys.executable, "-m", "strongroom.cmd.manage", "--config-file", str(conf), *args],
                          env=env, capture_output=True, text=True, timeout=120)


def test_rebuild_from_the_command_line(tmp_path: Path) -> None:
    state, providers = tmp_path / "state", tmp_path / "providers.d"
    providers.mkdir()
    (state / "volumes").mkdir(parents=True)
    (providers / "fs.conf").write_text(f"""
[provider]
name = Shared
id = {PROVIDER}
plugin = volume
bank = fs
[volume]
block_backend = loopback
[loopback]
path = {{state_dir}}/volumes
[fs]
path = {{state_dir}}/bank
""")
    conf = tmp_path / "strongroom.conf"
    conf.write_text(f"[DEFAULT]\nstate_dir = {state}\nproviders_dir = {providers}\n")
    bank = Bank(FilesystemBank({"path": str(state / "bank")}), name="fs")
    writer = CheckpointCatalogue(bank, None, Clock(), provider_id=PROVIDER)
    for cid, owner in (("cp-done", "worker-1"), ("cp-running", "worker-2")):
        writer.begin_protect(CheckpointRecord(id=cid, provider_id=PROVIDER, project_id="proj", status="protecting",
                                              plan_id="plan-1", owner_id=owner, resource_graph="[{}, []]"))
    writer.publish("cp-done", owner_id="worker-1", bytes_done=0)
    BankLease(bank.plugin, "worker-2", LeaseWindows.from_options({})).acquire_lease()  # cp-running's writer

    no_schema = _manage(conf, "catalogue", "rebuild", "--provider", PROVIDER)
    assert no_schema.returncode == 1
    assert "schema revision none" in no_schema.stderr and "run 'strongroom-manage db sync' first" in no_schema.stderr
    assert _manage(conf, "db", "sync").returncode == 0

    missing = _manage(conf, "catalogue", "rebuild")
    assert missing.returncode == 2 and "--provider" in missing.stderr
    unknown = _manage(conf, "catalogue", "rebuild", "--provider", "nope")
    assert unknown.returncode == 1 and "Provider nope could not be found" in unknown.stderr

    run = _manage(conf, "catalogue", "rebuild", "--provider", PROVIDER, "--verbose")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        f"bank 'fs' of provider 'Shared' (provider {PROVIDER}): 2 checkpoint index(es)",
        "  added 1 checkpoint(s): 1 available",
        "    cp-done (available)",
        "  added 1 plan(s), suspended, described as recovered",
        "    plan plan-1",
        "  skipped 1 being written by a live owner (its writer adds its row; rebuild again once it ends)",
        "    cp-running: protecting by worker-2",
    ]

    bank.put(BankLayout.index_key("cp-torn"), b"{")
    torn = _manage(conf, "catalogue", "rebuild", "--provider", PROVIDER)
    assert torn.returncode == 1
    assert "skipped 1 unreadable indices (first: cp-torn: " in torn.stdout
    assert "skipped 1 already in the catalogue" in torn.stdout
    assert "checkpoint cp-torn: index unreadable" in torn.stderr
