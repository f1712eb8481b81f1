"""Prometheus metrics of every Strongroom program: the one owner of their names, labels and exposition.

What a process counts as it works (runs' durations, bytes a protect, restore or verify moves as it goes, scheduled
fires, lease renewals, garbage collection, bank errors) lives in one :class:`Metrics`, made on first use
(nothing is registered at import time) and fed through the small functions below.  What the catalogue
knows (checkpoints by status, each plan's last available checkpoint and its dedup ratio) is read from the
metadata store at each scrape by :class:`CatalogueCollector`, so it never drifts from what the API lists,
whichever process changed it and across restarts; the jobboard's backlog likewise by
:class:`JobBoardCollector`.

Exposition (``doc/operations.md``, "Metrics"):

* the API answers ``GET /metrics`` (the ``metrics`` filter of ``api-paste.ini``, before authentication,
  from the addresses of ``[metrics] allowed_source_ranges``): this process's counters and the catalogue's
  figures;
* any program serves its own counters on ``[metrics] bind_host``:``bind_port`` (0, the default: not at
  all), e.g. each protection service and operation engine;
* under gunicorn, with ``PROMETHEUS_MULTIPROC_DIR`` set in the workers' environment, ``/metrics`` adds up
  every worker's counters (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, GCCollector, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from oslo_config import cfg

LOG = logging.getLogger(__name__)

NAMESPACE = "strongroom"
#: Where prometheus_client's multiprocess mode keeps each worker's values (set before the server starts).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Seconds: from a small volume's protect to a night-long one.
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
#: The outcomes of a run (protect, restore, verify, delete).
SUCCESS, FAILURE = "success", "failure"

_CHECKPOINT_STATUSES = ("protecting", "available", "error", "deleting", "deleted", "error-deleting", "copying")


class Metrics:
    """This process's counters and histograms, on ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.run_duration = Histogram(
            "operation_duration_seconds", "Duration of protect, restore, verify and delete runs, by outcome.",
            ["operation", "provider", "outcome"], namespace=NAMESPACE, buckets=DURATION_BUCKETS, registry=reg)
        self.bytes_read = Counter(
            "protect_bytes_read", "Bytes protects read from volumes (counted as each chunk is done).",
            ["provider"], namespace=NAMESPACE, registry=reg)
        self.bytes_stored = Counter(
            "protect_bytes_stored", "Bytes protects wrote to banks for new chunks, compressed (counted as each "
            "chunk is done).", ["provider"], namespace=NAMESPACE, registry=reg)
        self.restore_bytes_read = Counter(
            "restore_bytes_read", "Bytes of chunks restores read from banks, as restored (uncompressed; zero runs, "
            "never stored, are not read), counted as each piece of work is done.", ["provider"],
            namespace=NAMESPACE, registry=reg)
        self.restore_bytes_written = Counter(
            "restore_bytes_written", "Bytes restores wrote to their target volumes (all-zero blocks left as holes "
            "are not written), counted as each piece of work is done.", ["provider"], namespace=NAMESPACE,
            registry=reg)
        self.verify_bytes_read = Counter(
            "verify_bytes_read", "Bytes of chunks verifies read from banks and checked (uncompressed), counted as "
            "each chunk is done.", ["provider"], namespace=NAMESPACE, registry=reg)
        self.scheduled_fires = Counter(
            "scheduled_fires", "Scheduled operation fires that ended, by outcome (success, failed, "
            "dropped_out_of_window: its window closed before a run started).", ["outcome"],
            namespace=NAMESPACE, registry=reg)
        self.lease_renewals_failed = Counter(
            "lease_renewals_failed", "Renewals of this process's bank leases that failed (or found the lease "
            "lost).", ["bank"], namespace=NAMESPACE, registry=reg)
        self.zombies_reclaimed = Counter(
            "gc_zombies_reclaimed", "Checkpoints of dead writers reclaimed by garbage collection.", ["provider"],
            namespace=NAMESPACE, registry=reg)
        self.gc_runs = Counter(
            "gc_runs", "Garbage collection passes over a provider's bank, by outcome (success, error: the pass "
            "met errors or could not start).", ["provider", "outcome"], namespace=NAMESPACE, registry=reg)
        self.bank_errors = Counter(
            "bank_errors", "Bank calls that failed after their retries (a missing object is an answer, not an "
            "error), by bank and operation.", ["bank", "operation"], namespace=NAMESPACE, registry=reg)
        # The process's CPU, memory, open files and Python's garbage collector, as any Python exporter shows
        # them (prometheus_client's multiprocess mode cannot add them up: they are not shown there).
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)
        self._collectors: list[Any] = []
        self._lock = threading.Lock()

    # -- collectors this process adds to every exposition (the jobboard's) ----------------------------

    def add_collector(self, collector: Any) -> None:
        with self._lock:
            self._collectors.append(collector)

    def remove_collector(self, collector: Any) -> None:
        with self._lock:
            if collector in self._collectors:
                self._collectors.remove(collector)

    def collectors(self) -> list[Any]:
        with self._lock:
            return list(self._collectors)


_METRICS: Metrics | None = None
_METRICS_LOCK = threading.Lock()


def get() -> Metrics:
    """This process's metrics, made on first use."""
    global _METRICS
    with _METRICS_LOCK:
        if _METRICS is None:
            _METRICS = Metrics()
        return _METRICS


# -- what the programs count -------------------------------------------------------------------------


def observe_run(operation: str, provider: str, seconds: float, *, ok: bool) -> None:
    get().run_duration.labels(operation=operation, provider=provider,
                              outcome=SUCCESS if ok else FAILURE).observe(max(seconds, 0.0))


class Transfer:
    """Bytes one run moved, counted as it goes into the counters of its operation and provider, and kept as
    its own totals (for its notification).  ``add(read, out)``: a protect's bytes read from the volume and
    stored in the bank; a restore's bytes read from the bank and written to the target; a verify's bytes read
    from the bank (``out`` is 0); a delete counts nothing.  Thread-safe: the data mover's workers call
    :meth:`add`."""

    def __init__(self, provider: str, operation: str = "protect") -> None:
        self.provider = provider
        self.operation = operation
        self.bytes_read = 0
        #: The second figure: bytes stored (a protect), bytes written (a restore).
        self.bytes_out = 0
        self._lock = threading.Lock()
        metrics = get()
        read, out = {
            "protect": (metrics.bytes_read, metrics.bytes_stored),
            "restore": (metrics.restore_bytes_read, metrics.restore_bytes_written),
            "verify": (metrics.verify_bytes_read, None),
        }.get(operation, (None, None))
        self._read = read.labels(provider=provider) if read is not None else None
        self._out = out.labels(provider=provider) if out is not None else None

    @property
    def bytes_stored(self) -> int:
        """A protect's bytes stored."""
        return self.bytes_out

    @property
    def bytes_written(self) -> int:
        """A restore's bytes written."""
        return self.bytes_out

    def add(self, read: int, out: int) -> None:
        with self._lock:
            self.bytes_read += read
            self.bytes_out += out
        if read and self._read is not None:
            self._read.inc(read)
        if out and self._out is not None:
            self._out.inc(out)


def scheduled_fire(outcome: str) -> None:
    get().scheduled_fires.labels(outcome=outcome).inc()


def lease_renewal_failed(bank: str) -> None:
    get().lease_renewals_failed.labels(bank=bank).inc()


def gc_pass(provider: str, *, ok: bool, zombies: int = 0) -> None:
    metrics = get()
    metrics.gc_runs.labels(provider=provider, outcome=SUCCESS if ok else "error").inc()
    if zombies:
        metrics.zombies_reclaimed.labels(provider=provider).inc(zombies)


def bank_error(bank: str, operation: str) -> None:
    get().bank_errors.labels(bank=bank or "-", operation=operation).inc()


def dedup_ratio(bytes_read: int, bytes_stored: int) -> float:
    """Bytes read per byte stored (dedup and compression together): 1.0 when nothing was read, +Inf when
    something was read and nothing new had to be stored."""
    if bytes_read <= 0:
        return 1.0
    if bytes_stored <= 0:
        return math.inf
    return bytes_read / bytes_stored


def protected_sizes(extra_info: dict[str, Any]) -> tuple[int, int]:
    """(bytes read, bytes stored) a checkpoint's protect reported, summed over its resources."""
    read = stored = 0
    protected = extra_info.get("protected")
    if isinstance(protected, dict):
        for item in protected.values():
            if isinstance(item, dict):
                read += _int(item.get("bytes_read"))
                stored += _int(item.get("bytes_stored"))
    return read, stored


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


# -- figures read at each scrape ---------------------------------------------------------------------


class CatalogueCollector:
    """Checkpoints by provider and status, and per plan the seconds since its last available checkpoint
    (since its creation while it has none) and that checkpoint's dedup ratio, from the metadata store.

    A scrape that cannot read the store shows ``strongroom_catalogue_up 0`` and none of these figures."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{NAMESPACE}_catalogue_up", "1 if this scrape could read the metadata store.")
        try:
            counts = self.db.count_checkpoints()
            plans = self.db.plan_recoveries()
            now = self.db.now()
        except Exception as err:  # noqa: BLE001 - a scrape reports the store down, it does not fail
            LOG.warning("metrics: cannot read the catalogue: %s", err)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        by_status = GaugeMetricFamily(f"{NAMESPACE}_checkpoints", "Checkpoints in the catalogue, by provider "
                                      "and status.", labels=["provider", "status"])
        for provider in sorted({p for p, _ in counts}):
            for status in _CHECKPOINT_STATUSES:
                by_status.add_metric([provider, status], counts.get((provider, status), 0))
        yield by_status
        age = GaugeMetricFamily(f"{NAMESPACE}_plan_seconds_since_last_available_checkpoint",
                                "Seconds since the plan's newest available checkpoint (since the plan was created "
                                "while it has none).", labels=["plan", "project", "provider", "status"])
        ratio = GaugeMetricFamily(f"{NAMESPACE}_plan_dedup_ratio",
                                  "Bytes read per byte stored by the protect of the plan's newest available "
                                  "checkpoint (dedup and compression together).",
                                  labels=["plan", "project", "provider"])
        for plan in plans:
            since = plan.last_available_at or plan.created_at
            age.add_metric([plan.plan_id, plan.project_id, plan.provider_id, plan.status],
                           max((now - since).total_seconds(), 0.0))
            if plan.last_available_at is not None:
                ratio.add_metric([plan.plan_id, plan.project_id, plan.provider_id],
                                 dedup_ratio(*protected_sizes(plan.extra_info)))
        yield age
        yield ratio


class JobBoardCollector:
    """The jobboard's jobs, claimed and unclaimed (``backlog()`` of :class:`strongroom.protection.conductor.
    JobBoard`)."""

    def __init__(self, backlog: Callable[[], tuple[int, int]]) -> None:
        self._backlog = backlog

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(f"{NAMESPACE}_jobboard_jobs", "Jobs on the jobboard: unclaimed ones wait for "
                                 "a worker (the backlog).", labels=["state"])
        try:
            unclaimed, claimed = self._backlog()
        except Exception as err:  # noqa: BLE001 - the board may be down: no figure rather than a failed scrape
            LOG.warning("metrics: cannot read the jobboard: %s", err)
            return
        jobs.add_metric(["unclaimed"], unclaimed)
        jobs.add_metric(["claimed"], claimed)
        yield jobs


class AlertCollector:
    """One ``strongroom_alert`` gauge (value 1) per alert that is up after the last evaluation of this
    protection service (``active()``: :meth:`strongroom.alerts.service.AlertService.active_alerts`)."""

    def __init__(self, active: Callable[[], Iterable[Any]]) -> None:
        self._active = active

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(f"{NAMESPACE}_alert", "An alert that is up (doc/alerts.md): its condition, "
                                   "severity and resource; project empty for infrastructure, cause the id of the "
                                   "alert an at_risk one was carried from.",
                                   labels=["condition", "severity", "resource_type", "resource_id", "project",
                                           "cause", "id"])
        try:
            alerts = list(self._active())
        except Exception as err:  # noqa: BLE001 - no figure rather than a failed scrape
            LOG.warning("metrics: cannot list the active alerts: %s", err)
            return
        for alert in alerts:
            family.add_metric([alert.condition, str(alert.severity), alert.resource_type, alert.resource_id,
                               alert.project_id or "", alert.cause_id or "", alert.id], 1)
        yield family


# -- exposition ---------------------------------------------------------------------------------------


class _Scrape:
    """What one scrape shows: this process's metrics (or every worker's, in multiprocess mode) and
    ``extra`` collectors."""

    def __init__(self, extra: Sequence[Any] = ()) -> None:
        self._extra = list(extra)

    def collect(self) -> Iterator[Metric]:
        metrics = get()
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            yield from registry.collect()
        else:
            yield from metrics.registry.collect()
        for collector in [*metrics.collectors(), *self._extra]:
            yield from collector.collect()


def render(extra: Sequence[Any] = ()) -> tuple[bytes, str]:
    """The text exposition (body, content type) of this process's metrics and ``extra`` collectors."""
    return generate_latest(_Scrape(extra)), CONTENT_TYPE_LATEST


class Server:
    """``[metrics] bind_host``:``bind_port``: prometheus_client's HTTP server of this process's metrics."""

    def __init__(self, host: str, port: int) -> None:
        from prometheus_client import start_http_server

        self._server, self._thread = start_http_server(port, addr=host, registry=_Scrape())
        self.port = int(self._server.server_address[1])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(conf: cfg.ConfigOpts) -> Server | None:
    """Start the metrics port if ``[metrics] bind_port`` asks for one (None: it does not); ``ConfigError``
    naming the options if it cannot listen there (the port is taken: give each program its own)."""
    port = int(conf.metrics.bind_port)
    if not port:
        return None
    from strongroom import exceptions

    try:
        server = Server(str(conf.metrics.bind_host), port)
    except OSError as err:
        raise exceptions.ConfigError(
            reason=f"[metrics] bind_host {conf.metrics.bind_host}, bind_port {port}: cannot listen there: "
                   f"{err.strerror or err}") from err
    LOG.info("metrics on http://%s:%d/metrics", conf.metrics.bind_host, server.port)
    return server


# -- who may scrape the API's /metrics ------------------------------------------------------------------


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(ranges: Iterable[str]) -> list[Network]:
    """``[metrics] allowed_source_ranges`` as networks (ValueError naming a bad one)."""
    out: list[Network] = []
    for text in ranges:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as err:
            raise ValueError(f"[metrics] allowed_source_ranges: {text!r} is not an address or network") from err
    return out


def allowed(remote_addr: str | None, networks: Sequence[Network]) -> bool:
    """Whether a scraper at ``remote_addr`` is in one of ``networks`` (an empty list allows everyone)."""
    if not networks:
        return True
    try:
        address = ipaddress.ip_address((remote_addr or "").split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in networks)
