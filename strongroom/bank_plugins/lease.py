"""Leases: how a bank knows which protection services are alive (``doc/lease-and-gc.md``).

Every protection service process holds one lease in each bank it writes: an
object (``leases/<owner_id>``, built by :class:`~strongroom.bank_plugins.layout.BankLayout`) that it rewrites every
``renew`` seconds and that counts as gone ``expire`` seconds after its last
rewrite.  Garbage collection treats the unfinished checkpoints of an owner
whose lease is gone as zombies.

Expiry is judged by the **bank's** clock, never by comparing two machines'
clocks:

* a bank that can expire objects itself (``supports_expiry``, Swift's
  ``X-Delete-After``) writes the lease with ``delete_after = expire``; the lease
  exists exactly as long as the bank serves the object;
* any other bank (S3, fs, memory): the lease is alive while
  ``bank_now - last_modified < expire``, where ``last_modified`` is the bank's
  timestamp of the last renewal and ``bank_now`` the bank's time now (the HTTP
  ``Date`` of a request, or the ``last_modified`` of a probe object written for
  the purpose).  Timestamps have one-second resolution on most stores: one
  second of slack is added in the owner's favour.

**Validity** is the holder's own, stricter view, measured on its monotonic
clock from the *start* of its last successful renewal: the lease is valid for
``expire - validity`` seconds after it, i.e. while at least ``validity``
seconds of the lease remain.  Whatever the renewal's latency, the bank judged
the lease alive for at least as long, so a writer that checks validity before
it publishes (fencing) never publishes after garbage collection judged it dead,
with ``validity`` seconds of margin for clock rates and the publishing request.

Each acquisition starts a new **epoch**.  An operation records the epoch it
started in and stops when the epoch changes: a lease that was lost (renewals
failed for too long, or another process took it over) and acquired again does
not revive the operations of the old epoch, whose checkpoints garbage
collection may already have reclaimed.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as _dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from strongroom import exceptions, metrics
from strongroom.bank_plugins.base import BankPlugin, ObjectInfo
from strongroom.bank_plugins.layout import BankLayout
from strongroom.clock import Clock

LOG = logging.getLogger(__name__)

#: Karbor's defaults (seconds).
DEFAULT_EXPIRE_WINDOW = 600
DEFAULT_RENEW_WINDOW = 120
DEFAULT_VALIDITY_WINDOW = 100
#: Slack in the owner's favour for stores whose timestamps have one-second resolution.
TIMESTAMP_SLACK = _dt.timedelta(seconds=1)


@dataclasses.dataclass(frozen=True)
class LeaseWindows:
    """``expire``: lifetime after a renewal; ``renew``: period of renewals;
    ``validity``: the part of the lease a holder keeps in reserve (see the module docstring).

    ``expire`` must be a multiple of ``renew`` and ``validity`` at most ``renew``.
    """

    expire: int = DEFAULT_EXPIRE_WINDOW
    renew: int = DEFAULT_RENEW_WINDOW
    validity: int = DEFAULT_VALIDITY_WINDOW

    def __post_init__(self) -> None:
        for key, value in (("lease_expire_window", self.expire), ("lease_renew_window", self.renew),
                           ("lease_validity_window", self.validity)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise exceptions.LeaseWindowError(key=key, reason=f"must be a positive integer, not {value!r}")
        if self.expire % self.renew:
            raise exceptions.LeaseWindowError(
                key="lease_expire_window",
                reason=f"{self.expire} is not a multiple of lease_renew_window ({self.renew})")
        if self.validity > self.renew:
            raise exceptions.LeaseWindowError(
                key="lease_validity_window",
                reason=f"{self.validity} is more than lease_renew_window ({self.renew})")
        if self.expire <= self.renew:
            raise exceptions.LeaseWindowError(
                key="lease_expire_window",
                reason=f"{self.expire} leaves no room for a failed renewal: use at least twice "
                       f"lease_renew_window ({self.renew})")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> LeaseWindows:
        """The windows of a bank's provider section (``lease_*_window``), defaults for the rest."""
        return cls(expire=options.get("lease_expire_window", DEFAULT_EXPIRE_WINDOW),
                   renew=options.get("lease_renew_window", DEFAULT_RENEW_WINDOW),
                   validity=options.get("lease_validity_window", DEFAULT_VALIDITY_WINDOW))

    @property
    def valid_for(self) -> int:
        """Seconds after the start of a successful renewal during which the holder may publish."""
        return self.expire - self.validity


@dataclasses.dataclass(frozen=True)
class LeaseInfo:
    """One lease as the bank shows it (times by the bank's clock)."""

    owner_id: str
    alive: bool
    renewed_at: _dt.datetime | None
    expires_at: _dt.datetime | None
    host: str = ""
    pid: int | None = None
    instance: str = ""


class LeasePlugin(abc.ABC):
    """Karbor's lease interface: one owner's lease in one bank."""

    owner_id: str

    @abc.abstractmethod
    def acquire_lease(self) -> None:
        """Create the lease (a new epoch).  ``LeaseHeld`` if another live process holds this owner id."""

    @abc.abstractmethod
    def renew_lease(self) -> None:
        """Extend the lease.  ``LeaseLost`` if it expired or was taken over; bank errors propagate."""

    @abc.abstractmethod
    def check_lease_validity(self, epoch: int | None = None) -> bool:
        """True while this holder may still publish (and, if given, ``epoch`` is the current one)."""

    @abc.abstractmethod
    def check_lease_existence(self, owner_id: str, now: _dt.datetime | None = None) -> bool:
        """True if ``owner_id``'s lease exists and has not expired by the bank's clock."""

    @abc.abstractmethod
    def release_lease(self) -> None:
        """Delete the lease if it is still ours (clean shutdown).  Idempotent."""

    @abc.abstractmethod
    def list_leases(self) -> list[LeaseInfo]:
        """Every lease in the bank, alive or expired, by owner id."""


class BankLease(LeasePlugin):
    """A lease in any :class:`BankPlugin` (see the module docstring for how expiry is judged).

    Its keys come from the bank layout: ``leases/<owner>`` for the lease and
    ``clock/<owner>`` for the probe object it writes when the bank cannot tell
    its time otherwise.  ``takeover``
    lets :meth:`acquire_lease` replace a live lease of the same owner id held by
    another process: only for a caller that knows that process is dead (the
    all-in-one holds an exclusive lock on its state directory).
    """

    def __init__(self, plugin: BankPlugin, owner_id: str, windows: LeaseWindows, *,
                 bank_name: str = "",
                 clock: Clock | None = None, takeover: bool = False, host: str = "") -> None:
        self.plugin = plugin
        self.owner_id = owner_id
        #: The holder's host as the lease shows it: the service's configured ``host`` (else the OS's name).
        self.host = host or socket.gethostname()
        self.windows = windows
        self._probe_key = BankLayout.clock_probe_key(owner_id)
        self.bank_name = bank_name or f"bank {type(plugin).__name__}"
        self.clock = clock or Clock()
        self.takeover = takeover
        self.instance = uuid.uuid4().hex
        self.epoch = 0
        self._valid_until: float | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"BankLease({self.bank_name!r}, owner={self.owner_id!r}, epoch={self.epoch})"

    # -- reading leases ------------------------------------------------------

    def bank_now(self) -> _dt.datetime:
        """Now by the bank's clock."""
        now = self.plugin.server_time()
        if now is not None:
            return now
        self.plugin.put_object(self._probe_key, b"")
        modified = self.plugin.head_object(self._probe_key).last_modified
        if modified is None:
            raise exceptions.LeaseError(owner=self.owner_id, bank=self.bank_name,
                                        reason="the bank reports no modification times; it cannot hold leases")
        return modified

    def _head(self, owner_id: str) -> ObjectInfo | None:
        try:
            return self.plugin.head_object(BankLayout.lease_key(owner_id))
        except exceptions.BankObjectNotFound:
            return None

    def _expires_at(self, info: ObjectInfo) -> _dt.datetime | None:
        if info.expires_at is not None:
            return info.expires_at
        if info.last_modified is None:
            return None
        window = _int(info.metadata.get("expire-window"), self.windows.expire)
        return info.last_modified + _dt.timedelta(seconds=window) + TIMESTAMP_SLACK

    def _alive(self, info: ObjectInfo, now: _dt.datetime | None) -> bool:
        if self.plugin.supports_expiry:
            return True  # the bank serves it: by its clock it has not expired
        expires = self._expires_at(info)
        if expires is None:
            return True  # cannot tell: never call a lease dead on a guess
        return (now or self.bank_now()) < expires

    def check_lease_existence(self, owner_id: str, now: _dt.datetime | None = None) -> bool:
        info = self._head(owner_id)
        return info is not None and self._alive(info, now)

    def lease_info(self, owner_id: str, now: _dt.datetime | None = None) -> LeaseInfo | None:
        info = self._head(owner_id)
        if info is None:
            return None
        return LeaseInfo(owner_id=owner_id, alive=self._alive(info, now), renewed_at=info.last_modified,
                         expires_at=self._expires_at(info), host=info.metadata.get("host", ""),
                         pid=_int(info.metadata.get("pid"), None), instance=info.metadata.get("instance", ""))

    def list_leases(self) -> list[LeaseInfo]:
        now = None if self.plugin.supports_expiry else self.bank_now()
        out = []
        for owner in self.owners():
            info = self.lease_info(owner, now)
            if info is None:  # expired and hidden (Swift), or released meanwhile
                out.append(LeaseInfo(owner_id=owner, alive=False, renewed_at=None, expires_at=None))
            else:
                out.append(info)
        return out

    def remove_expired(self, owner_id: str, now: _dt.datetime | None = None) -> bool:
        """Delete another owner's lease object and clock probe if, by the bank's clock, the lease has
        expired (or the bank already hides it); False, touching nothing, if it is alive.  For garbage
        collection, once nothing of that owner is left to reclaim.  An owner that comes back after this
        finds its lease gone: it loses it (``renew_lease``) and acquires a new epoch, as after an expiry."""
        if owner_id == self.owner_id:
            return False
        info = self._head(owner_id)
        if info is not None and self._alive(info, now):
            return False
        for key in (BankLayout.lease_key(owner_id), BankLayout.clock_probe_key(owner_id)):
            try:
                self.plugin.delete_object(key)
            except exceptions.BankObjectNotFound:
                pass
        return True

    def owners(self) -> Iterator[str]:
        """Owner ids of every lease object listed (expired ones included until the bank removes them)."""
        for key in self.plugin.iter_objects(BankLayout.LEASES):
            owner = BankLayout.owner_of_lease(key)
            if owner is not None:
                yield owner

    # -- holding this owner's lease -------------------------------------------

    def _write(self) -> None:
        metadata = {"instance": self.instance, "expire-window": str(self.windows.expire),
                    "host": self.host, "pid": str(os.getpid())}
        body = json.dumps({"owner_id": self.owner_id, **metadata}, sort_keys=True).encode()
        key = BankLayout.lease_key(self.owner_id)
        if self.plugin.supports_expiry:
            self.plugin.put_expiring_object(key, body, metadata, self.windows.expire)
        else:
            self.plugin.put_object(key, body, metadata)

    def acquire_lease(self) -> None:
        started = self.clock.monotonic()
        current = self._head(self.owner_id)
        if (current is not None and current.metadata.get("instance") != self.instance
                and not self.takeover and self._alive(current, None)):
            expires = self._expires_at(current)
            raise exceptions.LeaseHeld(
                owner=self.owner_id, bank=self.bank_name,
                reason=f"instance {current.metadata.get('instance', '?')} on host "
                       f"{current.metadata.get('host', '?')} (pid {current.metadata.get('pid', '?')}) renewed it "
                       f"at {current.last_modified}; it expires at {expires} unless renewed")
        self._write()
        with self._lock:
            self.epoch += 1
            self._valid_until = started + self.windows.valid_for
        LOG.info("lease of %s acquired in %s (epoch %d)", self.owner_id, self.bank_name, self.epoch)

    def renew_lease(self) -> None:
        started = self.clock.monotonic()
        current = self._head(self.owner_id)
        if current is None:
            self._invalidate()
            raise exceptions.LeaseLost(owner=self.owner_id, bank=self.bank_name,
                                       reason="the lease object is gone (expired or deleted)")
        if current.metadata.get("instance") != self.instance:
            self._invalidate()
            raise exceptions.LeaseLost(owner=self.owner_id, bank=self.bank_name,
                                       reason=f"taken over by instance {current.metadata.get('instance', '?')} "
                                              f"on host {current.metadata.get('host', '?')}")
        if not self.check_lease_validity():
            # Between our last renewal and now the bank may have judged us dead: a
            # new epoch, so that operations of the old one do not publish.
            self._invalidate()
            raise exceptions.LeaseLost(owner=self.owner_id, bank=self.bank_name,
                                       reason="renewals failed for longer than the lease allows")
        self._write()
        with self._lock:
            self._valid_until = started + self.windows.valid_for

    def _invalidate(self) -> None:
        with self._lock:
            self._valid_until = None

    def check_lease_validity(self, epoch: int | None = None) -> bool:
        with self._lock:
            if self._valid_until is None or (epoch is not None and epoch != self.epoch):
                return False
            return self.clock.monotonic() < self._valid_until

    def valid_for(self) -> float:
        """Seconds of validity left (0 when invalid)."""
        with self._lock:
            if self._valid_until is None:
                return 0.0
            return max(0.0, self._valid_until - self.clock.monotonic())

    def release_lease(self) -> None:
        self._invalidate()
        current = self._head(self.owner_id)
        if current is not None and current.metadata.get("instance") == self.instance:
            self.plugin.delete_object(BankLayout.lease_key(self.owner_id))
        try:
            self.plugin.delete_object(self._probe_key)
        except exceptions.BankError:
            pass  # a stray probe object is harmless


class LeaseKeeper:
    """Acquires and renews one :class:`BankLease` on a thread, and says whether it is held.

    :meth:`tick` is one step (acquire if not held, else renew) and returns the
    seconds until the next; tests call it directly with a ``FakeClock``.  While
    renewals fail, they are retried every ``retry_interval`` seconds; the lease
    stays valid until its validity runs out, then the keeper acquires a new epoch.
    """

    def __init__(self, lease: BankLease, *, retry_interval: float | None = None,
                 on_change: Callable[[LeaseKeeper], None] | None = None) -> None:
        self.lease = lease
        self.retry_interval = retry_interval if retry_interval is not None else max(1.0, lease.windows.renew / 10)
        self.held = False
        self.last_error: str | None = None
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"LeaseKeeper({self.lease!r}, held={self.held})"

    @property
    def epoch(self) -> int:
        return self.lease.epoch

    def valid(self, epoch: int | None = None) -> bool:
        return self.lease.check_lease_validity(epoch)

    def tick(self) -> float:
        before = (self.held, self.last_error)
        try:
            if self.held:
                self.lease.renew_lease()
            else:
                self.lease.acquire_lease()
                self.held = True
            self.last_error = None
            delay = float(self.lease.windows.renew)
        except exceptions.LeaseLost as err:
            LOG.error("%s", err)
            metrics.lease_renewal_failed(self.lease.bank_name)
            self.held, self.last_error = False, str(err)
            delay = 0.0
        except exceptions.StrongroomError as err:
            if self.held:
                metrics.lease_renewal_failed(self.lease.bank_name)
                LOG.warning("renewal of the lease of %s in %s failed (%.0f s of validity left): %s",
                            self.lease.owner_id, self.lease.bank_name, self.lease.valid_for(), err)
            else:
                LOG.warning("cannot acquire the lease of %s in %s: %s",
                            self.lease.owner_id, self.lease.bank_name, err)
            self.last_error = str(err)
            delay = self.retry_interval
        if self._on_change is not None and (self.held, self.last_error) != before:
            self._on_change(self)
        return delay

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"sr-lease-{self.lease.bank_name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delay = 0.0
        while not self._stop.wait(delay):
            try:
                delay = self.tick()
            except Exception:  # noqa: BLE001 - the keeper must outlive a plugin's bug
                LOG.exception("lease keeper of %s", self.lease.bank_name)
                delay = self.retry_interval

    def wait_held(self, timeout: float) -> bool:
        """Block until the lease is held and valid, at most ``timeout`` seconds (real time)."""
        deadline = time.monotonic() + timeout
        while not self.valid():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self, release: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if release and self.held:
            try:
                self.lease.release_lease()
            except exceptions.StrongroomError as err:
                LOG.warning("could not release the lease of %s in %s: %s",
                            self.lease.owner_id, self.lease.bank_name, err)
        self.held = False


def _int(value: str | None, default: Any) -> Any:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
