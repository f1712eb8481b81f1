"""Observation: every resource the alert conditions judge, read where its data is.

* banks: one listing call on the bank plugin itself (no retries: an evaluation reports what it sees now), and
  the state of this process's lease in it (:meth:`BankLeases.renewal_error`);
* block backends and pools: :meth:`BlockBackend.stats`;
* volumes: the resources of plans that a plugin with a ``block_backend`` protects (each on every pool of its
  backend);
* plans, checkpoints, scheduled operations and their last runs: the metadata store.

A plan's recovery point: for each enabled scheduled protect of the plan, the first fire its trigger plans after
the plan's newest available checkpoint in its own provider (``Database.plan_recoveries``, as the metric
``plan_seconds_since_last_available_checkpoint``; or after the operation was created, if it has none); the plan is past
its recovery point once the earliest of those plus ``recovery_point_grace`` has passed.  With a regular trigger
that is one interval plus the grace after the last good checkpoint.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Iterator
from typing import Any

from strongroom import exceptions
from strongroom.alerts import resources as rc
from strongroom.alerts.model import Resource, Settings
from strongroom.db.api import Database
from strongroom.db.scheduling import SchedulingStore
from strongroom.objects.records import CheckpointRecord, Plan
from strongroom.objects.scheduling import OperationType, ScheduledOperation, Trigger
from strongroom.operationengine.schedule import Schedule, TimeSpec, schedule_for
from strongroom.protection.leases import BankLeases
from strongroom.protection.providers import Provider, ProviderRegistry
from strongroom.redaction import scrub

LOG = logging.getLogger(__name__)

#: Checkpoint statuses a writer is expected to leave; one that stays in them is stuck.
RUNNING_STATUSES = ("protecting", "deleting", "copying")


def _iso(value: _dt.datetime | None) -> str:
    return value.isoformat() if value is not None else "never"


def _secrets(options: dict[str, Any], secret_names: Any) -> list[str]:
    return [str(v) for k, v in options.items() if v and (k in (secret_names or ()) or any(
        word in k.lower() for word in ("password", "secret", "token", "key")))]


class Collector:
    """Observes the resources of one protection service: its providers (``registry``, ``leases``; either may
    be None in tests of the parts) and the metadata store every service shares."""

    def __init__(self, db: Database, registry: ProviderRegistry | None = None, leases: BankLeases | None = None,
                 settings: Settings | None = None) -> None:
        self.db = db
        self.scheduling = SchedulingStore(db)
        self.registry = registry
        self.leases = leases
        self.settings = settings or Settings()

    def collect(self, now: _dt.datetime) -> list[Resource]:
        plans = self.db.list_plans(None)
        checkpoints = self._checkpoints()
        newest = {r.plan_id: r.last_available_at for r in self.db.plan_recoveries() if r.last_available_at}
        out: list[Resource] = []
        volumes_of_backend: dict[str, list[tuple[str, str]]] = {}
        if self.registry is not None:
            backends = self._backend_names()
            for provider in self.registry.providers():
                out += self._provider(provider, plans)
            out += self._volumes(plans, backends, volumes_of_backend)
            out += self._backends(backends, volumes_of_backend)
        out += self._plans(plans, newest, now)
        out += self._checkpoint_resources(checkpoints, now)
        return out

    # -- providers and their banks --------------------------------------------------------------------------

    def _provider(self, provider: Provider, plans: list[Plan]) -> list[Resource]:
        affected = [("plan", p.id) for p in plans if p.provider_id == provider.id]
        bank_id = f"{provider.id}/bank"
        bank = rc.Bank.resource(bank_id, provider.bank_description,
                                attributes={"provider_id": provider.id, "driver": provider.bank_name},
                                statistics={"error": self._probe(provider),
                                            "lease_error": self._lease_error(provider)},
                                affects=[("provider", provider.id)])
        return [bank, rc.Provider.resource(provider.id, f"provider {provider.name!r}", affects=affected)]

    @staticmethod
    def _probe(provider: Provider) -> str | None:
        """None if one listing call on the bank's plugin answers, else why not (secrets masked)."""
        try:
            plugin = provider.bank.plugin
            inner = getattr(plugin, "inner", plugin)  # past RetryingBank: no backoff while it is down
            inner.list_objects(limit=1)
        except (exceptions.StrongroomError, OSError) as err:
            return scrub(str(err), _secrets(dict(provider.bank_options), ()))
        return None

    def _lease_error(self, provider: Provider) -> str | None:
        if self.leases is None:
            return None
        return self.leases.renewal_error(provider)

    # -- block storage -----------------------------------------------------------------------------------

    def _backend_names(self) -> dict[str, tuple[Any, dict[str, str]]]:
        """backend key -> (backend, {provider id: the name its plugins use}), keyed as the registry keys them."""
        assert self.registry is not None
        out: dict[str, tuple[Any, dict[str, str]]] = {}
        for provider in self.registry.providers():
            try:
                named = provider.block_backends()
            except (exceptions.StrongroomError, OSError) as err:
                LOG.warning("block backends of provider %s: %s", provider.name, err)
                continue
            for name, backend in named.items():
                key = name
                if key in out and out[key][0].options != backend.options:
                    key = f"{name}@{provider.name}"
                entry = out.setdefault(key, (backend, {}))
                entry[1][provider.id] = name
        return out

    def _volumes(self, plans: list[Plan], backends: dict[str, tuple[Any, dict[str, str]]],
                 volumes_of_backend: dict[str, list[tuple[str, str]]]) -> list[Resource]:
        assert self.registry is not None
        key_of = {(pid, name): key for key, (_, names) in backends.items() for pid, name in names.items()}
        out: dict[str, Resource] = {}
        affects: dict[str, list[tuple[str, str]]] = {}
        for plan in plans:
            try:
                provider = self.registry.get(plan.provider_id)
            except exceptions.NotFound:
                continue
            for resource in plan.resources:
                plugin = provider.plugin_for_type.get(resource.type)
                name = plugin.options.get("block_backend") if plugin is not None else None
                key = key_of.get((provider.id, str(name))) if name else None
                if key is None:
                    continue
                vid = f"{key}/{resource.id}"
                affects.setdefault(vid, []).append(("plan", plan.id))
                if vid not in out:
                    out[vid] = rc.Volume.resource(vid, f"volume {resource.name or resource.id!r}",
                                                  project_id=plan.project_id,
                                                  attributes={"backend": key, "volume_id": resource.id})
                    volumes_of_backend.setdefault(key, []).append(("volume", vid))
        return [rc.Volume.resource(r.id, r.name, project_id=r.project_id, attributes=r.attributes,
                                   affects=affects[r.id]) for r in out.values()]

    def _backends(self, backends: dict[str, tuple[Any, dict[str, str]]],
                  volumes_of_backend: dict[str, list[tuple[str, str]]]) -> list[Resource]:
        out: list[Resource] = []
        for key, (backend, _) in sorted(backends.items()):
            pools: list[Resource] = []
            error = None
            try:
                stats = backend.stats()
            except (exceptions.StrongroomError, OSError) as err:
                error = scrub(str(err), _secrets(dict(backend.options), getattr(backend, "secret_options", ())))
            else:
                for pool in stats.pools:
                    total, free = int(pool.total_capacity), int(pool.free_capacity)
                    percent = 100.0 * free / total if total > 0 else 100.0
                    pools.append(rc.Pool.resource(
                        f"{key}/{pool.name}", f"pool {pool.name!r} of block backend {key!r}",
                        attributes={"backend": key, "pool": pool.name},
                        statistics={"total_bytes": total, "free_bytes": free,
                                    "allocated_bytes": int(pool.allocated_capacity), "free_percent": percent},
                        affects=volumes_of_backend.get(key, [])))
            # Its volumes directly too: a backend that cannot answer reports no pool to carry its alert.
            out.append(rc.BlockBackend.resource(key, f"block backend {key!r}", statistics={"error": error},
                                                affects=[*(("pool", p.id) for p in pools),
                                                         *volumes_of_backend.get(key, [])]))
            out += pools
        return out

    # -- plans, scheduled operations, checkpoints --------------------------------------------------------

    def _checkpoints(self) -> list[CheckpointRecord]:
        out: list[CheckpointRecord] = []
        for status in ("available", *RUNNING_STATUSES):
            out += self.db.list_checkpoints(None, None, filters={"status": status})
        return out

    def _plans(self, plans: list[Plan], newest: dict[str, _dt.datetime], now: _dt.datetime) -> list[Resource]:
        known = {p.id for p in plans}
        triggers: dict[str, Schedule | None] = {}
        deadlines: dict[str, tuple[_dt.datetime, _dt.datetime, float | None]] = {}
        out: list[Resource] = []
        for op in self.scheduling.list_operations(None):
            if op.plan_id not in known:
                continue
            out.append(self._operation(op))
            if op.operation_type != OperationType.PROTECT or not op.enabled:
                continue
            schedule = self._schedule(op.trigger_id, triggers)
            if schedule is None:
                continue
            since = newest.get(op.plan_id) or op.created_at or now
            due = schedule.next_after(since)
            if due is None:
                continue
            deadline = due + _dt.timedelta(seconds=self.settings.recovery_point_grace)
            if op.plan_id not in deadlines or deadline < deadlines[op.plan_id][0]:
                deadlines[op.plan_id] = (deadline, due, schedule.min_gap())
        for plan in plans:
            stats: dict[str, Any] = {"now": now, "last_available_at": _iso(newest.get(plan.id))}
            if plan.id in deadlines:
                deadline, due, gap = deadlines[plan.id]
                stats.update(deadline=deadline, due_at=due.isoformat(),
                             interval=int(gap) if gap is not None else "?")
            out.append(rc.Plan.resource(plan.id, f"plan {plan.name!r}", project_id=plan.project_id,
                                        attributes={"provider_id": plan.provider_id}, statistics=stats))
        return out

    def _schedule(self, trigger_id: str, cache: dict[str, Schedule | None]) -> Schedule | None:
        if trigger_id not in cache:
            try:
                trigger: Trigger = self.scheduling.get_trigger(trigger_id)
                cache[trigger_id] = schedule_for(TimeSpec.from_properties(trigger.properties))
            except (exceptions.StrongroomError, KeyError, ValueError) as err:
                LOG.warning("trigger %s cannot be read for alerts: %s", trigger_id, err)
                cache[trigger_id] = None
        return cache[trigger_id]

    def _operation(self, op: ScheduledOperation) -> Resource:
        fires = self.scheduling.list_fires(op.id, limit=1)
        stats: dict[str, Any] = {}
        if fires:
            last = fires[0]
            stats = {"state": last.state, "fire_time": last.fire_time.isoformat(),
                     "error_info": last.error_info or "no reason recorded"}
        return rc.ScheduledOperation.resource(op.id, f"scheduled operation {op.name!r}", project_id=op.project_id,
                                              attributes={"plan_id": op.plan_id}, statistics=stats,
                                              affects=[("plan", op.plan_id)])

    def _checkpoint_resources(self, checkpoints: list[CheckpointRecord], now: _dt.datetime) -> list[Resource]:
        out: list[Resource] = []
        for cp in self._relevant(checkpoints, now):
            stats: dict[str, Any] = {}
            verification = (cp.extra_info or {}).get("last_verification")
            if isinstance(verification, dict):
                stats.update(verification=verification.get("status"), verified_at=verification.get("at"),
                             reason=verification.get("reason") or "no reason recorded")
            since = cp.updated_at or cp.created_at
            if since is not None:
                stats.update(idle_seconds=(now - since).total_seconds(), since=since.isoformat())
            out.append(rc.Checkpoint.resource(f"{cp.provider_id}/{cp.id}", f"checkpoint {cp.id}",
                                              project_id=cp.project_id,
                                              attributes={"status": cp.status, "provider_id": cp.provider_id,
                                                          "checkpoint_id": cp.id},
                                              statistics=stats,
                                              affects=[("plan", cp.plan_id)] if cp.plan_id else []))
        return out

    @staticmethod
    def _relevant(checkpoints: list[CheckpointRecord], now: _dt.datetime) -> Iterator[CheckpointRecord]:
        """Only checkpoints a condition could hold on: running ones, and those with a failed verification."""
        seen: set[tuple[str, str]] = set()
        for cp in checkpoints:
            verification = (cp.extra_info or {}).get("last_verification")
            failed = isinstance(verification, dict) and verification.get("status") == "fail"
            if (cp.status in RUNNING_STATUSES or failed) and (cp.provider_id, cp.id) not in seen:
                seen.add((cp.provider_id, cp.id))
                yield cp
