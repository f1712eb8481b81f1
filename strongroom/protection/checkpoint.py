"""Checkpoints in the bank: the layout object and the index's life cycle.

Layout (``doc/bank-layout.md``)::

    checkpoints/<cid>/index.json                     the checkpoint's index (status, owner, plan, graph, ...)
    checkpoints/<cid>/resources/<type#id>/...        per-resource status, metadata and manifests
    projects/<project>/chunks/<2 hex>/<hash>         content-addressed data chunks (dedup per project)
    indices/by-plan/<plan>/<ts>@<cid>                listing without scans, written after commit
    indices/by-date/<YYYY-MM-DD>/<ts>@<cid>
    indices/by-provider/<provider>/<ts>@<cid>
    indices/active/<owner>/<cid>                     checkpoints a writer is still working on
    leases/<owner>                                   one lease per protection service

Write order is an invariant: active marker and ``index.json`` (``protecting``),
then data chunks, then manifests, then ``index.json`` as ``available``, then the
indices, then the active marker is removed.  Delete runs in reverse.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from strongroom import exceptions
from strongroom.bank_plugins import Bank, BankSection
from strongroom.clock import Clock
from strongroom.objects.records import CheckpointRecord
from strongroom.objects.status import CheckpointStatus, check_transition

INDEX_VERSION = 1


class BankLayout:
    """Owns every prefix of the layout (velero style): nobody else builds bank keys."""

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

    @staticmethod
    def active_key(owner_id: str, checkpoint_id: str) -> str:
        return f"indices/active/{owner_id}/{checkpoint_id}"

    @staticmethod
    def lease_key(owner_id: str) -> str:
        return f"leases/{owner_id}"


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
            self.bank.put(self.layout.active_key(record.owner_id, record.id), record.id.encode())
        record.updated_at = self.clock.now()
        self.bank.put_json(self.layout.index_key(record.id), self._index_from_record(record))

    def set_status(self, checkpoint_id: str, status: str, reason: str | None = None,
                   check: bool = True) -> CheckpointRecord:
        record = self.read(checkpoint_id)
        if check:
            check_transition("Checkpoint", checkpoint_id, record.status, status, CheckpointStatus)
        record.status = status
        record.status_reason = reason
        record.updated_at = self.clock.now()
        self.bank.put_json(self.layout.index_key(checkpoint_id), self._index_from_record(record))
        return record

    def commit(self, checkpoint_id: str, bytes_total: int | None = None) -> CheckpointRecord:
        """Publish: index ``available`` (only after every manifest is written), then indices."""
        record = self.read(checkpoint_id)
        check_transition("Checkpoint", checkpoint_id, record.status, CheckpointStatus.AVAILABLE,
                         CheckpointStatus)
        record.status = CheckpointStatus.AVAILABLE
        record.status_reason = None
        if bytes_total is not None:
            record.bytes_total = bytes_total
        record.updated_at = self.clock.now()
        self.bank.put_json(self.layout.index_key(checkpoint_id), self._index_from_record(record))
        for key in self.layout.index_keys(record):
            self.bank.put(key, b"")
        self._clear_active(record)
        return record

    def fail(self, checkpoint_id: str, reason: str) -> CheckpointRecord:
        record = self.set_status(checkpoint_id, CheckpointStatus.ERROR, reason)
        self._clear_active(record)
        return record

    def _clear_active(self, record: CheckpointRecord) -> None:
        if record.owner_id:
            self.bank.delete(self.layout.active_key(record.owner_id, record.id))

    # -- deletion ----------------------------------------------------------

    def remove_indices(self, record: CheckpointRecord) -> None:
        for key in reversed(self.layout.index_keys(record)):
            self.bank.delete(key)

    def remove_objects(self, checkpoint_id: str) -> int:
        """Delete everything under the checkpoint except its index; returns how many objects."""
        prefix = self.layout.checkpoint_prefix(checkpoint_id)
        index = self.layout.index_key(checkpoint_id)
        keys = [k for k in self.bank.iter(prefix) if k != index]
        for key in reversed(keys):
            self.bank.delete(key)
        return len(keys)

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

    def resource_section(self, checkpoint_id: str, resource_key: str, read_only: bool = False) -> BankSection:
        return self.bank.section(self.layout.resource_prefix(checkpoint_id, resource_key), read_only=read_only)

