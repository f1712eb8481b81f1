"""Block-backend snapshots Strongroom takes, and their reclaim once the run they serve is over.

A protect reads a volume through a snapshot it deletes when it is done; a protect killed half way
leaves it behind.  So every such snapshot is tagged with the provider and the checkpoint it serves
(:func:`run_tags`, kept by the backend with the snapshot), and each garbage collection pass (and the
all-in-one's start-up recovery, which runs one) deletes the snapshots of its provider whose checkpoint
no live owner is working on: no active marker of a live owner, as
:meth:`~strongroom.protection.gc.GarbageCollector.live_checkpoints` judges it (the judgement of
zombies, the other way round; a reclaimed or finished checkpoint has no marker).  Snapshots without
these tags (an operator's, another provider's) are never touched.  A protect's snapshot retained as its
volume's next base (:data:`BASE_TAG`, ``strongroom.protection.bases``) is kept while it is the newest
retained snapshot of its volume whose checkpoint is ``available`` (:func:`superseded`).  Then each
backend removes what a call that died half way left inside it (``BlockBackend.reclaim_leftovers``: the
loopback backend's partial images).

Order: the snapshots are listed before the live checkpoints are read.  A writer writes its active
marker before it takes its snapshot, so a snapshot in the listing whose writer is alive has its
marker seen by the judgement that follows.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
from collections.abc import Callable, Collection, Iterable, Mapping

from strongroom import exceptions
from strongroom.block import BlockBackend, Snapshot
from strongroom.objects.status import CheckpointStatus

LOG = logging.getLogger(__name__)

CHECKPOINT_TAG = "strongroom.checkpoint"
PROVIDER_TAG = "strongroom.provider"


#: A protect's snapshot kept as the next protect's base (``strongroom.protection.bases``).
BASE_TAG = "strongroom.base"

#: A checkpoint's status in the bank, or None if it has no index (deleted, never written).
StatusOf = Callable[[str], "CheckpointStatus | None"]


def _no_status(checkpoint_id: str) -> CheckpointStatus | None:
    return None


def run_tags(provider_id: str, checkpoint_id: str) -> dict[str, str]:
    """The tags of a snapshot taken for ``checkpoint_id`` of ``provider_id``."""
    return {PROVIDER_TAG: provider_id, CHECKPOINT_TAG: checkpoint_id}


def is_retained(snapshot: Snapshot, provider_id: str) -> bool:
    tags = snapshot.tags
    return tags.get(PROVIDER_TAG) == provider_id and bool(tags.get(CHECKPOINT_TAG)) and tags.get(BASE_TAG) == "1"


def checkpoint_of(snapshot: Snapshot) -> str:
    return snapshot.tags[CHECKPOINT_TAG]


def age(snapshot: Snapshot) -> tuple[_dt.datetime, str]:
    created = snapshot.created_at or _dt.datetime.min.replace(tzinfo=_dt.UTC)
    if created.tzinfo is None:
        created = created.replace(tzinfo=_dt.UTC)
    return created, snapshot.id


def newest_first(snapshots: Iterable[Snapshot]) -> list[Snapshot]:
    return sorted(snapshots, key=age, reverse=True)


def superseded(retained: Iterable[Snapshot], status: StatusOf, *, live: Collection[str] = ()) -> list[Snapshot]:
    """The retained snapshots (of one provider) to release: per volume, every one but the newest whose
    checkpoint is available, except those of the ``live`` checkpoints (a live writer's)."""
    by_volume: dict[str, list[Snapshot]] = {}
    for snapshot in retained:
        by_volume.setdefault(snapshot.volume_id, []).append(snapshot)
    out = []
    for snapshots in by_volume.values():
        kept_base = False
        for snapshot in newest_first(snapshots):
            if not kept_base and status(checkpoint_of(snapshot)) is CheckpointStatus.AVAILABLE:
                kept_base = True
                continue
            if checkpoint_of(snapshot) not in live:
                out.append(snapshot)
    return out


@dataclasses.dataclass
class SnapshotReclaim:
    """What one pass removed (or, in a dry run, would remove) from a provider's block backends."""

    snapshots: list[str] = dataclasses.field(default_factory=list)  # "<backend>/<snapshot id> (checkpoint <cid>)"
    leftovers: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)


def reclaim_snapshots(backends: Mapping[str, BlockBackend], provider_id: str,
                      live_checkpoints: Callable[[], Collection[str]], dry_run: bool = False,
                      status: StatusOf = _no_status) -> SnapshotReclaim:
    """Delete ``provider_id``'s snapshots whose checkpoint is not in ``live_checkpoints()`` (but the retained
    base of each volume, :func:`superseded`, by ``status`` of checkpoints in the bank), then leftovers."""
    out = SnapshotReclaim()
    for name, backend in sorted(backends.items()):
        try:
            ours = [s for s in backend.list_snapshots()
                    if s.tags.get(PROVIDER_TAG) == provider_id and s.tags.get(CHECKPOINT_TAG)]
            live = set(live_checkpoints()) if ours else set()
            retained = [s for s in ours if is_retained(s, provider_id)]
            released = {s.id for s in superseded(retained, status, live=live)}
            for snapshot in ours:
                checkpoint_id = snapshot.tags[CHECKPOINT_TAG]
                if checkpoint_id in live or (is_retained(snapshot, provider_id) and snapshot.id not in released):
                    continue
                if not dry_run:
                    backend.delete_snapshot(snapshot.id)
                out.snapshots.append(f"{name}/{snapshot.id} (checkpoint {checkpoint_id})")
            if not dry_run:
                out.leftovers += [f"{name}: {what}" for what in backend.reclaim_leftovers()]
        except (exceptions.StrongroomError, OSError) as err:
            out.errors.append(f"block backend {name}: {err}")
            LOG.warning("snapshots of block backend %s are left to the next pass: %s", name, err)
    if out.snapshots and not dry_run:
        LOG.warning("reclaimed %d snapshot(s) left by interrupted protects: %s", len(out.snapshots),
                    ", ".join(out.snapshots))
    return out
