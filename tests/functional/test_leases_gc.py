"""Leases, fencing and garbage collection with real processes and real banks (fs, Swift, S3 on moto).

Each protection service is a real ``strongroom-all-in-one`` process with its own
owner id; the bank is a directory, a container of the Swift all-in-one, or a
bucket of moto_server.  Lease windows are short (expire 8 s, renew 2 s) and
garbage collection runs every second.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from strongroom.bank_plugins.layout import BankLayout
from strongroom.bank_plugins.lease import LeaseWindows
from strongroom.protection.checkpoint import CheckpointStore
from tests.functional.banks import (
    BANK_KINDS,
    WINDOWS,
    BankUnderTest,
    bank_under_test,
    configure,
    create_plan,
    referenced_chunks,
    restore_and_hash,
    rewrite_blocks,
    sha256,
    start_checkpoint,
    stored_chunks,
    wait_progress,
    write_random_image,
)
from tests.functional.harness import AllInOne, MiB, providers_once_judged, wait_for
from tests.long import only_long

pytestmark = [pytest.mark.functional, pytest.mark.slow]

VOLUME_SIZE = 64 * MiB
#: Through the fault proxy: a protect and a restore of it make about a thousand requests (chunks at the
#: default 256 KiB, lease renewals, collection passes), so a 4% fault rate makes a dozen faults of every
#: kind or more (each stall costs a 3 s timeout).
FLAKY_VOLUME_SIZE = 48 * MiB
GC_INTERVAL = 1
#: zstd at level 15 protects the tests' compressible random data at a few MiB/s here (the probe compresses it): slow
#: enough to stop a writer early in a run.
SLOW = {"compression_level": 15}


def _kill_if_running(service: AllInOne) -> None:
    if service.process is not None and service.process.poll() is None:
        service.stop(signal.SIGKILL)


def _checkpoint(service: AllInOne, provider: str, cid: str) -> dict:
    url = f"{service.api()}/providers/{provider}/checkpoints/{cid}"
    return dict(requests.get(url, timeout=10).json()["checkpoint"])


def _chunk_temps(bank: BankUnderTest) -> list[Path]:
    """The temp files in the fs bank's chunk directories (deferred chunks no barrier published).  A walk
    that tolerates directories a sweep removes while it looks."""
    found = []
    for directory, _dirs, files in os.walk(Path(bank.options["path"]) / "objects" / "projects"):
        found += [Path(directory) / name for name in files if name.startswith(".tmp-")]
    return sorted(found)


@pytest.mark.parametrize("kind", BANK_KINDS)
def test_a_killed_writer_is_reclaimed_and_earlier_checkpoints_still_restore(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    bank = bank_under_test(kind, request, tmp_path)
    first, provider = configure(tmp_path, bank, "writer-1", volume=SLOW)
    first.start()
    try:
        image = first.volumes / "vol.img"
        # The earlier checkpoint holds a little data in a volume of the full size (a sparse tail read as
        # zeros): quick to protect at level 15; the rewrite below fills the whole volume for the doomed one.
        write_random_image(image, 8 * MiB, seed=1)
        os.truncate(image, VOLUME_SIZE)
        original = sha256(image)
        api = first.api()
        plan = create_plan(api, provider, "vol.img")
        good = start_checkpoint(api, provider, plan)
        body = wait_for(f"{api}/providers/{provider}/checkpoints/{good}", "checkpoint", {"available", "error"},
                        timeout=300)
        assert body["status"] == "available", body
        rewrite_blocks(image, every=1, seed=2)  # the next checkpoint has chunks of its own only: slow enough to stop
        doomed = start_checkpoint(api, provider, plan)
        wait_progress(f"{api}/providers/{provider}/checkpoints/{doomed}", 0.05)
        first.stop(signal.SIGKILL)
        killed_at = time.monotonic()
    finally:
        _kill_if_running(first)

    inspect = bank.bank()
    store = CheckpointStore(inspect)
    assert store.read(doomed).status == "protecting"
    assert store.read(doomed).owner_id == "writer-1"
    kept = referenced_chunks(inspect, good)
    if kind == "fs":
        # Its chunks waited for the barrier before the manifest header: a writer killed before it
        # published none (doc/data-path.md, "Durability").
        assert stored_chunks(inspect, "demo") == kept
        # ... but left them as unsynced temp files in the chunk directories, for the sweep to remove.
        assert _chunk_temps(bank), "the killed writer left no deferred chunk"
    else:
        assert stored_chunks(inspect, "demo") - kept, "the killed writer left no chunk of its own"

    second = AllInOne(state_dir=first.state_dir, config_file=configure(
        tmp_path, bank, "writer-2", volume=SLOW, name="second.conf")[0].config_file)
    second.start()
    try:
        url = f"{second.api()}/providers/{provider}/checkpoints/{doomed}"
        body = wait_for(url, "checkpoint", {"error", "available"}, timeout=WINDOWS.expire + GC_INTERVAL + 60)
        reclaimed_after = time.monotonic() - killed_at
        assert body["status"] == "error", body
        assert "writer-1 lost its lease" in body["status_reason"]
        # Not before the lease expired by the bank's clock (last renewed at most one renew window
        # before the kill), and soon after.
        assert reclaimed_after >= WINDOWS.expire - WINDOWS.renew - 1
        assert reclaimed_after <= WINDOWS.expire + GC_INTERVAL + 30, reclaimed_after
        print(f"{kind}: zombie reclaimed {reclaimed_after:.1f} s after SIGKILL")

        # None of the zombie's objects remain: its index says error, beside the reclaim marker.
        assert sorted(inspect.list(f"checkpoints/{doomed}/")) == [
            BankLayout.index_key(doomed), BankLayout.reclaimed_key(doomed)]
        assert store.read(doomed).status == "error"
        assert not [k for k in inspect.list(BankLayout.ACTIVE) if doomed in k]
        assert not [k for k in inspect.list("indices/by-") if doomed in k]
        # Its chunks go in the same collection pass, right after the reclaim (hundreds of 256 KiB chunks, a
        # lease check before each delete: a minute on a loaded machine).
        deadline = time.monotonic() + 60
        while stored_chunks(inspect, "demo") != kept and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stored_chunks(inspect, "demo") == kept
        if kind == "fs":  # and its deferred chunks' temp files (doc/lease-and-gc.md, "Chunk sweeps")
            while _chunk_temps(bank) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _chunk_temps(bank) == []
        logs = requests.get(f"{second.api()}/operation_logs", params={"checkpoint_id": doomed},
                            timeout=10).json()["operation_logs"]
        assert {log["operation_type"]: log["status"] for log in logs} == {"protect": "error", "reclaim": "success"}

        # The earlier checkpoint of the same volume is untouched and restores byte-identical.
        assert _checkpoint(second, provider, good)["status"] == "available"
        digest, restore = restore_and_hash(second, provider, good, "restored.img")
        assert restore["status"] == "success", restore
        assert digest == original
    finally:
        second.stop()


@pytest.mark.parametrize("kind", ["fs", "swift"])
def test_a_paused_writer_never_publishes(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    bank = bank_under_test(kind, request, tmp_path)
    writer, provider = configure(tmp_path, bank, "sleepy-writer", volume=SLOW)
    writer.start()
    assert writer.process is not None
    try:
        write_random_image(writer.volumes / "vol.img", VOLUME_SIZE, seed=3)
        api = writer.api()
        cid = start_checkpoint(api, provider, create_plan(api, provider, "vol.img"))
        url = f"{api}/providers/{provider}/checkpoints/{cid}"
        wait_progress(url, 0.1)
        os.kill(writer.process.pid, signal.SIGSTOP)
        try:
            time.sleep(WINDOWS.expire + 2)
            # Another collector (an operator's command here) judges the writer dead by its lease.
            gc_run = subprocess.run(
                [str(Path(sys.executable).parent / "strongroom-manage"), "--config-file", str(writer.config_file),
                 "bank", "gc", "--no-catalogue"], capture_output=True, text=True, timeout=120)
            assert gc_run.returncode == 0, gc_run.stderr
            assert "reclaimed 1 zombie checkpoint(s)" in gc_run.stdout, gc_run.stdout
        finally:
            os.kill(writer.process.pid, signal.SIGCONT)
        seen = set()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = requests.get(url, timeout=10).json()["checkpoint"]["status"]
            seen.add(status)
            if status != "protecting":
                break
            time.sleep(0.05)
        body = requests.get(url, timeout=10).json()["checkpoint"]
        assert "available" not in seen and body["status"] == "error", (seen, body)
        assert "sleepy-writer" in body["status_reason"]
        # The resumed writer's failure path leaves the index (error) beside the reclaim marker, nothing else.
        inspect = bank.bank()
        expected = [BankLayout.index_key(cid), BankLayout.reclaimed_key(cid)]
        deadline = time.monotonic() + 10
        while sorted(inspect.list(f"checkpoints/{cid}/")) != expected and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(inspect.list(f"checkpoints/{cid}/")) == expected
        assert CheckpointStore(inspect).read(cid).status == "error"
        assert not [k for k in inspect.list("indices/by-") if cid in k]
        assert requests.get(url, timeout=10).json()["checkpoint"]["status"] == "error"
    finally:
        writer.stop()


def test_an_unreachable_bank_makes_only_its_provider_unavailable(tmp_path: Path) -> None:
    """A Swift bank whose endpoint refuses connections: the service starts, that provider answers 503
    naming its bank, the local provider keeps working, and the bank's key never shows."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    state = tmp_path / "state"
    (state / "volumes").mkdir(parents=True)
    providers = tmp_path / "providers.d"
    providers.mkdir()
    local = "7b1c6a4e-2f0d-4c8e-9a51-3e2d8f6b0c11"
    (providers / "local.conf").write_text(
        f"[provider]\nname = Local\nid = {local}\nplugin = volume\nbank = fs\n"
        "[volume]\nblock_backend = loopback\n[loopback]\npath = {state_dir}/volumes\n[fs]\npath = {state_dir}/bank\n")
    remote = "5d0c8d7e-6a41-4f55-9d0e-1b2c3d4e5f60"
    secret = "s3cr3t-swift-key-never-shown"
    (providers / "remote.conf").write_text(
        f"[provider]\nname = Remote\nid = {remote}\nplugin = volume\nbank = swift\n"
        "[volume]\nblock_backend = loopback\n[loopback]\npath = {state_dir}/volumes\n"
        f"[swift]\nauth_url = http://127.0.0.1:{dead_port}/auth/v1.0\nauth_version = 1\nuser = test:tester\n"
        f"key = {secret}\ncontainer = backups\ntimeout = 2\n")
    conf = tmp_path / "strongroom.conf"
    conf.write_text(f"[DEFAULT]\nstate_dir = {state}\nproviders_dir = {providers}\n[api]\nbind_port = 0\n"
                    "[protection]\nbank_retry_attempts = 2\nbank_retry_initial_delay = 0.1\n")
    service = AllInOne(state_dir=state, config_file=conf)
    service.start()
    try:
        api = service.api()
        listed = providers_once_judged(api, remote)
        assert listed[local]["status"] == "available"
        assert listed[remote]["status"] == "unavailable"
        assert "bank 'swift' of provider 'Remote'" in listed[remote]["status_reason"]

        (service.volumes / "disk.img").write_bytes(os.urandom(2 * MiB))
        refused = requests.post(f"{api}/providers/{remote}/checkpoints",
                                json={"checkpoint": {"plan_id": create_plan(api, remote, "disk.img")}}, timeout=60)
        assert refused.status_code == 503, refused.text
        message = refused.json()
        assert "bank 'swift' of provider 'Remote'" in refused.text and "unavailable" in refused.text, message

        plan = create_plan(api, local, "disk.img")
        cid = start_checkpoint(api, local, plan)
        assert wait_for(f"{api}/providers/{local}/checkpoints/{cid}", "checkpoint",
                        {"available", "error"})["status"] == "available"
        for text in (refused.text, str(listed)):
            assert secret not in text
    finally:
        service.stop()
    assert secret not in "".join(service.output)


def _through(proxy_url: str, url: str) -> str:
    """``url`` with its scheme and authority replaced by the proxy's."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    proxy = urlsplit(proxy_url)
    return urlunsplit((proxy.scheme, proxy.netloc, parts.path, parts.query, parts.fragment))


@pytest.mark.parametrize("kind", ["s3", pytest.param("swift", marks=only_long)])  # the same retries, ~45 s each
def test_protect_and_restore_survive_a_flaky_network_and_fail_cleanly_on_a_dead_one(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from urllib.parse import urlsplit

    from tests.servers.faultproxy import FaultProxy

    direct = bank_under_test(kind, request, tmp_path)
    url_key = "auth_url" if kind == "swift" else "endpoint_url"
    target = urlsplit(direct.options[url_key])
    with FaultProxy(target.hostname or "127.0.0.1", target.port or 80, seed=20261126) as proxy:
        flaky = dataclasses.replace(direct, options={**direct.options, url_key: _through(proxy.url, target.geturl())})
        timeouts = {"timeout": 3} if kind == "swift" else {"read_timeout": 3, "connect_timeout": 3}
        # Lease windows that tolerate renewals delayed by stalls (each costs a 3 s timeout, then retries).
        service, provider = configure(tmp_path, flaky, "flaky-writer", bank_overrides=timeouts,
                                      protection={"bank_retry_attempts": 6},
                                      windows=LeaseWindows(expire=30, renew=10, validity=5))
        service.start()
        try:
            api = service.api()
            proxy.set_faults(rate=0.04, kinds=("5xx", "reset", "stall"), stall_seconds=4)
            original = write_random_image(service.volumes / "vol.img", FLAKY_VOLUME_SIZE, seed=5)
            plan = create_plan(api, provider, "vol.img")
            good = start_checkpoint(api, provider, plan)
            body = wait_for(f"{api}/providers/{provider}/checkpoints/{good}", "checkpoint", {"available", "error"},
                            timeout=600)
            assert body["status"] == "available", body["status_reason"]
            digest, restore = restore_and_hash(service, provider, good, "restored.img", timeout=600)
            assert restore["status"] == "success", restore
            assert digest == original
            faults = proxy.stats().faults
            print(f"{kind}: {FLAKY_VOLUME_SIZE // MiB} MiB protected and restored through "
                  f"{proxy.stats().requests} requests, faults injected {faults}")
            assert sum(faults.values()) >= 10 and all(faults.values()), faults

            # Every request fails: the checkpoint ends error naming the bank, and nothing is half-visible.
            (service.volumes / "other.img").write_bytes(os.urandom(64 * MiB))
            doomed = start_checkpoint(api, provider, create_plan(api, provider, "other.img"))
            proxy.set_faults(rate=1.0, kinds=("5xx", "reset"))
            seen = set()
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                body = _checkpoint(service, provider, doomed)
                seen.add(body["status"])
                if body["status"] != "protecting":
                    break
                time.sleep(0.1)
            assert body["status"] == "error", body
            assert f"bank '{kind}' of provider 'Test {kind}'" in body["status_reason"], body["status_reason"]
            proxy.set_faults(rate=0)
            # Once the bank answers again, the writer's leftovers are reclaimed: the index says error and
            # no other object of the checkpoint remains; it never looked available anywhere.
            inspect = dataclasses.replace(direct, state_dir=flaky.state_dir).bank()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                seen.add(_checkpoint(service, provider, doomed)["status"])
                left = set(inspect.list(f"checkpoints/{doomed}/"))
                if (CheckpointStore(inspect).read(doomed).status == "error"
                        and left <= {BankLayout.index_key(doomed), BankLayout.reclaimed_key(doomed)}
                        and not [k for k in inspect.list(BankLayout.ACTIVE) if doomed in k]):
                    break
                time.sleep(0.5)
            assert CheckpointStore(inspect).read(doomed).status == "error"
            assert set(inspect.list(f"checkpoints/{doomed}/")) <= {BankLayout.index_key(doomed),
                                                                   BankLayout.reclaimed_key(doomed)}
            assert not [k for k in inspect.list("indices/") if doomed in k]
            assert "available" not in seen
            assert _checkpoint(service, provider, good)["status"] == "available"
        finally:
            proxy.set_faults(rate=0)
            service.stop()
