"""Garbage collection as a service runs it: each provider's bank, under this process's lease.

:func:`collect` is one pass over one provider's bank (and the block snapshots its interrupted
protects left, :mod:`strongroom.protection.snapshots`) (used by the service and
by ``strongroom-manage bank gc``); :class:`GarbageCollection` runs passes over
every provider, periodically on a thread (``[protection] gc_interval``) and on
demand, and keeps totals.  What is reclaimed is written by the checkpoint
catalogue, bank first; afterwards the catalogue is reconciled with the bank for
rows a writer left running when it died between the two.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Collection
from typing import Any

from strongroom import exceptions, metrics
from strongroom.bank_plugins.lease import BankLease
from strongroom.protection.bases import bank_status
from strongroom.protection.catalogue import Catalogues, CheckpointCatalogue
from strongroom.protection.gc import Collector, GarbageCollector, Report, Sweeping
from strongroom.protection.leases import BankLeases
from strongroom.protection.providers import Provider, ProviderRegistry
from strongroom.protection.snapshots import reclaim_snapshots

LOG = logging.getLogger(__name__)


def collect(catalogue: CheckpointCatalogue, provider: Provider, lease: BankLease, *,
            running: Callable[[], Collection[str]] = frozenset, sweeping: Sweeping | None = None,
            chunk_grace: float = 600.0, dry_run: bool = False, sweep: bool = True) -> Report:
    """One garbage collection pass over ``provider``'s bank on behalf of ``lease``'s owner."""
    collector = GarbageCollector(catalogue, lease, chunk_grace=chunk_grace, running=running, sweeping=sweeping,
                                 name=provider.bank_description)
    report = collector.collect(dry_run=dry_run, sweep=sweep)
    try:
        backends = provider.block_backends()
    except exceptions.StrongroomError as err:
        report.errors.append(f"block backends: {err}")
        backends = {}
    snapshots = reclaim_snapshots(backends, provider.id, collector.live_checkpoints, dry_run=dry_run,
                                  status=bank_status(catalogue.bank))
    report.snapshots, report.leftovers = snapshots.snapshots, snapshots.leftovers
    report.errors += snapshots.errors
    if not dry_run:
        try:
            catalogue.reconcile(running())
        except exceptions.StrongroomError as err:
            report.errors.append(f"catalogue reconciliation: {err}")
    return report


class GarbageCollection:
    """Garbage collection of every provider's bank by one protection service process.

    ``running()`` names the checkpoints this process works on; ``after_pass()``
    runs after each periodic pass (the job tracker forgets jobs other workers took over).
    """

    def __init__(self, registry: ProviderRegistry, leases: BankLeases, catalogues: Catalogues, *,
                 running: Callable[[], Collection[str]], sweeping: Sweeping, interval: float = 0,
                 chunk_grace: float = 600.0, after_pass: Callable[[], None] = lambda: None) -> None:
        self.registry = registry
        self.leases = leases
        self.catalogues = catalogues
        self.running = running
        self.sweeping = sweeping
        self.chunk_grace = chunk_grace
        self._after_pass = after_pass
        self._thread = Collector(self._periodic, interval)
        self.totals: collections.Counter[str] = collections.Counter()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def collect(self, provider_id: str | None = None, dry_run: bool = False,
                sweep: bool = True) -> list[dict[str, Any]]:
        """One pass over each provider's bank (or one); returns a summary per bank."""
        out: list[dict[str, Any]] = []
        providers = [self.registry.get(provider_id)] if provider_id else self.registry.providers()
        for provider in providers:
            try:
                fence = self.leases.fence(provider)
            except exceptions.StrongroomError as err:
                if not dry_run:
                    metrics.gc_pass(provider.id, ok=False)
                out.append({"provider_id": provider.id, "bank": provider.bank_description, "error": str(err)})
                continue
            report = collect(self.catalogues.of(provider), provider, fence.keeper.lease, running=self.running,
                             sweeping=self.sweeping, chunk_grace=self.chunk_grace, dry_run=dry_run, sweep=sweep)
            if not dry_run:
                metrics.gc_pass(provider.id, ok=not report.errors, zombies=len(report.reclaimed))
                self.totals.update(passes=1, zombies_reclaimed=len(report.reclaimed),
                                   chunks_removed=report.chunks_removed, errors=len(report.errors),
                                   snapshots_removed=len(report.snapshots), leases_removed=len(report.leases_removed))
            out.append({"provider_id": provider.id, "bank": provider.bank_description, "summary": report.summary(),
                        "reclaimed": [r.to_dict() for r in report.reclaimed], "errors": report.errors,
                        "snapshots_removed": report.snapshots, "leftovers_removed": report.leftovers,
                        "chunks_removed": report.chunks_removed, "leases_removed": report.leases_removed})
        return out

    def _periodic(self) -> None:
        for result in self.collect():
            if "error" in result:
                LOG.warning("garbage collection skipped %s: %s", result["bank"], result["error"])
        self._after_pass()
        LOG.debug("garbage collection totals: %s", dict(self.totals))
