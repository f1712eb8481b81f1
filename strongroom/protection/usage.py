"""What a project's checkpoints occupy in a provider's bank: the figures of ``GET /v1/{project_id}/usage``.

Computed from what the bank really holds, by one walk of it (``doc/operations.md``, "Usage", says the same):

* ``checkpoints``: the project's checkpoints with an index in the bank, by the status their index says.
* ``logical_bytes``: the sum of the volume sizes of the project's ``available`` checkpoints (what restoring
  every one of them would write; sparse zero runs included).
* ``referenced_bytes``: the bytes of data chunks those manifests reference, counted once per reference
  (uncompressed; zero runs are never stored and are not counted).
* ``unique_bytes``: the same, counted once per distinct chunk (what dedup leaves).
* ``chunk_bytes``: the bank's sizes of the distinct chunk objects they reference (after compression and,
  with encryption, sealing).
* ``checkpoint_bytes``: the bank's sizes of every object under the project's checkpoints (indices, resource
  metadata, manifests), whatever their status.
* ``stored_bytes`` = ``chunk_bytes`` + ``checkpoint_bytes``: what the project's checkpoints occupy.
* ``unreferenced_chunk_bytes``: chunk objects of the project no available checkpoint references (a deleted
  checkpoint's until garbage collection sweeps them, a protect in progress's); not in ``stored_bytes``.
* ``unreadable_checkpoints``: available checkpoints a manifest of which could not be read (damaged: verify
  names the object); their volumes are left out of the byte figures, and their chunks count as unreferenced.
* ``dedup_ratio`` = referenced / unique, ``compression_ratio`` = unique / chunk bytes (1.0 when empty).

Cost: listing the bank's checkpoint indices and reading each (every project's: a bank is shared), one listing
and one HEAD per object of the project's checkpoints, the manifests of its available ones, and one listing and
one HEAD per chunk object of the project.  :class:`UsageCache` keeps each answer ``ttl`` seconds, and only
while the catalogue's checkpoints of that provider and project (ids, statuses, update times: one query of the
metadata store) are unchanged: a protect published or a checkpoint deleted, by any protection service, walks
the bank again at the next call.  What changes in the bank without the catalogue knowing (a sweep of
unreferenced chunks) shows after at most ``ttl`` seconds.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any

from strongroom import exceptions
from strongroom.bank_plugins.bank import Bank, BankSection
from strongroom.bank_plugins.layout import BankLayout
from strongroom.clock import Clock
from strongroom.datamover.manifest import iter_entries, read_manifest_header
from strongroom.objects.status import CheckpointStatus
from strongroom.protection.checkpoint import CheckpointStore

LOG = logging.getLogger(__name__)


def _ratio(numerator: int, denominator: int) -> float:
    return round(numerator / denominator, 4) if denominator else 1.0


def _size(bank: Bank | BankSection, key: str) -> int:
    try:
        return bank.head(key).size
    except exceptions.BankObjectNotFound:  # removed between the listing and the HEAD
        return 0


def bank_usage(bank: Bank, project_ids: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """The figures of every project in ``project_ids`` (None: every project with a checkpoint), by project."""
    store = CheckpointStore(bank)
    layout = BankLayout()
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    logical: collections.Counter[str] = collections.Counter()
    referenced: collections.Counter[str] = collections.Counter()
    checkpoint_bytes: collections.Counter[str] = collections.Counter()
    unique: dict[str, dict[str, int]] = collections.defaultdict(dict)
    unreadable: dict[str, set[str]] = collections.defaultdict(set)
    for checkpoint_id in store.list_ids():
        try:
            record = store.read(checkpoint_id)
        except exceptions.NotFound:
            continue
        project = record.project_id
        if project_ids is not None and project not in project_ids:
            continue
        counts[project][str(record.status)] += 1
        prefix = layout.checkpoint_prefix(checkpoint_id)
        checkpoint_bytes[project] += sum(_size(bank, key) for key in bank.iter(prefix))
        if record.status != CheckpointStatus.AVAILABLE:
            continue
        for section in store.data_sections(checkpoint_id):
            try:
                header = read_manifest_header(section)
                sizes = [(e.digest, e.length) for e in iter_entries(section, header) if e.digest is not None]
            except (exceptions.DataIntegrityError, exceptions.BankObjectCorrupt) as err:
                # A damaged manifest (verify names it) leaves its volume out of the figures, said so.
                LOG.warning("usage of project %s: checkpoint %s is left out of the figures: %s", project,
                            checkpoint_id, err)
                unreadable[project].add(checkpoint_id)
                continue
            logical[project] += header.size
            for digest, length in sizes:
                referenced[project] += length
                unique[project][digest] = length
    out = {}
    for project in sorted(set(counts) | set(project_ids or ())):
        chunks = bank.section(layout.chunks_prefix(project))
        chunk_bytes = unreferenced = 0
        digests = unique.get(project, {})
        for key in chunks.iter():
            chunk_digest = layout.digest_of_chunk(key)
            size = _size(chunks, key)
            if chunk_digest is not None and chunk_digest in digests:
                chunk_bytes += size
            else:
                unreferenced += size
        unique_bytes = sum(digests.values())
        out[project] = {
            "project_id": project,
            "checkpoints": dict(sorted(counts[project].items())),
            "logical_bytes": logical[project],
            "referenced_bytes": referenced[project],
            "unique_bytes": unique_bytes,
            "chunk_bytes": chunk_bytes,
            "checkpoint_bytes": checkpoint_bytes[project],
            "stored_bytes": chunk_bytes + checkpoint_bytes[project],
            "unreferenced_chunk_bytes": unreferenced,
            "unreadable_checkpoints": len(unreadable.get(project, ())),
            "dedup_ratio": _ratio(referenced[project], unique_bytes),
            "compression_ratio": _ratio(unique_bytes, chunk_bytes),
        }
    return out


class UsageCache:
    """Answers of :func:`bank_usage` kept ``ttl`` seconds (0: always walk), by provider and project scope."""

    def __init__(self, ttl: float = 0.0, clock: Clock | None = None) -> None:
        self.ttl = ttl
        self.clock = clock or Clock()
        self._lock = threading.Lock()
        self._kept: dict[tuple[str, str | None], tuple[float, Hashable, dict[str, dict[str, Any]]]] = {}

    def get(self, provider_id: str, project_id: str | None, fingerprint: Hashable,
            compute: Callable[[], dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
        """The kept answer if younger than ``ttl`` and computed under the same ``fingerprint``, else
        ``compute()``'s (kept)."""
        key = (provider_id, project_id)
        now = self.clock.monotonic()
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and self.ttl and now - kept[0] < self.ttl and kept[1] == fingerprint:
            return kept[2]
        value = compute()
        if self.ttl:
            with self._lock:
                self._kept[key] = (now, fingerprint, value)
        return value

