"""Done-when 2 (metrics): the real all-in-one's ``/metrics``, scraped during a protect, shows its bytes
growing; once it ends, the duration histogram has one more protect and the catalogue's figures match the API.
"""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.functional.banks import bank_under_test, configure, write_random_image
from tests.functional.harness import AllInOne, MiB, wait_for

pytestmark = pytest.mark.functional

#: zstd at level 15 on compressible random bytes: a few MiB/s here, so the protect lasts several seconds.
SLOW = {"compression_level": 15}
VOLUME_SIZE = 48 * MiB


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
    write_random_image(service.volumes / "big.img", VOLUME_SIZE, seed=3)
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
        time.sleep(1.0)
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
