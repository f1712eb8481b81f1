"""The deployed API programs for real: ``gunicorn strongroom.api.wsgi:application`` and the threaded
``strongroom-api`` runner, each talking over the machine's RabbitMQ to a real ``strongroom-protection``, with
a sqlite metadata store.  RabbitMQ unreachable: SKIP, or FAIL with ``CI=true``.
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
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.functional.harness import PROVIDER_ID
from tests.servers import free_port, require_port

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
ADMIN = "deploy-admin-token"

pytestmark = [pytest.mark.functional, pytest.mark.slow]


@dataclasses.dataclass
class Node:
    tmp: Path
    host: str
    conf: Path
    processes: list[subprocess.Popen[str]] = dataclasses.field(default_factory=list)

    def start(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        log = open(self.tmp / f"{Path(argv[0]).name}-{len(self.processes)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, text=True, cwd=self.tmp,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                start_new_session=True)  # its own process group: gunicorn's workers too
        self.processes.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.tmp.glob("*.log")))

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "strongroom-manage"), "--config-file", str(self.conf), *args],
                              capture_output=True, text=True, timeout=120)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    require_port("127.0.0.1", 5672, "RabbitMQ")
    state = tmp_path / "state"
    (state / "volumes").mkdir(parents=True)
    host = f"deploy-{uuid.uuid4().hex[:8]}"
    conf = tmp_path / "strongroom.conf"
    conf.write_text(
        "[DEFAULT]\n"
        f"state_dir = {state}\n"
        f"providers_dir = {ROOT / 'providers.d'}\n"
        "transport_url = rabbit://guest:guest@127.0.0.1:5672/\n"
        f"protection_topic = strongroom-protection-{host}\n"  # never shared with another run's queues
        f"host = {host}\n"
        f"admin_token = {ADMIN}\n"
        "heartbeat_interval = 0.5\n"
        "[api]\nbind_port = 0\n"
        f"[database]\nconnection = sqlite:///{state / 'strongroom.sqlite'}\n")
    running = Node(tmp=tmp_path, host=host, conf=conf)
    try:
        yield running
    finally:
        for proc in running.processes:  # the group of each process we started, workers included
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _wait_for(url: str, ok: set[int], timeout: float = 60.0, **kwargs: object) -> requests.Response:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            resp = requests.get(url, timeout=10, **kwargs)  # type: ignore[arg-type]
            if resp.status_code in ok:
                return resp
            last = f"{resp.status_code} {resp.text[:300]}"
        except requests.ConnectionError as err:
            last = err
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer {ok} within {timeout} s: {last}")


def _services(api: str, host: str) -> dict[str, dict[str, object]]:
    resp = requests.get(f"{api}/os-services", params={"host": host}, headers={"X-Auth-Token": ADMIN}, timeout=10)
    assert resp.status_code == 200, resp.text
    return {s["binary"]: s for s in resp.json()["services"]}


def _protection_through(api: str, node: Node) -> None:
    """What only works when the API reaches strongroom-protection over RabbitMQ."""
    # Both beat once started (protection after its RPC server consumes: a call before would be lost).
    deadline = time.monotonic() + 60
    while True:
        services = _services(api, node.host)
        if {b: s["state"] for b, s in services.items()} == {"strongroom-api": "up", "strongroom-protection": "up"}:
            break
        assert time.monotonic() < deadline, f"services never both up: {services}"
        time.sleep(0.2)
    assert {s["status"] for s in services.values()} == {"enabled"}
    providers = _wait_for(f"{api}/providers", {200}).json()["providers"]
    assert [p["id"] for p in providers] == [PROVIDER_ID]
    missing = requests.post(f"{api}/plans", timeout=30, json={"plan": {
        "name": "deployed", "provider_id": PROVIDER_ID,
        "resources": [{"id": "disk.img", "type": "OS::Cinder::Volume"}]}})
    assert missing.status_code == 404 and "'disk.img' could not be found by provider" in missing.text, missing.text
    (node.tmp / "state" / "volumes" / "disk.img").write_bytes(b"\x01" * 65536)  # where protection's backend looks
    plan = requests.post(f"{api}/plans", timeout=30, json={"plan": {
        "name": "deployed", "provider_id": PROVIDER_ID,
        "resources": [{"id": "disk.img", "type": "OS::Cinder::Volume"}]}})
    assert plan.status_code == 200, plan.text
    assert plan.json()["plan"]["resources"][0]["name"] == "disk.img"  # as the protection service's protectable shows it
    listed = requests.get(f"{api}/plans", timeout=10).json()["plans"]
    assert [p["id"] for p in listed] == [plan.json()["plan"]["id"]]


def test_gunicorn_serves_the_wsgi_application(node: Node) -> None:
    port = free_port()
    # doc/deployment.md's settings (fewer workers and threads)
    gunicorn = node.start(str(BIN / "gunicorn"), "--workers", "2", "--worker-class", "gthread", "--threads", "4",
                          "--worker-connections", "256", "--timeout", "60", "--keep-alive", "30",
                          "--limit-request-line", "8190", "--limit-request-fields", "100",
                          "--limit-request-field_size", "8190", "--bind", f"127.0.0.1:{port}",
                          "--no-control-socket", "--graceful-timeout", "20", "strongroom.api.wsgi:application",
                          env={"STRONGROOM_CONFIG_FILE": str(node.conf)})
    api = f"http://127.0.0.1:{port}/v1/demo"
    # Not synced yet: a clear 503 naming the command, and the API recovers once the operator ran it.
    unsynced = _wait_for(f"{api}/plans", {503})
    assert "run 'strongroom-manage db sync'" in unsynced.json()["serviceUnavailable"]["message"], unsynced.text
    sync = node.manage("db", "sync")
    assert sync.returncode == 0, sync.stderr
    assert _wait_for(f"{api}/plans", {200}).json() == {"plans": []}

    node.start(str(BIN / "strongroom-protection"), "--config-file", str(node.conf))
    try:
        _protection_through(api, node)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{node.logs()}") from None

    started = time.monotonic()
    gunicorn.send_signal(signal.SIGTERM)
    assert gunicorn.wait(30) == 0
    assert time.monotonic() - started < 15, "gunicorn workers did not stop promptly (RPC threads left open?)"


def test_threaded_strongroom_api_runner(node: Node) -> None:
    assert node.manage("db", "sync").returncode == 0
    node.start(str(BIN / "strongroom-protection"), "--config-file", str(node.conf))
    runner = node.start(str(BIN / "strongroom-api"), "--config-file", str(node.conf))
    deadline = time.monotonic() + 60
    url = None
    while url is None and time.monotonic() < deadline:
        found = re.search(r"strongroom-api running: (http://127\.0\.0\.1:\d+)", node.logs())
        url = found.group(1) if found else None
        assert runner.poll() is None, node.logs()
        time.sleep(0.1)
    assert url, node.logs()
    try:
        _protection_through(f"{url}/v1/demo", node)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{node.logs()}") from None
    runner.send_signal(signal.SIGTERM)
    runner.wait(30)
