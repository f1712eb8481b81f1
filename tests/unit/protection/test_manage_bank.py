"""``strongroom-manage bank leases`` and ``bank gc [--dry-run]`` as an operator runs them, on a real fs bank."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from strongroom.bank_plugins import Bank
from strongroom.bank_plugins.fs import FilesystemBank
from strongroom.bank_plugins.layout import BankLayout
from strongroom.bank_plugins.lease import BankLease, LeaseWindows
from strongroom.block.loopback import LoopbackBackend
from strongroom.clock import Clock
from strongroom.datamover import ChunkStore
from strongroom.objects.records import CheckpointRecord
from strongroom.protection.catalogue import CheckpointCatalogue
from strongroom.protection.checkpoint import CheckpointStore
from strongroom.protection.snapshots import run_tags

PROVIDER = "22222222-3333-4444-5555-666666666666"
WINDOWS = LeaseWindows(expire=2, renew=1, validity=1)


def _manage(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STRONGROOM_STATE_DIR"}
    return subprocess.run([sys.executable, "-m", "strongroom.cmd.manage", "--config-file", str(conf), *args],
                          env=env, capture_output=True, text=True, timeout=120)


def test_leases_and_gc_from_the_command_line(tmp_path: Path) -> None:
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
lease_expire_window = {WINDOWS.expire}
lease_renew_window = {WINDOWS.renew}
lease_validity_window = {WINDOWS.validity}
""")
    conf = tmp_path / "strongroom.conf"
    conf.write_text(f"[DEFAULT]\nstate_dir = {state}\nproviders_dir = {providers}\n"
                    f"[protection]\ngc_chunk_grace_period = 0\n")
    assert _manage(conf, "db", "sync").returncode == 0

    # A writer that died mid-protect: its lease, marker, index, a manifest part and a chunk.
    bank = Bank(FilesystemBank({"path": str(state / "bank")}), name="fs")
    lease = BankLease(bank.plugin, "worker-7", WINDOWS)
    lease.acquire_lease()
    store = CheckpointStore(bank)
    writer = CheckpointCatalogue(bank, None, Clock(), provider_id=PROVIDER)  # the dead writer's, bank only
    writer.begin_protect(CheckpointRecord(id="cp-zombie", provider_id=PROVIDER, project_id="proj", status="protecting",
                                  owner_id="worker-7", resource_graph="[{}, []]"))
    store.resource_section("cp-zombie", "OS::Cinder::Volume#v").put("data/parts/000000", b"part")
    chunks = ChunkStore(bank.section(BankLayout.chunks_prefix("proj")))
    chunks.put(chunks.hash(b"orphan chunk"), b"orphan chunk")
    chunks.barrier()  # durable, as the chunks of a writer that died after a barrier
    # ... and the snapshot it was reading, beside an operator's own.
    volumes = LoopbackBackend({"path": str(state / "volumes")})
    volumes.create_volume(1 << 20, name="v")
    orphan = volumes.create_snapshot("v", run_tags(PROVIDER, "cp-zombie")).id
    operators = volumes.create_snapshot("v").id

    alive = _manage(conf, "bank", "leases")
    assert alive.returncode == 0, alive.stderr
    assert "worker-7" in alive.stdout and "alive" in alive.stdout
    assert "bank 'fs' of provider 'Shared'" in alive.stdout

    time.sleep(WINDOWS.expire + 1.5)
    expired = _manage(conf, "bank", "leases")
    assert "worker-7" in expired.stdout and "expired" in expired.stdout

    before = sorted(bank.list("checkpoints/")) + sorted(bank.list("projects/"))
    dry = _manage(conf, "bank", "gc", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would reclaim 1 zombie checkpoint(s)" in dry.stdout
    assert "cp-zombie" in dry.stdout and "worker-7" in dry.stdout and "1 unreferenced chunk(s)" in dry.stdout
    assert sorted(bank.list("checkpoints/")) + sorted(bank.list("projects/")) == before
    assert f"would reclaim block snapshot loopback/{orphan} (checkpoint cp-zombie)" in dry.stdout
    assert {s.id for s in volumes.list_snapshots()} == {orphan, operators}

    run = _manage(conf, "bank", "gc", "--provider", PROVIDER)
    assert run.returncode == 0, run.stderr
    assert "reclaimed 1 zombie checkpoint(s)" in run.stdout and "1 unreferenced chunk(s)" in run.stdout
    assert store.read("cp-zombie").status == "error"
    assert bank.list("checkpoints/cp-zombie/") == ["checkpoints/cp-zombie/index.json",
                                                  "checkpoints/cp-zombie/reclaimed"]
    assert bank.list("projects/") == [] and bank.list("indices/active/") == []
    assert "reclaimed 1 block snapshot(s) of interrupted protects" in run.stdout
    assert [s.id for s in volumes.list_snapshots()] == [operators]
    # The command's own lease is released when it is done.
    assert [k for k in bank.list("leases/") if k.startswith("leases/manage-")] == []

    again = _manage(conf, "bank", "gc")
    assert "reclaimed 0 zombie checkpoint(s)" in again.stdout

    unknown = _manage(conf, "bank", "gc", "--provider", "nope")
    assert unknown.returncode == 1 and "Provider nope could not be found" in unknown.stderr
