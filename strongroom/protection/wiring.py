"""Builds a protection service's parts and the manager that answers its RPC.

One place decides who gets which part: the leases, the catalogues (one per
provider), the runner and its flow pool, the job tracker (own pool or the
jobboard), garbage collection and crash recovery.  Tests build a manager the
same way, with a fake clock or a small pool.
"""

from __future__ import annotations

import os
import uuid
from concurrent import futures

from strongroom.alerts.collect import Collector as AlertCollector
from strongroom.alerts.model import Settings as AlertSettings
from strongroom.alerts.service import AlertService
from strongroom.clock import Clock
from strongroom.db.api import Database
from strongroom.notifications import DISABLED, Notifications
from strongroom.protection.catalogue import Catalogues
from strongroom.protection.collection import GarbageCollection
from strongroom.protection.conductor import JobBoard
from strongroom.protection.flows import FlowPersistence
from strongroom.protection.gc import Sweeping
from strongroom.protection.jobs import ActiveCheckpoints, JobTracker
from strongroom.protection.leases import BankLeases
from strongroom.protection.manager import ProtectionManager
from strongroom.protection.providers import ProviderRegistry
from strongroom.protection.recovery import Recovery
from strongroom.protection.runner import Runner
from strongroom.protection.usage import UsageCache


def default_owner_id(host: str) -> str:
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def protection_manager(db: Database, registry: ProviderRegistry, *, host: str, owner_id: str | None = None,
                       max_concurrent: int = 4, flow_workers: int = 4, persistence: FlowPersistence | None = None,
                       clock: Clock | None = None, gc_interval: float = 0, chunk_grace: float = 600.0,
                       takeover: bool = False, board: JobBoard | None = None,
                       notifications: Notifications = DISABLED, alert_settings: AlertSettings | None = None,
                       alert_interval: float = 0, usage_cache: float = 0) -> ProtectionManager:
    """A manager and its parts.  ``takeover`` lets it take over a live lease of the same owner id (only
    when a lock proves the holder is dead); ``gc_interval`` (0: never) and ``chunk_grace`` drive periodic
    garbage collection; ``board`` hands runs to the workers' conductors instead of this process's pool;
    ``notifications`` says when each run starts and ends; ``alert_settings`` and ``alert_interval`` (0: on
    demand only) drive the alert evaluation (``doc/alerts.md``); ``usage_cache`` is how long a usage
    answer is kept (seconds)."""
    clock = clock or Clock()
    owner_id = owner_id or default_owner_id(host)
    leases = BankLeases(registry, owner_id, clock=clock, takeover=takeover, host=host)
    catalogues = Catalogues(db, clock, host)
    sweeping = Sweeping()
    active = ActiveCheckpoints()
    flow_pool = futures.ThreadPoolExecutor(flow_workers, thread_name_prefix="sr-flow")
    runner = Runner(db, host, owner_id, flow_pool, persistence, clock, catalogues=catalogues, sweeping=sweeping,
                    running=active, notifications=notifications)
    jobs = JobTracker(db, registry, runner, leases, catalogues, active, owner_id=owner_id, host=host,
                      max_concurrent=max_concurrent, board=board)
    collection = GarbageCollection(registry, leases, catalogues, running=active, sweeping=sweeping,
                                   interval=gc_interval, chunk_grace=chunk_grace, after_pass=jobs.forget_taken_over)
    recovery = Recovery(db, host, clock, collection.collect, registry)
    alerts = AlertService(AlertCollector(db, registry, leases, alert_settings), clock, interval=alert_interval)
    return ProtectionManager(db, registry, host=host, owner_id=owner_id, clock=clock, leases=leases,
                             catalogues=catalogues, jobs=jobs, collection=collection, recovery=recovery,
                             alerts=alerts, usage=UsageCache(usage_cache, clock))
