"""The deployed topology as real processes: one ``strongroom-api``, two ``strongroom-protection`` workers,
RabbitMQ for RPC, PostgreSQL (or MariaDB) for metadata and taskflow persistence, Redis for the jobboard, a
shared filesystem bank and shared loopback volumes.  Servers unreachable: SKIP, or FAIL with ``CI=true``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.functional.banks import sha256, write_random_image
from tests.functional.harness import MiB
from tests.servers import require_port, unavailable
from tests.unit.db.conftest import Server

BIN = Path(sys.executable).parent
PROVIDER = "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"
ADMIN = "topology-admin-token"
CLAIM_EXPIRY = 3

pytestmark = [pytest.mark.functional, pytest.mark.slow]


@dataclasses.dataclass
class Topology:
    tmp: Path
    state: Path
    url: str = ""
    processes: dict[str, subprocess.Popen[str]] = dataclasses.field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"{self.url}/v1/demo"

    def conf(self, host: str) -> Path:
        return self.tmp / f"{host}.conf"

    def start(self, host: str, program: str) -> subprocess.Popen[str]:
        log = open(self.tmp / f"{host}.log", "a")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([str(BIN / program), "--config-file", str(self.conf(host))], stdout=log,
                                stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                start_new_session=True)
        self.processes[host] = proc
        return proc

    def kill(self, host: str) -> None:
        proc = self.processes.pop(host)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted(self.tmp.glob("*.log")))

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = requests.get(f"{self.api}{path}", params=params, timeout=10)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(f"{self.api}{path}", json=body, timeout=30)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait(self, path: str, key: str, done: set[str], timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.get(path)[key]
            if body["status"] in done:
                return dict(body)
            time.sleep(0.1)
        raise AssertionError(f"{path} did not reach {done} in {timeout} s:\n{self.logs()}")

    def plan(self, volume: str) -> str:
        return str(self.post("/plans", {"plan": {"name": volume, "provider_id": PROVIDER, "parameters": {},
                                                 "resources": [{"id": volume, "type": "OS::Cinder::Volume",
                                                                "name": volume}]}})["plan"]["id"])

    def protect(self, plan_id: str) -> str:
        return str(self.post(f"/providers/{PROVIDER}/checkpoints", {"checkpoint": {"plan_id": plan_id}})
                   ["checkpoint"]["id"])

    def restore(self, checkpoint_id: str, name: str) -> str:
        return str(self.post("/restores", {"restore": {
            "provider_id": PROVIDER, "checkpoint_id": checkpoint_id,
            "parameters": {"OS::Cinder::Volume": {"restore_name": name}}}})["restore"]["id"])

    def worker_of(self, checkpoint_id: str, operation: str, timeout: float = 60) -> str:
        """The host whose conductor claimed the checkpoint's latest ``operation`` run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            logs = [log for log in self.get("/operation_logs", checkpoint_id=checkpoint_id)["operation_logs"]
                    if log["operation_type"] == operation and log.get("extra_info", {}).get("worker")]
            if logs:
                return str(logs[0]["host"])
            time.sleep(0.05)
        raise AssertionError(f"no worker claimed the {operation} of {checkpoint_id}:\n{self.logs()}")

    def services(self) -> dict[str, str]:
        response = requests.get(f"{self.api}/os-services", headers={"X-Auth-Token": ADMIN}, timeout=10)
        assert response.status_code == 200, response.text
        return {f"{s['binary']}@{s['host']}": s["state"] for s in response.json()["services"]}


@pytest.fixture(params=["postgresql", "mysql"])
def topology(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Topology]:
    with deployed(request.param, tmp_path) as topo:
        yield topo


@contextlib.contextmanager
def deployed(kind: str, tmp_path: Path, extra_conf: Callable[[str], str] = lambda host: "") -> Iterator[Topology]:
    """The topology on a ``kind`` (postgresql, mysql) metadata store; ``extra_conf(host)``: more ``[DEFAULT]``
    lines of that host's configuration."""
    require_port("127.0.0.1", 5672, "RabbitMQ")
    require_port("127.0.0.1", 6379, "Redis")
    server = Server(kind, str(tmp_path))
    try:
        server.connect()
    except ConnectionError as err:
        unavailable(f"{kind} server unreachable: {err}")
    url = server.create_database()
    run = uuid.uuid4().hex[:8]
    state = tmp_path / "state"
    (state / "volumes").mkdir(parents=True)
    providers = tmp_path / "providers.d"
    providers.mkdir()
    (providers / "shared.conf").write_text(
        f"[provider]\nname = Shared\nid = {PROVIDER}\nplugin = volume\nbank = fs\n"
        # One worker and zstd level 15: about 28 MiB/s, so that a run can be killed half way.
        "[volume]\nblock_backend = loopback\nworkers = 1\ncompression_level = 15\n"
        f"[loopback]\npath = {state / 'volumes'}\n"
        f"[fs]\npath = {state / 'bank'}\nlease_expire_window = 8\nlease_renew_window = 2\n"
        "lease_validity_window = 2\n")
    topo = Topology(tmp=tmp_path, state=state)
    for host in ("api", "worker-1", "worker-2"):
        topo.conf(host).write_text(
            f"[DEFAULT]\nstate_dir = {state}\nproviders_dir = {providers}\nhost = {host}\n"
            "transport_url = rabbit://guest:guest@127.0.0.1:5672/\n"
            f"protection_topic = strongroom-protection-{run}\nadmin_token = {ADMIN}\nheartbeat_interval = 0.5\n"
            f"{extra_conf(host)}"
            "[api]\nbind_port = 0\n"
            f"[database]\nconnection = {url}\n"
            f"[coordination]\njobboard_url = redis://127.0.0.1:6379?db=0\njobboard_namespace = sr-{run}\n"
            f"claim_expiry = {CLAIM_EXPIRY}\npoll_interval = 0.2\n"
            "[protection]\nmax_concurrent_operations = 3\ngc_interval = 1\ngc_chunk_grace_period = 0\n"
            "bank_retry_initial_delay = 0.2\n")
    sync = subprocess.run([str(BIN / "strongroom-manage"), "--config-file", str(topo.conf("api")), "db", "sync"],
                          capture_output=True, text=True, timeout=120)
    assert sync.returncode == 0, sync.stderr
    try:
        topo.start("worker-1", "strongroom-protection")
        topo.start("worker-2", "strongroom-protection")
        api = topo.start("api", "strongroom-api")
        deadline = time.monotonic() + 60
        while not topo.url:
            found = re.search(r"strongroom-api running: (http://127\.0\.0\.1:\d+)",
                              (tmp_path / "api.log").read_text())
            topo.url = found.group(1) if found else ""
            assert api.poll() is None and time.monotonic() < deadline, topo.logs()
            time.sleep(0.1)
        while topo.services() != {"strongroom-api@api": "up", "strongroom-protection@worker-1": "up",
                                  "strongroom-protection@worker-2": "up"}:
            assert time.monotonic() < deadline, f"{topo.services()}\n{topo.logs()}"
            time.sleep(0.2)
        yield topo
    finally:
        for host in list(topo.processes):
            with contextlib.suppress(ProcessLookupError):
                topo.kill(host)
        server.drop_all()
        import redis

        client = redis.Redis(host="127.0.0.1", port=6379)
        for key in client.scan_iter(f"sr-{run}*"):
            client.delete(key)
        client.close()


def test_protect_restore_verify_delete_spread_over_two_workers(topology: Topology) -> None:
    volumes = topology.state / "volumes"
    digests = {}
    for i in range(6):
        digests[f"disk{i}.img"] = write_random_image(volumes / f"disk{i}.img", 8 * MiB, seed=100 + i)
    plans = {name: topology.plan(name) for name in digests}
    checkpoints = {name: topology.protect(plan) for name, plan in plans.items()}  # six at once, on idle workers
    for cid in checkpoints.values():
        body = topology.wait(f"/providers/{PROVIDER}/checkpoints/{cid}", "checkpoint", {"available", "error"})
        assert body["status"] == "available", body
    hosts = [topology.worker_of(cid, "protect") for cid in checkpoints.values()]
    split = {host: hosts.count(host) for host in ("worker-1", "worker-2")}
    # Each conductor claims one job at a time and only while no other idle-enough worker runs fewer.
    assert abs(split["worker-1"] - split["worker-2"]) <= 1, f"six protects on two idle workers split {split}"
    print(f"six simultaneous protects on two idle workers: {split}")

    cid = checkpoints["disk0.img"]
    restore = topology.restore(cid, "disk0-restored.img")
    assert topology.wait(f"/restores/{restore}", "restore", {"success", "fail"})["status"] == "success"
    assert sha256(volumes / "disk0-restored.img") == digests["disk0.img"]
    verification = topology.post("/verifications", {"verification": {
        "provider_id": PROVIDER, "checkpoint_id": cid, "parameters": {}}})["verification"]["id"]
    assert topology.wait(f"/verifications/{verification}", "verification", {"success", "fail"})["status"] == "success"
    deleted = requests.delete(f"{topology.api}/providers/{PROVIDER}/checkpoints/{cid}", timeout=30)
    assert deleted.status_code == 202, deleted.text
    assert topology.wait(f"/providers/{PROVIDER}/checkpoints/{cid}", "checkpoint",
                         {"deleted", "error-deleting"})["status"] == "deleted"
    assert topology.services()["strongroom-protection@worker-1"] == "up"

    # An administrator disables worker-1: it stops claiming, worker-2 takes every new job.
    listed = requests.get(f"{topology.api}/os-services", params={"host": "worker-1"},
                          headers={"X-Auth-Token": ADMIN}, timeout=10).json()["services"]
    [service] = [s for s in listed if s["binary"] == "strongroom-protection"]
    disabled = requests.put(f"{topology.api}/os-services/{service['id']}", headers={"X-Auth-Token": ADMIN},
                            json={"status": "disabled", "disabled_reason": "disk replacement"}, timeout=10)
    assert disabled.status_code == 200, disabled.text
    later = [topology.protect(plans[f"disk{i}.img"]) for i in (1, 2, 3)]
    for cid in later:
        body = topology.wait(f"/providers/{PROVIDER}/checkpoints/{cid}", "checkpoint", {"available", "error"})
        assert body["status"] == "available", body
    assert {topology.worker_of(cid, "protect") for cid in later} == {"worker-2"}


def _progress(topology: Topology, path: str, key: str, fraction: float) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body = topology.get(path)[key]
        progress = body.get("progress") or (body.get("extra_info") or {}).get("progress") or {}
        total = progress.get("bytes_total") or 0
        if body["status"] not in ("protecting", "in_progress"):
            raise AssertionError(f"{path} ended {body['status']} before {fraction:.0%}")
        if total and progress.get("bytes_done", 0) >= fraction * total:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {fraction:.0%}:\n{topology.logs()}")


#: A takeover waits out the dead worker's lease (about 12-16 s here) and then redoes part of the run: on a
#: loaded machine (CI runs three modules at once) that has taken 80 s, so the waits are generous.
@pytest.mark.timeout(480)
@pytest.mark.parametrize("topology", ["postgresql"], indirect=True)
def test_the_surviving_worker_finishes_what_a_killed_one_started(topology: Topology) -> None:
    volumes = topology.state / "volumes"
    with open(volumes / "big.img", "wb") as fh:  # the volume exists before its plan; each round writes its data
        fh.truncate(64 * MiB)
    plan = topology.plan("big.img")
    outcomes = []
    digests = {}
    for seed, fraction in ((7, 0.1), (8, 0.5)):  # kill points: early and half way through the data transfer
        digest = write_random_image(volumes / "big.img", 64 * MiB, seed=seed)  # new data: no dedup shortcut
        cid = topology.protect(plan)
        digests[cid] = digest
        path = f"/providers/{PROVIDER}/checkpoints/{cid}"
        victim = topology.worker_of(cid, "protect")
        _progress(topology, path, "checkpoint", fraction)
        topology.kill(victim)
        killed = time.monotonic()
        body = topology.wait(path, "checkpoint", {"available", "error"}, timeout=150)
        outcomes.append((fraction, body["status"], round(time.monotonic() - killed, 1)))
        logs = topology.get("/operation_logs", checkpoint_id=cid)["operation_logs"]
        if body["status"] == "available":
            [protect] = [log for log in logs if log["operation_type"] == "protect"]
            assert protect["host"] != victim and protect["extra_info"]["resumed"] is True, protect
            good = cid
        else:  # reverted: garbage collection reclaims what the dead worker wrote
            assert "reclaimed" in body["status_reason"] or "lease" in body["status_reason"], body
        topology.start(victim, "strongroom-protection")  # a new process (a new owner id) on that host

    print(f"protect kill points (fraction, outcome, seconds after SIGKILL): {outcomes}")
    assert any(status == "available" for _, status, _ in outcomes), outcomes
    # Restore killed half way: the surviving worker starts the volume over and finishes.
    restore = topology.restore(good, "big-restored.img")
    deadline = time.monotonic() + 60
    victim = ""
    while not victim and time.monotonic() < deadline:
        logs = topology.get("/operation_logs", restore_id=restore)["operation_logs"]
        victim = next((log["host"] for log in logs if log.get("extra_info", {}).get("worker")), "")
        time.sleep(0.05)
    assert victim, topology.logs()
    # Kill when a quarter of the volume is written (its blocks on disk; progress is only saved every second)
    # into the staged volume, a hidden file published under its name only once whole.
    target = volumes / ".staged-big-restored.img"
    while not (target.exists() and target.stat().st_blocks * 512 >= 16 * MiB):
        assert topology.get(f"/restores/{restore}")["restore"]["status"] == "in_progress", "restore ended first"
        assert time.monotonic() < deadline + 60, topology.logs()
        time.sleep(0.01)
    topology.kill(victim)
    assert not (volumes / "big-restored.img").exists(), "a half-restored volume was published"
    body = topology.wait(f"/restores/{restore}", "restore", {"success", "fail"}, timeout=150)
    assert body["status"] == "success", body
    assert sha256(volumes / "big-restored.img") == digests[good]
    assert not target.exists()
    [log] = [log for log in topology.get("/operation_logs", restore_id=restore)["operation_logs"]]
    assert log["host"] != victim and log["extra_info"]["resumed"] is True
    topology.start(victim, "strongroom-protection")
    # The killed workers' leases (three processes) go once expired and reclaimed: within one GC interval
    # (1 s) after the 8 s expiry window, `bank leases` lists only the live workers' processes, by their
    # configured host.  (A dead process's lease reads alive until it expires: the pids tell them apart.)
    live = {str(topology.processes[host].pid) for host in ("worker-1", "worker-2")}
    deadline = time.monotonic() + 8 + 30
    while True:
        listed = subprocess.run([str(BIN / "strongroom-manage"), "--config-file", str(topology.conf("api")),
                                 "bank", "leases"], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        rows = [line for line in listed.stdout.splitlines() if line.startswith("  ")]
        if {row.split()[-1] for row in rows} == live and all(" alive " in row for row in rows):
            break
        assert time.monotonic() < deadline, listed.stdout
        time.sleep(1)
    assert {row.split()[-3] for row in rows} == {"worker-1", "worker-2"}, listed.stdout  # host, pid N
