"""Reading checkpoints in a bank: indexes, active markers, manifests, resource sections.

Keys come from :class:`~strongroom.bank_plugins.layout.BankLayout` (the tree
is drawn in its module docstring and in ``doc/bank-layout.md``).  This module
only reads, and removes a checkpoint's data objects when asked to; every
change of a checkpoint's index or markers is the catalogue's
(:mod:`strongroom.protection.catalogue`, through
:mod:`strongroom.protection.index`).

Write order is an invariant (``doc/architecture.md``): active marker and
``index.json`` (``protecting``), then data chunks, then manifests, then
``index.json`` as ``available``, then the listings, then the active marker is
removed.  Delete runs in reverse.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

from strongroom import exceptions
from strongroom.bank_plugins import Bank, BankSection
from strongroom.bank_plugins.layout import BankLayout
from strongroom.clock import Clock
from strongroom.objects.kinds import LoggedOperation
from strongroom.objects.records import CheckpointRecord

#: 1: clear; 2: may say ``encryption`` and seal its private fields (both stay readable).
INDEX_VERSION = 2
#: Index fields that name user resources (the plan, the graph, per-resource results, error messages):
#: sealed in an encrypted checkpoint's index, under ``sealed``.  The rest stays clear for garbage collection
#: and listing: ids, status, owner, project, provider, plan id, size, times, format and encryption.
PRIVATE_FIELDS = ("protection_plan", "resource_graph", "extra_info", "status_reason")
SEALED_FIELDS = "sealed"


@dataclasses.dataclass(frozen=True)
class ActiveMarker:
    """A checkpoint some owner is working on (``indices/active/<owner>/<cid>``)."""

    owner_id: str
    checkpoint_id: str
    project_id: str | None
    operation: LoggedOperation


def record_from_index(data: dict[str, Any], bank: Bank | None = None, key: str = "") -> CheckpointRecord:
    """The record an index holds (its sealed private fields opened with ``bank``'s keys)."""
    data = dict(data)
    data.pop("version", None)
    sealed = data.pop(SEALED_FIELDS, None)
    if sealed is not None:
        project = data.get("project_id")
        if bank is None or not isinstance(sealed, str) or not isinstance(project, str):
            raise exceptions.BankObjectCorrupt(key=key, reason="its sealed fields cannot be read")
        try:
            private = json.loads(bank.unseal_value(key, project, base64.b64decode(sealed, validate=True)))
        except ValueError as err:
            raise exceptions.BankObjectCorrupt(key=key, reason=f"its sealed fields are not readable: {err}") from None
        if not isinstance(private, dict):
            raise exceptions.BankObjectCorrupt(key=key, reason="its sealed fields are not an object")
        data.update({k: private[k] for k in PRIVATE_FIELDS if k in private})
    return CheckpointRecord.from_dict(data)


def encryption_key_id(record: CheckpointRecord) -> str | None:
    """The key id an encrypted checkpoint's objects are sealed with; None for a clear one."""
    key_id = (record.encryption or {}).get("key_id")
    return str(key_id) if key_id else None


def index_from_record(record: CheckpointRecord, bank: Bank, key: str) -> dict[str, Any]:
    """The index of ``record``: its private fields sealed if the checkpoint is encrypted."""
    data: dict[str, Any] = record.to_dict()
    data.pop("bytes_done", None)
    data["version"] = INDEX_VERSION
    if not record.encryption:
        data.pop("encryption", None)
        return data
    private = {name: data.pop(name) for name in PRIVATE_FIELDS}
    blob = bank.seal_value(key, record.project_id, json.dumps(private, sort_keys=True).encode())
    data[SEALED_FIELDS] = base64.b64encode(blob).decode()
    return data


class CheckpointStore:
    """Reads checkpoints in one bank; removes their data objects (never their index or markers)."""

    def __init__(self, bank: Bank, clock: Clock | None = None) -> None:
        self.bank = bank
        self.clock = clock or Clock()
        self.layout = BankLayout()

    def read(self, checkpoint_id: str) -> CheckpointRecord:
        """The checkpoint's index; ``NotFound`` if it has none."""
        key = self.layout.index_key(checkpoint_id)
        try:
            data = self.bank.get_json(key)
        except exceptions.BankObjectNotFound:
            raise exceptions.NotFound(kind="Checkpoint", id=checkpoint_id) from None
        if not isinstance(data, dict):
            raise exceptions.BankObjectCorrupt(key=key, reason="not a JSON object")
        record = record_from_index(data, self.bank, key)
        self.bank.note_checkpoint(checkpoint_id, record.project_id, encryption_key_id(record))
        return record

    def was_reclaimed(self, checkpoint_id: str) -> bool:
        """Has garbage collection written its reclaim marker for the checkpoint?"""
        return self.bank.exists(self.layout.reclaimed_key(checkpoint_id))

    def active_markers(self) -> Iterator[ActiveMarker]:
        """Every checkpoint an owner is working on, as its marker says (unreadable markers: project None)."""
        for key in self.bank.iter(self.layout.ACTIVE):
            parsed = self.layout.parse_active_key(key)
            if parsed is None:
                continue
            owner, checkpoint_id = parsed
            try:
                value = self.bank.get_json(key)
            except exceptions.BankObjectNotFound:
                continue  # cleared meanwhile
            except exceptions.BankError:
                value = {}
            if not isinstance(value, dict):
                value = {}
            project = value.get("project_id")
            try:
                operation = LoggedOperation(str(value.get("operation", LoggedOperation.PROTECT)))
            except ValueError:
                operation = LoggedOperation.PROTECT  # unknown: judged as the most careful kind, a chunk writer
            yield ActiveMarker(owner, checkpoint_id, project if isinstance(project, str) else None, operation)

    def list_ids(self) -> list[str]:
        """Every checkpoint id with an index in this bank (scan; for recovery and GC)."""
        out = []
        for key in self.bank.iter(self.layout.CHECKPOINTS):
            checkpoint_id = self.layout.checkpoint_of_index(key)
            if checkpoint_id is not None:
                out.append(checkpoint_id)
        return out

    def data_sections(self, checkpoint_id: str) -> Iterator[BankSection]:
        """The ``resources/<type#id>/data`` sections of a checkpoint that hold any manifest object."""
        resources = self.bank.section(self.layout.resources_prefix(checkpoint_id))
        seen: set[str] = set()
        for key in resources.iter():
            section = self.layout.data_section_of(key)
            if section is not None and section not in seen:
                seen.add(section)
                yield resources.section(section)

    def resource_section(self, checkpoint_id: str, resource_key: str, read_only: bool = False) -> BankSection:
        """The section of one resource (``type#id``) of a checkpoint (its key segment opaque if encrypted)."""
        segment = self.bank.resource_segment(checkpoint_id, resource_key)
        return self.bank.section(self.layout.resource_prefix(checkpoint_id, segment), read_only=read_only)

    def remove_objects(self, checkpoint_id: str, dry_run: bool = False) -> list[str]:
        """Delete everything under the checkpoint but its index and reclaim marker, in reverse write order.

        Manifest headers go first (a half-deleted manifest is then visibly
        incomplete), then the rest from the last written to the first.  Returns the
        keys (to be) removed.
        """
        prefix = self.layout.checkpoint_prefix(checkpoint_id)
        keep = {self.layout.index_key(checkpoint_id), self.layout.reclaimed_key(checkpoint_id)}
        keys = [k for k in self.bank.iter(prefix) if k not in keep]
        headers = [k for k in keys if self.layout.is_manifest_header(k)]
        ordered = headers + [k for k in reversed(keys) if not self.layout.is_manifest_header(k)]
        if not dry_run:
            for key in ordered:
                self.bank.delete(key)
        return ordered
