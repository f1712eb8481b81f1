"""strongroom.metrics' helpers and the counters the bank, lease and notification layers feed."""

from __future__ import annotations

import ipaddress
import math
import os
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from strongroom import exceptions, metrics
from strongroom.bank_plugins.lease import BankLease, LeaseKeeper, LeaseWindows
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.bank_plugins.retry import RetryingBank
from strongroom.clock import FakeClock
from strongroom.notifications import Notifications
from strongroom.objects.records import Restore
from strongroom.protection.manager import ProtectionManager
from tests.unit.protection import test_gc

# The fixtures of test_gc: a clocked memory bank, sqlite catalogue, memory volumes and a manager.
clock, db, registry, manager = test_gc.clock, test_gc.db, test_gc.registry, test_gc.manager


def counter(name: str, **labels: str) -> float:
    return metrics.get().registry.get_sample_value(name, labels) or 0.0


def test_dedup_ratio_is_bytes_read_per_byte_stored() -> None:
    assert metrics.dedup_ratio(400, 100) == 4.0
    assert metrics.dedup_ratio(0, 0) == 1.0  # nothing read: no reduction to speak of
    assert math.isinf(metrics.dedup_ratio(10, 0))  # all of it was in the bank already


def test_protected_sizes_add_up_every_resource_and_ignore_what_is_not_a_size() -> None:
    extra = {"protected": {"a": {"bytes_read": 10, "bytes_stored": 4}, "b": {"bytes_read": 5, "bytes_stored": 1},
                           "c": {"bytes_read": "x", "bytes_stored": True}, "d": None}}
    assert metrics.protected_sizes(extra) == (15, 5)
    assert metrics.protected_sizes({}) == (0, 0)


def test_a_transfer_counts_into_its_provider_and_keeps_its_totals() -> None:
    before_read = counter("strongroom_protect_bytes_read_total", provider="unit-transfer")
    before_stored = counter("strongroom_protect_bytes_stored_total", provider="unit-transfer")
    transfer = metrics.Transfer("unit-transfer")
    transfer.add(1000, 200)
    transfer.add(500, 0)
    assert (transfer.bytes_read, transfer.bytes_stored) == (1500, 200)
    assert counter("strongroom_protect_bytes_read_total", provider="unit-transfer") == before_read + 1500
    assert counter("strongroom_protect_bytes_stored_total", provider="unit-transfer") == before_stored + 200


def test_a_transfer_counts_into_the_counters_of_its_operation() -> None:
    names = {"restore": ("strongroom_restore_bytes_read_total", "strongroom_restore_bytes_written_total"),
             "verify": ("strongroom_verify_bytes_read_total", None)}
    everything = ("strongroom_protect_bytes_read_total", "strongroom_protect_bytes_stored_total",
                  "strongroom_restore_bytes_read_total", "strongroom_restore_bytes_written_total",
                  "strongroom_verify_bytes_read_total")
    for operation, (read, written) in names.items():
        before = {name: counter(name, provider="unit-kinds") for name in everything}
        transfer = metrics.Transfer("unit-kinds", operation)
        transfer.add(4096, 1024 if written else 0)
        transfer.add(100, 50 if written else 0)
        assert transfer.bytes_read == 4196
        assert counter(read, provider="unit-kinds") == before[read] + 4196
        if written:
            assert transfer.bytes_written == 1074
            assert counter(written, provider="unit-kinds") == before[written] + 1074
        # Only its own counters move: a restore is not counted as a protect, nor a verify as a restore.
        assert {name: counter(name, provider="unit-kinds") for name in everything if name not in (read, written)} \
            == {name: value for name, value in before.items() if name not in (read, written)}
    before = {name: counter(name, provider="unit-kinds") for name in everything}
    metrics.Transfer("unit-kinds", "delete").add(10, 10)  # a delete moves no data to count
    assert {name: counter(name, provider="unit-kinds") for name in everything} == before


def test_restores_and_verifies_count_the_bytes_they_read_and_write(manager: ProtectionManager) -> None:
    """A real protect, restore and verify (memory bank and volumes, sqlite): the restore counts every chunk
    byte it read and wrote, the verify every chunk byte it checked; the volume's zero tail is neither."""
    provider = test_gc.PROVIDER
    data = os.urandom(4 * 65536)  # four whole chunks of data, then zeros to the volume's 1 MiB
    cid = test_gc.protect_volume(manager, data)
    read, written, checked = ("strongroom_restore_bytes_read_total", "strongroom_restore_bytes_written_total",
                              "strongroom_verify_bytes_read_total")
    before = {name: counter(name, provider=provider) for name in (read, written, checked)}
    manager.db.create_restore(Restore(id="r-metrics", project_id="proj", provider_id=provider, checkpoint_id=cid,
                                      parameters={"OS::Cinder::Volume": {"restore_name": "back"}}))
    manager.db.create_restore(Restore(id="v-metrics", project_id="proj", provider_id=provider, checkpoint_id=cid,
                                      kind="verification", parameters={}))
    manager.restore(test_gc.CTX, "r-metrics")
    manager.wait_idle()
    assert manager.db.get_restore("r-metrics").status == "success"
    assert counter(read, provider=provider) == before[read] + len(data)
    assert counter(written, provider=provider) == before[written] + len(data)
    assert counter(checked, provider=provider) == before[checked]
    manager.verify(test_gc.CTX, "v-metrics")
    manager.wait_idle()
    assert manager.db.get_restore("v-metrics", kind="verification").status == "success"
    assert counter(checked, provider=provider) == before[checked] + len(data)
    assert counter(read, provider=provider) == before[read] + len(data)


def test_observe_run_fills_the_histogram_of_its_outcome() -> None:
    name = "strongroom_operation_duration_seconds_count"
    labels = {"operation": "restore", "provider": "unit-run"}
    ok, failed = counter(name, **labels, outcome="success"), counter(name, **labels, outcome="failure")
    metrics.observe_run("restore", "unit-run", 12.5, ok=True)
    metrics.observe_run("restore", "unit-run", 0.2, ok=False)
    assert counter(name, **labels, outcome="success") == ok + 1
    assert counter(name, **labels, outcome="failure") == failed + 1


def test_the_exposition_is_prometheus_text_with_every_metric_named() -> None:
    metrics.scheduled_fire("success")
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert {"strongroom_operation_duration_seconds", "strongroom_protect_bytes_read",
            "strongroom_protect_bytes_stored", "strongroom_restore_bytes_read", "strongroom_restore_bytes_written",
            "strongroom_verify_bytes_read", "strongroom_scheduled_fires", "strongroom_lease_renewals_failed",
            "strongroom_gc_zombies_reclaimed", "strongroom_gc_runs", "strongroom_bank_errors"} <= names


def test_a_jobboard_that_cannot_be_read_leaves_its_figure_out() -> None:
    def down() -> tuple[int, int]:
        raise ConnectionError("redis is down")

    assert list(metrics.JobBoardCollector(down).collect()) == []
    families = list(metrics.JobBoardCollector(lambda: (3, 1)).collect())
    assert [(s.labels["state"], s.value) for s in families[0].samples] == [("unclaimed", 3), ("claimed", 1)]


class _Failing(MemoryBank):
    def __init__(self, error: Exception) -> None:
        super().__init__({})
        self.error = error

    def get_object(self, key: str) -> bytes:
        raise self.error


@pytest.mark.parametrize("error, counted", [
    (exceptions.BankTransientError(reason="503 from the proxy"), True),
    (exceptions.BankError(reason="access denied"), True),
    (exceptions.BankObjectNotFound(key="k"), False),
])
def test_bank_calls_that_end_in_an_error_are_counted_by_bank_and_operation(error: Exception, counted: bool) -> None:
    bank = RetryingBank(_Failing(error), max_attempts=3, sleep=lambda s: None, name="bank 'unit' of provider 'U'")
    before = counter("strongroom_bank_errors_total", bank="bank 'unit' of provider 'U'", operation="get_object")
    with pytest.raises(type(error)):
        bank.get_object("k")
    after = counter("strongroom_bank_errors_total", bank="bank 'unit' of provider 'U'", operation="get_object")
    assert after == before + (1 if counted else 0)  # once per call, not per attempt


def test_failed_lease_renewals_are_counted() -> None:
    plugin = MemoryBank({})
    lease = BankLease(plugin, "unit-owner", LeaseWindows(expire=8, renew=2, validity=2), bank_name="unit-lease-bank",
                      clock=FakeClock())
    keeper = LeaseKeeper(lease)
    keeper.tick()  # acquired
    assert keeper.held
    before = counter("strongroom_lease_renewals_failed_total", bank="unit-lease-bank")

    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise exceptions.BankTransientError(reason="connection refused")

    plugin.put_expiring_object = unreachable  # type: ignore[method-assign]
    plugin.put_object = unreachable  # type: ignore[method-assign]
    keeper.tick()
    keeper.tick()
    assert counter("strongroom_lease_renewals_failed_total", bank="unit-lease-bank") == before + 2


def test_networks_allow_their_addresses_only() -> None:
    networks = metrics.parse_networks(["127.0.0.0/8", "10.1.0.0/16", "::1"])
    assert networks[2] == ipaddress.ip_network("::1/128")
    assert metrics.allowed("127.0.0.1", networks) and metrics.allowed("10.1.2.3", networks)
    assert metrics.allowed("::ffff:10.1.2.3", networks)  # an IPv4 client of a dual-stack socket
    assert not metrics.allowed("10.2.0.1", networks) and not metrics.allowed("::2", networks)
    assert not metrics.allowed(None, networks) and not metrics.allowed("not-an-address", networks)
    assert metrics.allowed("192.0.2.1", [])  # an empty list: everyone
    with pytest.raises(ValueError, match=r"allowed_source_ranges: '10\.0\.0\.300/8'"):
        metrics.parse_networks(["10.0.0.300/8"])


def test_notifications_without_a_driver_send_nothing_and_a_failing_send_never_raises() -> None:
    from strongroom import config

    conf = config.new_conf()
    assert not Notifications.from_conf(conf, "strongroom-protection", "node1").enabled

    class Broken:
        def info(self, *args: Any) -> None:
            raise ConnectionError("rabbit is down")

    Notifications(Broken()).send(None, "checkpoint.create", "start", {"checkpoint_id": "c"})  # logged, dropped


def test_multiprocess_mode_adds_up_every_worker(tmp_path: Any) -> None:
    """Under gunicorn with PROMETHEUS_MULTIPROC_DIR, whichever worker answers shows every worker's counters."""
    import os
    import subprocess
    import sys

    env = {**os.environ, metrics.MULTIPROC_ENV: str(tmp_path)}
    count = "from strongroom import metrics; metrics.Transfer('unit-mp').add(5, 1)"
    for _worker in range(2):
        subprocess.run([sys.executable, "-c", count], env=env, check=True, timeout=60)
    render = "from strongroom import metrics; print(metrics.render()[0].decode())"
    shown = subprocess.run([sys.executable, "-c", render], env=env, check=True, timeout=60, capture_output=True,
                           text=True).stdout
    scrape = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for family in text_string_to_metric_families(shown) for s in family.samples}
    assert scrape[("strongroom_protect_bytes_read_total", (("provider", "unit-mp"),))] == 10
    assert scrape[("strongroom_protect_bytes_stored_total", (("provider", "unit-mp"),))] == 2


def test_a_metrics_port_that_is_taken_is_a_clear_configuration_error() -> None:
    import socket

    from strongroom import config

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = config.new_conf(overrides={"metrics": {"bind_port": port}})
        with pytest.raises(exceptions.ConfigError, match=rf"\[metrics\] bind_host 127.0.0.1, bind_port {port}"):
            metrics.serve(conf)
    assert metrics.serve(config.new_conf()) is None  # 0, the default: no port


def test_the_metrics_port_serves_this_process_counters() -> None:
    import requests

    metrics.gc_pass("unit-port", ok=True, zombies=2)
    server = metrics.Server("127.0.0.1", 0)  # any free port
    try:
        text = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10).text
    finally:
        server.stop()
    assert 'strongroom_gc_zombies_reclaimed_total{provider="unit-port"}' in text
