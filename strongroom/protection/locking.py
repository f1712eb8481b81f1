"""Locking a checkpoint's objects in its bank at publish (``doc/immutability.md``).

Every object of the checkpoint is locked until its lock date: each chunk its manifests reference (a chunk
shared with other checkpoints keeps the latest date of any of them: the bank's lock only ever extends),
then every object under ``checkpoints/<cid>/`` but the index and the project's wrapped data keys
(``keys/<project>/<key id>``: a sealed checkpoint is unreadable without them), then the index last.  The catalogue calls
:func:`lock_checkpoint` (it owns the index and its writes); this module only asks the bank to lock.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as _dt
from collections.abc import Iterable

from strongroom.bank_plugins import Bank
from strongroom.bank_plugins.layout import BankLayout
from strongroom.datamover import manifest_digests
from strongroom.protection.checkpoint import CheckpointStore

#: Locks asked at once (each a HEAD and a PUT ?retention to the store).
LOCK_THREADS = 8


@dataclasses.dataclass
class LockReport:
    """What :func:`lock_checkpoint` locked."""

    chunks: int = 0
    objects: int = 0


def checkpoint_objects(store: CheckpointStore, checkpoint_id: str, project_id: str) -> tuple[list[str], list[str]]:
    """The chunk keys the checkpoint's manifests reference, and its other objects but the index: its own and
    its project's wrapped data keys (bank keys)."""
    layout = store.layout
    digests: set[str] = set()
    for section in store.data_sections(checkpoint_id):
        digests.update(manifest_digests(section))
    prefix = store.bank.section(layout.chunks_prefix(project_id)).prefix
    chunks = sorted(prefix + layout.chunk_key(digest) for digest in digests)
    index = layout.index_key(checkpoint_id)
    own = [key for key in store.bank.iter(layout.checkpoint_prefix(checkpoint_id)) if key != index]
    # The project's wrapped data keys (``doc/encryption.md``): without them its sealed objects cannot be read.
    own += [key for key in store.bank.iter(layout.keys_prefix(project_id))
            if (parsed := layout.parse_wrapped_key(key)) is not None and parsed[0] == project_id]
    return chunks, own


def _lock_all(bank: Bank, keys: Iterable[str], until: _dt.datetime) -> int:
    keys = list(keys)
    if not keys:
        return 0
    with cf.ThreadPoolExecutor(max_workers=min(LOCK_THREADS, len(keys)), thread_name_prefix="bank-lock") as pool:
        for _ in pool.map(lambda key: bank.lock(key, until), keys):
            pass
    return len(keys)


def lock_checkpoint(store: CheckpointStore, checkpoint_id: str, project_id: str,
                    until: _dt.datetime) -> LockReport:
    """Lock the checkpoint's chunks, then its objects, then its index, until ``until`` (extend only)."""
    chunks, own = checkpoint_objects(store, checkpoint_id, project_id)
    report = LockReport()
    report.chunks = _lock_all(store.bank, chunks, until)
    report.objects = _lock_all(store.bank, own, until)
    lock_index(store.bank, checkpoint_id, until)
    report.objects += 1
    return report


def lock_index(bank: Bank, checkpoint_id: str, until: _dt.datetime) -> None:
    """Lock the index's current value (each write of an index is a new version, unlocked until locked)."""
    bank.lock(BankLayout.index_key(checkpoint_id), until)
