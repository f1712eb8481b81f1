"""Garbage collection: zombie checkpoints and unreferenced chunks (``doc/lease-and-gc.md``).

**Zombies.**  Every checkpoint a writer works on has an active marker
``indices/active/<owner>/<cid>``.  A marker whose owner's lease is gone or
expired (by the bank's clock), or that belongs to this very owner but to no run
of this process (a predecessor with the same owner id died), is a zombie.  Its
reclaim writes ``checkpoints/<cid>/reclaimed`` first, re-reads the index (a
writer that published meanwhile wins: nothing is reclaimed), removes the
checkpoint's objects in reverse write order, sets the index to ``error`` (or
``deleted`` for an interrupted delete) with the reason, removes the marker,
then tells the database; those writes are the catalogue's
(:meth:`~strongroom.protection.catalogue.CheckpointCatalogue.reclaim`): this
module judges, the catalogue writes.  A writer checks for the ``reclaimed`` marker after
publishing and withdraws its checkpoint if it finds one, so a writer paused
between its last lease check and its publishing request cannot leave an
``available`` checkpoint whose objects were reclaimed.

**Chunk sweeps** follow a protocol with writers instead of trusting timing
alone.  For each project the sweeper (1) writes ``gc/sweeping/<project>/<owner>``,
(2) looks for a live writer of the project (an active ``protect`` marker whose
owner is alive) and gives the project up if it finds one, (3) reads every
manifest of the project's checkpoints, complete or not, and removes the temp files
that writers killed before their barrier left in its chunk store (the bank's
``reclaim_temporaries``: no live writer can own one now), (4) deletes the chunks
none references that are older than the grace period by the bank's clock,
checking its own lease before each delete, and (5) removes its marker.  A writer
writes its active marker before it reads a chunk store, and waits while a sweep
marker of its project is held by a live owner (:func:`wait_for_sweeps`).  So
either the sweeper sees the writer (step 2, and stands down) or the writer sees
the sweep (and waits): no chunk a writer relies on is deleted under it, and
chunks an ``available`` checkpoint references are never candidates.  Two
collectors at once are safe: each step is idempotent and each stands down for
live writers, not for each other.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import threading
from collections.abc import Callable, Collection, Iterator

from strongroom import exceptions
from strongroom.bank_plugins import Bank
from strongroom.bank_plugins.layout import BankLayout
from strongroom.bank_plugins.lease import BankLease
from strongroom.clock import Clock
from strongroom.datamover import hashing, manifest_digests
from strongroom.objects.kinds import CHUNK_WRITERS
from strongroom.objects.status import CheckpointStatus
from strongroom.protection.catalogue import RUNNING, CheckpointCatalogue, Reclaim
from strongroom.protection.checkpoint import ActiveMarker, CheckpointStore

LOG = logging.getLogger(__name__)

#: Statuses a writer moves a checkpoint through; a checkpoint left in one by a dead owner is a zombie.
ZOMBIE_STATUSES = RUNNING


@dataclasses.dataclass
class Sweep:
    """The chunk sweep of one project."""

    project_id: str
    chunks_seen: int = 0
    unreferenced: int = 0
    removed: int = 0
    kept_young: int = 0
    #: Unreferenced chunks the bank still locks (immutable retention, ``doc/immutability.md``): left alone.
    kept_locked: int = 0
    #: Temp files of writers killed before their barrier (deferred chunks never published), removed.
    temporaries: int = 0
    skipped: str | None = None  # why the project was given up


@dataclasses.dataclass
class Report:
    bank: str
    dry_run: bool
    reclaimed: list[Reclaim] = dataclasses.field(default_factory=list)
    sweeps: list[Sweep] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    #: Block snapshots of interrupted protects, and backend leftovers, removed (``protection.snapshots``).
    snapshots: list[str] = dataclasses.field(default_factory=list)
    leftovers: list[str] = dataclasses.field(default_factory=list)
    #: Owners whose expired lease was removed: nothing of theirs was left to reclaim.
    leases_removed: list[str] = dataclasses.field(default_factory=list)

    @property
    def chunks_removed(self) -> int:
        return sum(s.removed for s in self.sweeps)

    @property
    def temporaries_removed(self) -> int:
        return sum(s.temporaries for s in self.sweeps)

    def summary(self) -> str:
        verb = "would reclaim" if self.dry_run else "reclaimed"
        chunks = (sum(s.unreferenced - s.kept_young - s.kept_locked for s in self.sweeps) if self.dry_run
                  else self.chunks_removed)
        skipped = [f"{s.project_id} ({s.skipped})" for s in self.sweeps if s.skipped]
        text = (f"{self.bank}: {verb} {len(self.reclaimed)} zombie checkpoint(s) "
                f"({sum(r.objects for r in self.reclaimed)} objects) and {chunks} unreferenced chunk(s)")
        if self.temporaries_removed:
            text += f"; {verb} {self.temporaries_removed} temp file(s) of writers killed before their barrier"
        if self.snapshots or self.leftovers:
            text += f"; {verb} {len(self.snapshots)} block snapshot(s) of interrupted protects"
            if self.leftovers:
                text += f" and {len(self.leftovers)} leftover file(s)"
        if self.leases_removed:
            text += f"; {'would remove' if self.dry_run else 'removed'} {len(self.leases_removed)} expired lease(s)"
        if skipped:
            text += f"; sweep skipped for {', '.join(skipped)}"
        if self.errors:
            text += f"; {len(self.errors)} error(s)"
        return text


class Sweeping:
    """The projects this process is sweeping right now (its own sweep markers that are not stale)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._projects: dict[str, int] = {}

    def __contains__(self, project_id: object) -> bool:
        with self._lock:
            return project_id in self._projects

    def add(self, project_id: str) -> None:
        with self._lock:
            self._projects[project_id] = self._projects.get(project_id, 0) + 1

    def discard(self, project_id: str) -> None:
        with self._lock:
            left = self._projects.get(project_id, 0) - 1
            if left > 0:
                self._projects[project_id] = left
            else:
                self._projects.pop(project_id, None)


class GarbageCollector:
    """Collects one provider's bank (its ``catalogue``) on behalf of the holder of ``lease``.

    ``running()`` returns the checkpoint ids this process is working on (so
    that its own markers for them are not taken for orphans); ``chunk_grace``
    is the age, by the bank's clock, below which an unreferenced chunk is kept.
    """

    def __init__(self, catalogue: CheckpointCatalogue, lease: BankLease, *, chunk_grace: float = 600.0,
                 running: Callable[[], Collection[str]] = frozenset,
                 sweeping: Sweeping | None = None, name: str = "") -> None:
        self.catalogue = catalogue
        self.bank = catalogue.bank
        self.lease = lease
        self.store: CheckpointStore = catalogue.store
        self.layout = BankLayout()
        self.chunk_grace = _dt.timedelta(seconds=chunk_grace)
        self.running = running
        self.sweeping = sweeping if sweeping is not None else Sweeping()
        self.name = name or self.bank.name

    @property
    def owner_id(self) -> str:
        return self.lease.owner_id

    # -- the whole pass -------------------------------------------------------

    def collect(self, dry_run: bool = False, sweep: bool = True) -> Report:
        report = Report(bank=self.name, dry_run=dry_run)
        self.reclaim_zombies(report, dry_run)
        try:
            self.remove_expired_leases(report, dry_run)
        except exceptions.StrongroomError as err:
            report.errors.append(f"expired leases: {err}")
        if sweep:
            projects = list(self._projects())
            # A killed writer's project may hold only its unpublished chunks (temp files, never listed).
            projects += sorted({r.project_id for r in report.reclaimed if r.project_id} - set(projects))
            for project in projects:
                try:
                    report.sweeps.append(self.sweep_project(project, dry_run=dry_run))
                except exceptions.StrongroomError as err:
                    report.errors.append(f"sweep of project {project}: {err}")
                    LOG.warning("%s: sweep of project %s failed: %s", self.name, project, err)
        if (report.reclaimed or report.chunks_removed or report.temporaries_removed or report.errors
                or report.leases_removed):
            LOG.info("garbage collection of %s", report.summary())
        return report

    # -- zombies ----------------------------------------------------------------

    def _owner_alive(self, cache: dict[str, bool], owner: str, now: _dt.datetime | None) -> bool:
        if owner not in cache:
            cache[owner] = self.lease.check_lease_existence(owner, now)
        return cache[owner]

    def _bank_now(self) -> _dt.datetime | None:
        return None if self.lease.plugin.supports_expiry else self.lease.bank_now()

    def live(self, marker: ActiveMarker, cache: dict[str, bool], now: _dt.datetime | None) -> bool:
        """Is the owner of ``marker`` still working on it?"""
        if marker.owner_id == self.owner_id:
            return marker.checkpoint_id in self.running()
        return self._owner_alive(cache, marker.owner_id, now)

    def live_checkpoints(self) -> set[str]:
        """The checkpoints some live owner is working on: the judgement of :meth:`zombies`, the other way
        round (block snapshots of the others are reclaimed, ``strongroom.protection.snapshots``)."""
        cache: dict[str, bool] = {}
        now = self._bank_now()
        return {m.checkpoint_id for m in list(self.store.active_markers()) if self.live(m, cache, now)}

    def zombies(self) -> Iterator[ActiveMarker]:
        cache: dict[str, bool] = {}
        now = self._bank_now()
        for marker in list(self.store.active_markers()):
            if not self.live(marker, cache, now):
                yield marker

    def reclaim_zombies(self, report: Report, dry_run: bool = False) -> None:
        for marker in self.zombies():
            try:
                reclaim = self.reclaim(marker, dry_run=dry_run)
            except Exception as err:  # noqa: BLE001 - one bad checkpoint must not stop the others' reclaim
                report.errors.append(f"checkpoint {marker.checkpoint_id}: {err}")
                LOG.warning("%s: could not reclaim checkpoint %s of %s: %s", self.name, marker.checkpoint_id,
                            marker.owner_id, err)
                continue
            if reclaim is not None:
                report.reclaimed.append(reclaim)

    def reclaim(self, marker: ActiveMarker, dry_run: bool = False) -> Reclaim | None:
        """Reclaim the checkpoint of a dead owner's ``marker`` (None: nothing to reclaim)."""
        cid = marker.checkpoint_id
        why = (f"its writer {marker.owner_id} stopped (this service restarted)" if marker.owner_id == self.owner_id
               else f"its writer {marker.owner_id} lost its lease")
        try:
            record = self.store.read(cid)
        except exceptions.NotFound:
            record = None
        if record is not None and record.status not in ZOMBIE_STATUSES:
            # Published or failed, but the writer died before clearing its marker.  A failed
            # checkpoint's partial data is useless: finish removing it (never an available one's).
            if not dry_run:
                self.catalogue.clear_stale_marker(marker, remove_partial=(
                    record.status == CheckpointStatus.ERROR and marker.operation in CHUNK_WRITERS))
            return None
        if record is not None and record.owner_id not in (None, marker.owner_id):
            # Another owner has taken the checkpoint over (e.g. a delete started since): its marker rules.
            if not dry_run:
                self.catalogue.clear_stale_marker(marker)
            return None
        reclaim = self.catalogue.reclaim(marker, record, by=self.owner_id, why=why, dry_run=dry_run)
        if reclaim is not None and not dry_run:
            LOG.warning("%s: reclaimed zombie checkpoint %s (%s, %d objects removed): %s", self.name, cid,
                        reclaim.previous_status or "no index", reclaim.objects, why)
        return reclaim

    # -- leases of owners that are gone -------------------------------------------

    def remove_expired_leases(self, report: Report, dry_run: bool = False) -> None:
        """Remove the expired lease of every other owner that has nothing left in the bank: no active marker
        (its zombies are reclaimed first, in the same pass) and no chunk-sweep marker.  A lease whose owner
        still has a marker stays, so that the marker keeps reading as a dead owner's."""
        now = self._bank_now()
        busy = {marker.owner_id for marker in self.store.active_markers()}
        busy.update(key.rsplit("/", 1)[-1] for key in self.bank.iter(BankLayout.SWEEPS))
        for owner in sorted(set(self.lease.owners()) - busy - {self.owner_id}):
            if dry_run:
                info = self.lease.lease_info(owner, now)
                if info is None or not info.alive:
                    report.leases_removed.append(owner)
            elif self.lease.remove_expired(owner, now):
                LOG.info("%s: removed the expired lease of %s (nothing of it left to reclaim)", self.name, owner)
                report.leases_removed.append(owner)

    # -- chunk sweeps ------------------------------------------------------------

    def _projects(self) -> Iterator[str]:
        """Projects that have chunks, in byte order, one listing request each."""
        marker: str | None = None
        seen: set[str] = set()
        while True:
            page = self.bank.list(BankLayout.PROJECTS, marker=marker, limit=1)
            if not page:
                return
            project = BankLayout.project_of(page[0])
            if project not in seen:
                seen.add(project)
                yield project
            marker = BankLayout.past_project(project)

    def sweep_project(self, project_id: str, dry_run: bool = False, grace: float | None = None,
                      finished: str | None = None) -> Sweep:
        """Delete the project's unreferenced chunks (see the module docstring for the protocol).

        ``finished``: a checkpoint of the caller's own that has stopped writing (a failed protect
        releasing its chunks before its marker goes): its marker is not taken for a live writer.
        """
        result = Sweep(project_id)
        grace_period = self.chunk_grace if grace is None else _dt.timedelta(seconds=grace)
        fence_epoch = self.lease.epoch
        if not dry_run:
            if not self.lease.check_lease_validity(fence_epoch):
                result.skipped = "this collector's lease is not valid"
                return result
            self.sweeping.add(project_id)
            try:
                self.bank.put(self.layout.sweep_key(project_id, self.owner_id), self.owner_id.encode())
            except BaseException:
                self.sweeping.discard(project_id)
                raise
        try:
            writer = self._live_writer(project_id, finished)
            if writer is not None:
                result.skipped = f"checkpoint {writer.checkpoint_id} is being written by {writer.owner_id}"
                return result
            chunks = self.bank.section(BankLayout.chunks_prefix(project_id))
            # No live writer puts in the project now, and none starts while the marker is held: every
            # temp file left there is a dead writer's deferred chunk, which no barrier will publish.
            if not dry_run and not self.lease.check_lease_validity(fence_epoch):
                result.skipped = "this collector's lease stopped being valid during the sweep"
                return result
            result.temporaries = len(chunks.reclaim_temporaries(dry_run=dry_run))
            referenced = referenced_digests(self.store, project_id)
            now = self._bank_now() or self.lease.clock.now()
            for key in chunks.iter():
                digest = BankLayout.digest_of_chunk(key)
                if digest is None or not hashing.is_digest(digest):
                    continue
                result.chunks_seen += 1
                if digest in referenced:
                    continue
                result.unreferenced += 1
                if grace_period:
                    try:
                        modified = chunks.head(key).last_modified
                    except exceptions.BankObjectNotFound:
                        continue
                    if modified is None or now - modified < grace_period:
                        result.kept_young += 1
                        continue
                if self._locked(chunks.prefix + key, now):
                    result.kept_locked += 1
                    continue
                if dry_run:
                    continue
                if not self.lease.check_lease_validity(fence_epoch):
                    result.skipped = "this collector's lease stopped being valid during the sweep"
                    return result
                try:
                    chunks.delete(key)
                except exceptions.BankObjectLocked:  # locked meanwhile (a publish sharing it): not a failure
                    result.kept_locked += 1
                    continue
                result.removed += 1
        finally:
            if not dry_run:
                self.sweeping.discard(project_id)
                if project_id not in self.sweeping:  # another sweep of ours may still hold the marker
                    self.bank.delete(self.layout.sweep_key(project_id, self.owner_id))
        if result.removed:
            LOG.info("%s: swept %d unreferenced chunk(s) of project %s", self.name, result.removed, project_id)
        if result.temporaries and not dry_run:
            LOG.info("%s: removed %d temp file(s) of writers of project %s killed before their barrier",
                     self.name, result.temporaries, project_id)
        return result

    def _locked(self, key: str, now: _dt.datetime) -> bool:
        """True if the bank locks ``key`` past ``now``: a sweep never tries to delete a locked chunk."""
        if not self.bank.supports_object_lock:
            return False
        try:
            until = self.bank.object_lock(key)
        except exceptions.BankObjectNotFound:
            return False  # gone meanwhile: its delete is a no-op
        return until is not None and until > now

    def _live_writer(self, project_id: str, finished: str | None = None) -> ActiveMarker | None:
        cache: dict[str, bool] = {}
        now = self._bank_now()
        for marker in self.store.active_markers():
            if marker.operation not in CHUNK_WRITERS or marker.project_id not in (project_id, None):
                continue
            if marker.checkpoint_id == finished and marker.owner_id == self.owner_id:
                continue
            if self.live(marker, cache, now):
                return marker
        return None


def referenced_digests(store: CheckpointStore, project_id: str, exclude: str | None = None) -> set[str]:
    """Every chunk digest a manifest (complete or not) of a checkpoint of ``project_id`` references.

    Checkpoints whose index says ``deleted`` are skipped; ``exclude`` too.
    """
    needed: set[str] = set()
    for checkpoint_id in store.list_ids():
        if checkpoint_id == exclude:
            continue
        try:
            record = store.read(checkpoint_id)
        except exceptions.NotFound:
            continue
        if record.project_id != project_id or record.status == CheckpointStatus.DELETED:
            continue
        for section in store.data_sections(checkpoint_id):
            needed.update(manifest_digests(section, allow_incomplete=True))
    return needed


def wait_for_sweeps(bank: Bank, lease: BankLease, project_id: str, sweeping: Sweeping, *, poll: float = 0.5,
                    clock: Clock | None = None, should_stop: Callable[[], bool] = lambda: False) -> float:
    """Wait while a live owner sweeps ``project_id``'s chunks; returns the seconds waited.

    Call it after writing the active marker and before reading the chunk store.
    ``sweeping`` says which of this owner's own markers belong to a sweep of this
    process; markers of dead owners (or stale ones of this owner) are ignored and removed.
    """
    clock = clock or lease.clock
    started = clock.monotonic()
    prefix = BankLayout.sweep_prefix(project_id)
    logged = False
    while True:
        now = None if lease.plugin.supports_expiry else lease.bank_now()
        live = []
        for key in bank.list(prefix):
            owner = key[len(prefix):]
            if owner == lease.owner_id:
                if project_id in sweeping:
                    live.append(owner)
                continue  # a stale marker of a predecessor with our owner id: harmless
            if lease.check_lease_existence(owner, now):
                live.append(owner)
            else:
                bank.delete(key)
        if not live:
            return clock.monotonic() - started
        if should_stop():
            raise exceptions.ProtectionError(reason=f"stopped while waiting for the chunk sweep of project "
                                                    f"{project_id} by {', '.join(live)}")
        if not logged:
            LOG.info("waiting for the chunk sweep of project %s by %s", project_id, ", ".join(live))
            logged = True
        clock.sleep(poll)


class Collector:
    """Runs :class:`GarbageCollector` passes every ``interval`` seconds on a thread."""

    def __init__(self, collect: Callable[[], None], interval: float, name: str = "sr-gc") -> None:
        self._collect = collect
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._name = name

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._collect()
            except Exception:  # noqa: BLE001 - one failed pass must not end collection
                LOG.exception("garbage collection pass failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
