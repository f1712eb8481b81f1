"""Checkpoints in the bank: the layout object and the index's life cycle.

Layout (``doc/bank-layout.md``)::

    checkpoints/<cid>/index.json                     the checkpoint's index (status, owner, plan, graph, ...)
    checkpoints/<cid>/resources/<type#id>/...        per-resource status, metadata and manifests
    projects/<project>/chunks/<2 hex>/<hash>         content-addressed data chunks (dedup per project)
    indices/by-plan/<plan>/<ts>@<cid>                listing without scans, written after commit
    indices/by-date/<YYYY-MM-DD>/<ts>@<cid>
    indices/by-provider/<provider>/<ts>@<cid>
    indices/active/<owner>/<cid>                     checkpoints a writer is still working on
    checkpoints/<cid>/reclaimed                      written by garbage collection before it reclaims
    leases/<owner>                                   one lease per protection service
    clock/<owner>                                    probe objects that tell a bank's time
    gc/sweeping/<project>/<owner>                    a chunk sweep of the project is in progress

Write order is an invariant: active marker and ``index.json`` (``protecting``),
then data chunks, then manifests, then ``index.json`` as ``available``, then the
indices, then the active marker is removed.  Delete runs in reverse.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Iterator
from typing import Any

from strongroom import exceptions
from strongroom.bank_plugins import Bank, BankSection
from strongroom.clock import Clock
from strongroom.objects.records import CheckpointRecord
from strongroom.objects.status import CheckpointStatus, check_transition

INDEX_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ActiveMarker:
    """A checkpoint some owner is working on (``indices/active/<owner>/<cid>``)."""

    owner_id: str
    checkpoint_id: str
    project_id: str | None
    operation: str  # "protect" | "delete" | "copy"


class BankLayout:
    """Owns every prefix of the layout (velero style): nobody else builds bank keys."""

    ACTIVE = "indices/active/"
    LEASES = "leases/"
    #: Manifests that reference chunks: checkpoints/<cid>/resources/<type#id>/<MANIFEST_SUFFIX>.
    MANIFEST_SUFFIX = "/data/manifest.json"

    @staticmethod
    def index_key(checkpoint_id: str) -> str:
        return f"checkpoints/{checkpoint_id}/index.json"

    @staticmethod
    def checkpoint_prefix(checkpoint_id: str) -> str:
        return f"checkpoints/{checkpoint_id}/"

    @staticmethod
    def resource_prefix(checkpoint_id: str, resource_key: str) -> str:
        return f"checkpoints/{checkpoint_id}/resources/{resource_key}"

    @staticmethod
    def chunks_prefix(project_id: str) -> str:
        return f"projects/{project_id}/chunks"

    @staticmethod
    def sortable(ts: _dt.datetime) -> str:
        return ts.astimezone(_dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")

    @classmethod
    def index_keys(cls, record: CheckpointRecord) -> list[str]:
        assert record.created_at is not None
        stamp = f"{cls.sortable(record.created_at)}@{record.id}"
        keys = [f"indices/by-date/{record.created_at.astimezone(_dt.UTC):%Y-%m-%d}/{stamp}",
                f"indices/by-provider/{record.provider_id}/{stamp}"]
        if record.plan_id:
            keys.insert(0, f"indices/by-plan/{record.plan_id}/{stamp}")
        return keys

    @classmethod
    def active_key(cls, owner_id: str, checkpoint_id: str) -> str:
        return f"{cls.ACTIVE}{owner_id}/{checkpoint_id}"

    @staticmethod
    def reclaimed_key(checkpoint_id: str) -> str:
        return f"checkpoints/{checkpoint_id}/reclaimed"

    @classmethod
    def lease_key(cls, owner_id: str) -> str:
        return f"{cls.LEASES}{owner_id}"

    @staticmethod
    def clock_probe_key(owner_id: str) -> str:
        return f"clock/{owner_id}"

    @staticmethod
    def sweep_prefix(project_id: str) -> str:
        return f"gc/sweeping/{project_id}/"

    @classmethod
    def sweep_key(cls, project_id: str, owner_id: str) -> str:
        return cls.sweep_prefix(project_id) + owner_id


class CheckpointStore:
    """Reads and writes checkpoint indexes in one bank, enforcing status transitions."""

    def __init__(self, bank: Bank, clock: Clock | None = None) -> None:
        self.bank = bank
        self.clock = clock or Clock()
        self.layout = BankLayout()

    # -- index -------------------------------------------------------------

    def _index_from_record(self, record: CheckpointRecord) -> dict[str, Any]:
        data = record.to_dict()
        data.pop("bytes_done", None)
        data["version"] = INDEX_VERSION
        return data

    def _save(self, record: CheckpointRecord) -> CheckpointRecord:
        """Write ``record`` as the checkpoint's index (stamping ``updated_at``)."""
        record.updated_at = self.clock.now()
        self.bank.put_json(self.layout.index_key(record.id), self._index_from_record(record))
        return record

    def read(self, checkpoint_id: str) -> CheckpointRecord:
        try:
            data = self.bank.get_json(self.layout.index_key(checkpoint_id))
        except exceptions.BankObjectNotFound:
            raise exceptions.NotFound(kind="Checkpoint", id=checkpoint_id) from None
        data.pop("version", None)
        return CheckpointRecord.from_dict(data)

    def create(self, record: CheckpointRecord) -> None:
        """Write the active marker, then the index as ``protecting``."""
        if record.owner_id:
            self.mark_active(record.owner_id, record.id, record.project_id, "protect")
        self._save(record)

    def mark_active(self, owner_id: str, checkpoint_id: str, project_id: str, operation: str) -> None:
        self.bank.put_json(self.layout.active_key(owner_id, checkpoint_id),
                           {"project_id": project_id, "operation": operation})

    def start_delete(self, checkpoint_id: str, owner_id: str) -> CheckpointRecord:
        """Active marker of the deleter, then the index as ``deleting`` owned by it."""
        record = self.read(checkpoint_id)
        check_transition("Checkpoint", checkpoint_id, record.status, CheckpointStatus.DELETING, CheckpointStatus)
        self.mark_active(owner_id, checkpoint_id, record.project_id, "delete")
        record.status = CheckpointStatus.DELETING
        record.status_reason = None
        record.owner_id = owner_id
        return self._save(record)

    def take_over(self, checkpoint_id: str, owner_id: str, operation: str) -> CheckpointRecord:
        """Make ``owner_id`` the writer of an unfinished checkpoint (a job resumed by another worker).

        Its marker is written first, then the index names it, then the previous
        owner's marker goes.  Raises ``Conflict`` if garbage collection has already
        reclaimed the checkpoint, or if it is no longer being written.
        """
        record = self.read(checkpoint_id)
        if self.bank.exists(self.layout.reclaimed_key(checkpoint_id)):
            raise exceptions.Conflict(reason=f"checkpoint {checkpoint_id} was reclaimed by garbage collection "
                                             f"before this worker could resume it")
        running = CheckpointStatus.PROTECTING if operation == "protect" else CheckpointStatus.DELETING
        if record.status != running:
            raise exceptions.Conflict(reason=f"checkpoint {checkpoint_id} is {record.status}, not {running}")
        previous = record.owner_id
        self.mark_active(owner_id, checkpoint_id, record.project_id, operation)
        if previous != owner_id:
            record.owner_id = owner_id
            self._save(record)
            if previous:
                self.clear_active(previous, checkpoint_id)
        return record

    def active_markers(self) -> Iterator[ActiveMarker]:
        """Every checkpoint an owner is working on, as its marker says (unreadable markers: project None)."""
        for key in self.bank.iter(self.layout.ACTIVE):
            owner, _, checkpoint_id = key[len(self.layout.ACTIVE):].partition("/")
            if not owner or not checkpoint_id or "/" in checkpoint_id:
                continue
            try:
                value = self.bank.get_json(key)
            except exceptions.BankObjectNotFound:
                continue  # cleared meanwhile
            except exceptions.BankError:
                value = {}
            if not isinstance(value, dict):
                value = {}
            project = value.get("project_id")
            yield ActiveMarker(owner, checkpoint_id, project if isinstance(project, str) else None,
                               str(value.get("operation", "protect")))

    def clear_active(self, owner_id: str, checkpoint_id: str) -> None:
        self.bank.delete(self.layout.active_key(owner_id, checkpoint_id))

    def set_status(self, checkpoint_id: str, status: str, reason: str | None = None,
                   check: bool = True) -> CheckpointRecord:
        record = self.read(checkpoint_id)
        if check:
            check_transition("Checkpoint", checkpoint_id, record.status, status, CheckpointStatus)
        record.status = status
        record.status_reason = reason
        return self._save(record)

    def commit(self, checkpoint_id: str, bytes_total: int | None = None,
               owner_id: str | None = None) -> CheckpointRecord:
        """Publish: index ``available`` (only after every manifest is written), then indices.

        With ``owner_id``, refuses (``Conflict``) unless the index still names that writer.
        """
        record = self.read(checkpoint_id)
        if owner_id is not None and record.owner_id not in (None, owner_id):
            raise exceptions.Conflict(reason=f"checkpoint {checkpoint_id} was taken over by {record.owner_id}")
        check_transition("Checkpoint", checkpoint_id, record.status, CheckpointStatus.AVAILABLE,
                         CheckpointStatus)
        record.status = CheckpointStatus.AVAILABLE
        record.status_reason = None
        if bytes_total is not None:
            record.bytes_total = bytes_total
        self._save(record)
        for key in self.layout.index_keys(record):
            self.bank.put(key, b"")
        if record.owner_id:
            self.clear_active(record.owner_id, checkpoint_id)
        return record

    def fail(self, checkpoint_id: str, reason: str, owner_id: str) -> CheckpointRecord:
        """End a failed protect: index ``error`` with ``reason`` (kept if garbage collection already
        failed it), then its partial data in reverse write order, then ``owner_id``'s marker.  If the
        bank fails half way, the marker stays and garbage collection finishes the job."""
        record = self.read(checkpoint_id)
        if record.status != CheckpointStatus.ERROR:
            record = self.set_status(checkpoint_id, CheckpointStatus.ERROR, reason)
        self.remove_objects(checkpoint_id)
        self.clear_active(owner_id, checkpoint_id)
        return record

    # -- deletion ----------------------------------------------------------

    def remove_indices(self, record: CheckpointRecord) -> None:
        if record.created_at is None:
            return  # never published: it has no index entries
        for key in reversed(self.layout.index_keys(record)):
            self.bank.delete(key)

    def remove_objects(self, checkpoint_id: str, dry_run: bool = False) -> list[str]:
        """Delete everything under the checkpoint but its index and reclaim marker, in reverse write order.

        Manifest headers go first (a half-deleted manifest is then visibly
        incomplete), then the rest from the last written to the first.  Returns the
        keys (to be) removed.
        """
        prefix = self.layout.checkpoint_prefix(checkpoint_id)
        keep = {self.layout.index_key(checkpoint_id), self.layout.reclaimed_key(checkpoint_id)}
        keys = [k for k in self.bank.iter(prefix) if k not in keep]
        headers = [k for k in keys if k.endswith(self.layout.MANIFEST_SUFFIX)]
        ordered = headers + [k for k in reversed(keys) if not k.endswith(self.layout.MANIFEST_SUFFIX)]
        if not dry_run:
            for key in ordered:
                self.bank.delete(key)
        return ordered

    def mark_deleted(self, checkpoint_id: str) -> CheckpointRecord:
        """Leave a small tombstone index so that a reader sees ``deleted``, not a vanished id."""
        return self.set_status(checkpoint_id, CheckpointStatus.DELETED)

    # -- listing -----------------------------------------------------------

    def list_ids(self) -> list[str]:
        """Every checkpoint id with an index in this bank (scan; for recovery and GC)."""
        out = []
        for key in self.bank.iter("checkpoints/"):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == "index.json":
                out.append(parts[1])
        return out

    def data_sections(self, checkpoint_id: str) -> Iterator[BankSection]:
        """The ``resources/<type#id>/data`` sections of a checkpoint that hold any manifest object."""
        resources = self.bank.section(self.layout.checkpoint_prefix(checkpoint_id) + "resources")
        seen: set[str] = set()
        for key in resources.iter():
            head, sep, _ = key.partition("/data/")
            if sep and head not in seen:
                seen.add(head)
                yield resources.section(f"{head}/data")

    def resource_section(self, checkpoint_id: str, resource_key: str, read_only: bool = False) -> BankSection:
        return self.bank.section(self.layout.resource_prefix(checkpoint_id, resource_key), read_only=read_only)

