"""Done-when 2 (metrics): the real all-in-one's ``/metrics``, scraped during a protect, shows its bytes
growing; once it ends, the duration histogram has one more protect and the catalogue's figures match the API.
Deployed: a ``strongroom-protection`` on its own metrics port, the API under gunicorn in multiprocess mode.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.functional.banks import bank_under_test, configure, restore_and_hash, write_random_image
from tests.functional.harness import PROVIDER_ID, AllInOne, MiB, wait_for
from tests.servers import require_port

pytestmark = pytest.mark.functional

#: zstd at level 15 on compressible random bytes: a few MiB/s here, so the protect lasts several seconds.
SLOW = {"compression_level": 15}
VOLUME_SIZE = 64 * MiB


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a text exposition: (name, labels) -> value."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sample ``name`` with (at least) ``labels``, summed over the others (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in scrape.items() if n == name and wanted <= set(ls))


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    resp = requests.get(f"{url}/metrics", timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain")
    return samples(resp.text)


def value_of(url: str, name: str, **labels: str) -> float:
    return value(samples(requests.get(url, timeout=10).text), name, **labels)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def slow_service(tmp_path: Path, request: pytest.FixtureRequest, extra_conf: str = "") -> tuple[AllInOne, str]:
    bank = bank_under_test("fs", request, tmp_path)
    service, provider_id = configure(tmp_path, bank, "metrics-test", volume=SLOW)
    with open(service.config_file, "a") as fh:
        fh.write(extra_conf)
    return service, provider_id


def test_a_scrape_during_a_protect_shows_its_bytes_growing(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    port = free_port()
    service, provider_id = slow_service(tmp_path, request, f"[metrics]\nbind_port = {port}\n")
    image_hash = write_random_image(service.volumes / "big.img", VOLUME_SIZE, seed=3)
    service.start()
    try:
        api = service.api()
        before = scrape(service.url)
        histogram = "strongroom_operation_duration_seconds_count"
        protects_before = value(before, histogram, operation="protect", provider=provider_id, outcome="success")
        assert value(before, "strongroom_catalogue_up") == 1
        plan = requests.post(f"{api}/plans", json={"plan": {
            "name": "metrics", "provider_id": provider_id, "parameters": {},
            "resources": [{"id": "big.img", "type": "OS::Cinder::Volume", "name": "big.img"}]}}, timeout=10)
        assert plan.status_code == 200, plan.text
        plan_id = plan.json()["plan"]["id"]
        created = requests.post(f"{api}/providers/{provider_id}/checkpoints",
                                json={"checkpoint": {"plan_id": plan_id}}, timeout=10)
        assert created.status_code == 200, created.text
        cp_url = f"{api}/providers/{provider_id}/checkpoints/{created.json()['checkpoint']['id']}"

        # Two scrapes while the checkpoint is still protecting: its bytes read and stored grow in between.
        read = "strongroom_protect_bytes_read_total"
        stored = "strongroom_protect_bytes_stored_total"
        deadline = time.monotonic() + 60
        first = scrape(service.url)
        while value(first, read, provider=provider_id) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
            first = scrape(service.url)
        assert 0 < value(first, read, provider=provider_id) < VOLUME_SIZE
        time.sleep(0.5)
        second = scrape(service.url)
        during = requests.get(cp_url, timeout=10).json()["checkpoint"]
        assert during["status"] == "protecting", "the protect ended too soon to be seen growing"
        assert value(second, read, provider=provider_id) > value(first, read, provider=provider_id)
        assert value(second, stored, provider=provider_id) > value(first, stored, provider=provider_id)
        # No protect has ended yet: the histogram has not moved.
        assert value(second, histogram, operation="protect", provider=provider_id,
                     outcome="success") == protects_before

        cp = wait_for(cp_url, "checkpoint", {"available", "error"}, timeout=240)
        assert cp["status"] == "available", cp
        after = scrape(service.url)
        assert value(after, histogram, operation="protect", provider=provider_id,
                     outcome="success") == protects_before + 1
        assert value(after, read, provider=provider_id) == VOLUME_SIZE  # every byte of it is data
        protected = cp["extra_info"]["protected"]["OS::Cinder::Volume#big.img"]
        assert value(after, stored, provider=provider_id) == protected["bytes_stored"]

        listed = requests.get(f"{api}/providers/{provider_id}/checkpoints", timeout=10).json()["checkpoints"]
        available = [c for c in listed if c["status"] == "available"]
        assert value(after, "strongroom_checkpoints", provider=provider_id, status="available") == len(available) == 1
        assert value(after, "strongroom_checkpoints", provider=provider_id, status="protecting") == 0
        age = value(after, "strongroom_plan_seconds_since_last_available_checkpoint", plan=plan_id)
        assert 0 <= age < 120
        ratio = value(after, "strongroom_plan_dedup_ratio", plan=plan_id)
        assert ratio == pytest.approx(VOLUME_SIZE / protected["bytes_stored"])

        # The process's own port shows the same counters (without the catalogue's figures).
        own = samples(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
        assert value(own, read, provider=provider_id) == VOLUME_SIZE
        assert value(own, "strongroom_checkpoints") == 0

        # A restore of it reads every byte of the volume from the bank and writes it (no zero block to skip).
        digest, restored = restore_and_hash(service, provider_id, cp["id"], "big.restored.img")
        assert restored["status"] == "success", restored
        assert digest == image_hash
        after_restore = scrape(service.url)
        assert value(after_restore, "strongroom_restore_bytes_read_total", provider=provider_id) == VOLUME_SIZE
        assert value(after_restore, "strongroom_restore_bytes_written_total", provider=provider_id) == VOLUME_SIZE
        assert value(after_restore, histogram, operation="restore", provider=provider_id, outcome="success") == 1
        assert value(after_restore, read, provider=provider_id) == VOLUME_SIZE  # not counted as a protect
    finally:
        service.stop()


def test_metrics_refuse_scrapers_outside_the_allowed_ranges(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    service, _ = slow_service(tmp_path, request, "[metrics]\nallowed_source_ranges = 127.0.0.1/32\n")
    service.start()
    try:
        host, port = service.url.removeprefix("http://").split(":")
        allowed = http.client.HTTPConnection(host, int(port), timeout=10, source_address=("127.0.0.1", 0))
        allowed.request("GET", "/metrics")
        answer = allowed.getresponse()
        assert answer.status == 200 and b"strongroom_catalogue_up 1.0" in answer.read()
        other = http.client.HTTPConnection(host, int(port), timeout=10, source_address=("127.0.0.2", 0))
        other.request("GET", "/metrics")
        refused = other.getresponse()
        body = refused.read().decode()
        assert refused.status == 403
        assert "127.0.0.2" in body and "allowed_source_ranges" in body and "strongroom_" not in body
    finally:
        service.stop()


def test_deployed_protection_port_and_gunicorn_multiprocess_metrics(tmp_path: Path) -> None:
    """strongroom-protection counts on its [metrics] port what it did for a protect asked through the API under
    gunicorn (2 workers, PROMETHEUS_MULTIPROC_DIR), whose /metrics shows the catalogue whichever worker answers."""
    require_port("127.0.0.1", 5672, "RabbitMQ")
    root = Path(__file__).resolve().parents[2]
    state = tmp_path / "state"
    (state / "volumes").mkdir(parents=True)
    write_random_image(state / "volumes" / "disk.img", 8 * MiB, seed=9)
    host = f"metrics-{uuid.uuid4().hex[:8]}"
    protection_port, api_port = free_port(), free_port()
    conf = tmp_path / "strongroom.conf"
    conf.write_text(
        f"[DEFAULT]\nstate_dir = {state}\nproviders_dir = {root / 'providers.d'}\n"
        f"transport_url = rabbit://guest:guest@127.0.0.1:5672/\nprotection_topic = strongroom-protection-{host}\n"
        f"host = {host}\n[database]\nconnection = sqlite:///{state / 'strongroom.sqlite'}\n"
        f"[metrics]\nbind_port = {protection_port}\n")
    bin_dir = Path(sys.executable).parent
    sync = subprocess.run([str(bin_dir / "strongroom-manage"), "--config-file", str(conf), "db", "sync"],
                          capture_output=True, text=True, timeout=120)
    assert sync.returncode == 0, sync.stderr
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "STRONGROOM_CONFIG_FILE": str(conf),
           "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    processes: list[subprocess.Popen[bytes]] = []
    log = open(tmp_path / "processes.log", "wb")  # noqa: SIM115 - closed below
    try:
        for argv in ([str(bin_dir / "strongroom-protection"), "--config-file", str(conf)],
                     [str(bin_dir / "gunicorn"), "--workers", "2", "--worker-class", "gthread", "--threads", "4",
                      "--bind", f"127.0.0.1:{api_port}", "--no-control-socket", "strongroom.api.wsgi:application"]):
            processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                              cwd=tmp_path, start_new_session=True))
        api = f"http://127.0.0.1:{api_port}/v1/demo"
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(requests.ConnectionError, requests.Timeout):  # protection still starting
                if requests.get(f"{api}/providers", timeout=10).status_code == 200:
                    break
            assert time.monotonic() < deadline, (tmp_path / "processes.log").read_text()[-3000:]
            time.sleep(0.2)
        plan = requests.post(f"{api}/plans", timeout=30, json={"plan": {
            "name": "deployed", "provider_id": PROVIDER_ID,
            "resources": [{"id": "disk.img", "type": "OS::Cinder::Volume"}]}})
        assert plan.status_code == 200, plan.text
        created = requests.post(f"{api}/providers/{PROVIDER_ID}/checkpoints", timeout=30,
                                json={"checkpoint": {"plan_id": plan.json()["plan"]["id"]}})
        assert created.status_code == 200, created.text
        cp = wait_for(f"{api}/providers/{PROVIDER_ID}/checkpoints/{created.json()['checkpoint']['id']}",
                      "checkpoint", {"available", "error"}, timeout=120)
        assert cp["status"] == "available", cp

        own = f"http://127.0.0.1:{protection_port}/metrics"
        assert value_of(own, "strongroom_protect_bytes_read_total", provider=PROVIDER_ID) == 8 * MiB
        assert value_of(own, "strongroom_operation_duration_seconds_count", operation="protect",
                        outcome="success") == 1
        for _ in range(6):  # new connections: both workers answer some of them
            scraped = f"http://127.0.0.1:{api_port}/metrics"
            assert value_of(scraped, "strongroom_checkpoints", provider=PROVIDER_ID, status="available") == 1
    finally:
        for proc in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
