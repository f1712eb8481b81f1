"""Retained base snapshots: the snapshot of each volume's last checkpoint, kept for the next incremental.

A protect that retains its snapshot tags it, beside :func:`~strongroom.protection.snapshots.run_tags`, with
:data:`BASE_TAG`.  The next protect of the volume by the same provider builds on the newest such snapshot
whose checkpoint is ``available`` in the bank and of the same project (:func:`find_base`): it asks the backend
what changed since (``BlockBackend.changed_extents``) and reads only that.

One rule says which retained snapshots are released (``snapshots.superseded``), used in two places:

* once a protect's checkpoint is published, its plugin releases the older retained snapshots of the volume
  whose checkpoints are finished (``on_published``; a checkpoint still being written keeps its snapshot);
* garbage collection (``strongroom.protection.snapshots``) keeps, per volume, only the newest retained
  snapshot whose checkpoint is ``available`` and those of checkpoints a live writer works on; a base leaked
  by a crash between publishing and releasing, or whose checkpoint was deleted or failed, goes.

Deleting a checkpoint releases its own retained snapshot.  So at rest each protected volume keeps exactly one
snapshot per provider, and none once retention is turned off (plan parameter ``retain_base_snapshot``).
"""

from __future__ import annotations

import dataclasses
import logging

from strongroom import exceptions
from strongroom.bank_plugins import Bank
from strongroom.block import BlockBackend, Snapshot
from strongroom.objects.status import CheckpointStatus
from strongroom.protection.checkpoint import CheckpointStore
from strongroom.protection.snapshots import (
    BASE_TAG,
    StatusOf,
    age,
    checkpoint_of,
    is_retained,
    newest_first,
    run_tags,
)

LOG = logging.getLogger(__name__)

#: Checkpoint statuses whose writer is done with them: their retained snapshot may be released.
FINISHED = frozenset({CheckpointStatus.AVAILABLE, CheckpointStatus.ERROR, CheckpointStatus.DELETED})


def base_tags(provider_id: str, checkpoint_id: str) -> dict[str, str]:
    """The tags of a protect's snapshot that is to be retained as the next protect's base."""
    return {**run_tags(provider_id, checkpoint_id), BASE_TAG: "1"}


def bank_status(bank: Bank, project_id: str | None = None) -> StatusOf:
    """The status of a checkpoint in ``bank`` (None without an index, or of another project than
    ``project_id`` when given)."""
    store = CheckpointStore(bank)

    def status(checkpoint_id: str) -> CheckpointStatus | None:
        try:
            record = store.read(checkpoint_id)
        except exceptions.NotFound:
            return None
        if project_id is not None and record.project_id != project_id:
            return None
        return CheckpointStatus(record.status)

    return status


@dataclasses.dataclass(frozen=True)
class Base:
    snapshot: Snapshot
    checkpoint_id: str


def find_base(backend: BlockBackend, provider_id: str, volume_id: str, status: StatusOf,
              exclude: str) -> Base | None:
    """The newest retained snapshot of ``volume_id`` whose checkpoint (not ``exclude``) is available."""
    candidates = [s for s in backend.list_snapshots(volume_id)
                  if is_retained(s, provider_id) and checkpoint_of(s) != exclude]
    for snapshot in newest_first(candidates):
        if status(checkpoint_of(snapshot)) is CheckpointStatus.AVAILABLE:
            return Base(snapshot, checkpoint_of(snapshot))
    return None


def release_older(backend: BlockBackend, provider_id: str, own: Snapshot, status: StatusOf) -> list[str]:
    """After ``own``'s checkpoint is published: delete the volume's older retained snapshots whose checkpoints
    are finished.  Returns the ids deleted."""
    released = []
    for snapshot in backend.list_snapshots(own.volume_id):
        if (snapshot.id == own.id or not is_retained(snapshot, provider_id)
                or age(snapshot) >= age(own) or status(checkpoint_of(snapshot)) not in FINISHED):
            continue
        backend.delete_snapshot(snapshot.id)
        released.append(snapshot.id)
    if released:
        LOG.info("released %d older base snapshot(s) of volume %s: %s", len(released), own.volume_id,
                 ", ".join(released))
    return released
