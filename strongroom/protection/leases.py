"""This process's leases: one per provider bank, kept by a :class:`LeaseKeeper` each.

A provider whose lease is not held is *unavailable*: its bank is unreachable or
another live process holds this owner id.  Writes (protect, delete) to it get a
``ServiceUnavailable`` that names the bank and why; other providers keep
working.  A run takes a :class:`Fence` when it starts: the fence stays up only
while the lease of the epoch it started in is valid, so a writer whose
renewals failed stops and never publishes (``doc/lease-and-gc.md``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading

from strongroom import exceptions
from strongroom.bank_plugins.lease import BankLease, LeaseKeeper
from strongroom.clock import Clock
from strongroom.protection.providers import Provider, ProviderRegistry

LOG = logging.getLogger(__name__)

#: How long a write waits for a lease still being acquired at start-up (real seconds).
FIRST_ACQUIRE_WAIT = 5.0


@dataclasses.dataclass(frozen=True)
class Fence:
    """The lease epoch a run started in.  ``valid()`` turns false for good once that epoch ends or expires."""

    keeper: LeaseKeeper
    epoch: int

    def valid(self) -> bool:
        return self.keeper.valid(self.epoch)

    def lost(self, what: str) -> exceptions.LeaseLost:
        """The error that says this run may no longer ``what`` (e.g. "publish"), naming the bank."""
        lease = self.keeper.lease
        why = self.keeper.last_error or "its validity ran out before a renewal succeeded"
        return exceptions.LeaseLost(owner=lease.owner_id, bank=lease.bank_name, reason=f"will not {what}: {why}")

    def check(self, what: str) -> None:
        """Raise ``LeaseLost`` naming the bank unless this run may still ``what``."""
        if not self.valid():
            raise self.lost(what)


class BankLeases:
    """The leases of one protection service process, one per provider."""

    def __init__(self, registry: ProviderRegistry, owner_id: str, *, clock: Clock | None = None,
                 takeover: bool = False, host: str = "") -> None:
        self.registry = registry
        self.owner_id = owner_id
        self.host = host
        self.clock = clock or Clock()
        self.takeover = takeover
        self._keepers: dict[str, LeaseKeeper] = {}
        self._lock = threading.Lock()
        self._started = False

    def keeper(self, provider: Provider) -> LeaseKeeper:
        """The keeper of ``provider``'s lease (created on first use; raises ``ServiceUnavailable``
        if the bank cannot even be constructed)."""
        with self._lock:
            keeper = self._keepers.get(provider.id)
            if keeper is None:
                bank = provider.bank
                lease = BankLease(bank.plugin, self.owner_id, provider.lease_windows,
                                  bank_name=provider.bank_description, clock=self.clock, takeover=self.takeover,
                                  host=self.host)
                keeper = LeaseKeeper(lease)
                self._keepers[provider.id] = keeper
                if self._started:
                    keeper.start()
            return keeper

    def start(self) -> None:
        """Start acquiring and renewing every provider's lease in the background."""
        with self._lock:
            self._started = True
        for provider in self.registry.providers():
            try:
                self.keeper(provider).start()
            except exceptions.StrongroomError as err:
                LOG.error("provider %s is unavailable: %s", provider.name, err)

    def fence(self, provider: Provider) -> Fence:
        """A fence for a write to ``provider``'s bank; ``ServiceUnavailable`` if its lease is not held."""
        keeper = self.keeper(provider)
        if not keeper.valid():
            if self._started:
                keeper.wait_held(FIRST_ACQUIRE_WAIT if keeper.last_error is None else 0.0)
            else:  # no thread (tests, tools): renew now, or acquire a new epoch if the lease lapsed
                for _ in range(2):
                    keeper.tick()
                    if keeper.valid():
                        break
        if not keeper.valid():
            reason = keeper.last_error or "its lease could not be acquired yet"
            raise exceptions.ServiceUnavailable(what=provider.bank_description, reason=reason)
        return Fence(keeper, keeper.epoch)

    def status(self, provider: Provider) -> tuple[bool, str | None]:
        """(available, reason) of ``provider`` as far as its lease tells."""
        try:
            keeper = self.keeper(provider)
        except exceptions.StrongroomError as err:
            return False, str(err)
        if keeper.valid():
            return True, None
        return False, keeper.last_error or "its lease is being acquired"

    def renewal_error(self, provider: Provider) -> str | None:
        """Why the last renewal of ``provider``'s lease failed while it is still held; None when the last
        renewal succeeded, or no keeper exists (nothing is created or started by asking)."""
        with self._lock:
            keeper = self._keepers.get(provider.id)
        if keeper is None or not keeper.held:
            return None
        return keeper.last_error

    def stop(self, release: bool = True) -> None:
        with self._lock:
            keepers = list(self._keepers.values())
            self._started = False
        for keeper in keepers:
            keeper.stop(release=release)
