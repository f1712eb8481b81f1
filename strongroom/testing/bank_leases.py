"""The lease part of the bank conformance suite (mixed into :class:`strongroom.testing.bank.BankConformance`).

Leases are judged by the bank's clock (``doc/lease-and-gc.md``): these tests
check that a plugin's timestamps (or its ``server_time``) let
:class:`~strongroom.bank_plugins.lease.BankLease` acquire, renew, fence and
expire a lease.  The expiry test waits in real time, since a remote bank's
clock cannot be faked.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import ClassVar

import pytest

from strongroom import exceptions
from strongroom.bank_plugins.base import BankPlugin
from strongroom.bank_plugins.lease import BankLease, LeaseWindows


class LeaseConformance:
    """Lease tests; they use the ``bank`` fixture of :class:`~strongroom.testing.bank.BankConformance`."""

    #: Lease windows of the expiry test (seconds; real time, since a remote bank's clock cannot be faked).
    lease_windows: ClassVar[LeaseWindows] = LeaseWindows(expire=2, renew=1, validity=1)
    #: How far the bank's clock may be from this machine's (set by BankConformance).
    clock_skew_tolerance: ClassVar[_dt.timedelta]

    def make_lease(self, bank: BankPlugin, owner: str, windows: LeaseWindows | None = None,
                   takeover: bool = False) -> BankLease:
        return BankLease(bank, owner, windows or LeaseWindows(), bank_name="conformance", takeover=takeover)

    def test_bank_clock_is_close_to_now(self, bank: BankPlugin) -> None:
        lease = self.make_lease(bank, "probe")
        assert abs(lease.bank_now() - _dt.datetime.now(_dt.UTC)) <= self.clock_skew_tolerance

    def test_lease_acquire_renew_release(self, bank: BankPlugin) -> None:
        mine, other = self.make_lease(bank, "svc-a"), self.make_lease(bank, "svc-b")
        assert not mine.check_lease_validity()
        assert not other.check_lease_existence("svc-a")
        mine.acquire_lease()
        assert mine.check_lease_validity()
        assert mine.check_lease_validity(epoch=mine.epoch)
        assert other.check_lease_existence("svc-a")
        mine.renew_lease()
        assert other.check_lease_existence("svc-a")
        leases = {info.owner_id: info for info in other.list_leases()}
        assert set(leases) == {"svc-a"}
        assert leases["svc-a"].alive
        assert leases["svc-a"].expires_at is not None
        mine.release_lease()
        assert not mine.check_lease_validity()
        assert not other.check_lease_existence("svc-a")
        assert not [info for info in other.list_leases() if info.alive]

    def test_lease_of_a_live_owner_cannot_be_acquired_twice(self, bank: BankPlugin) -> None:
        first = self.make_lease(bank, "svc")
        first.acquire_lease()
        second = self.make_lease(bank, "svc")
        with pytest.raises(exceptions.LeaseHeld) as excinfo:
            second.acquire_lease()
        assert "svc" in str(excinfo.value)
        assert not second.check_lease_validity()
        # A caller that knows the first holder is dead may take over; the first is then fenced.
        successor = self.make_lease(bank, "svc", takeover=True)
        successor.acquire_lease()
        with pytest.raises(exceptions.LeaseLost):
            first.renew_lease()
        assert not first.check_lease_validity()
        assert successor.check_lease_validity()

    def test_lease_expires_by_the_bank_clock(self, bank: BankPlugin) -> None:
        windows = self.lease_windows
        holder, watcher = self.make_lease(bank, "svc", windows), self.make_lease(bank, "gc", windows)
        holder.acquire_lease()
        epoch = holder.epoch
        assert watcher.check_lease_existence("svc")
        deadline = time.monotonic() + windows.expire + 6
        while watcher.check_lease_existence("svc"):
            assert time.monotonic() < deadline, "the lease did not expire"
            time.sleep(0.25)
        assert not holder.check_lease_validity(), "the holder still thinks it may publish after expiry"
        with pytest.raises(exceptions.LeaseLost):
            holder.renew_lease()
        # A new epoch: operations of the old one stay fenced.
        holder.acquire_lease()
        assert holder.check_lease_validity()
        assert not holder.check_lease_validity(epoch=epoch)
        assert watcher.check_lease_existence("svc")
