"""The bank copy of a checkpoint's life cycle: its index, listings, active and reclaim markers.

Only :mod:`strongroom.protection.catalogue` imports this module (an
import-linter contract says so): it alone decides when a checkpoint's status
changes, and writes this copy first, then the metadata catalogue.
"""

from __future__ import annotations

from strongroom.bank_plugins import Bank
from strongroom.bank_plugins.layout import BankLayout
from strongroom.clock import Clock
from strongroom.objects.kinds import LoggedOperation
from strongroom.objects.records import CheckpointRecord
from strongroom.protection.checkpoint import encryption_key_id, index_from_record


class BankIndex:
    """Writes the index and markers of checkpoints in one bank."""

    def __init__(self, bank: Bank, clock: Clock) -> None:
        self.bank = bank
        self.clock = clock

    def write(self, record: CheckpointRecord) -> CheckpointRecord:
        """Write ``record`` as the checkpoint's index (stamping ``updated_at``)."""
        record.updated_at = self.clock.now()
        key = BankLayout.index_key(record.id)
        self.bank.note_checkpoint(record.id, record.project_id, encryption_key_id(record))
        self.bank.put_json(key, index_from_record(record, self.bank, key))
        return record

    def remove(self, checkpoint_id: str) -> None:
        """Remove an index no catalogue row was made for (a protect that could not start)."""
        self.bank.delete(BankLayout.index_key(checkpoint_id))

    def mark_active(self, owner_id: str, checkpoint_id: str, project_id: str, operation: LoggedOperation) -> None:
        self.bank.put_json(BankLayout.active_key(owner_id, checkpoint_id),
                           {"project_id": project_id, "operation": str(operation)})

    def clear_active(self, owner_id: str, checkpoint_id: str) -> None:
        self.bank.delete(BankLayout.active_key(owner_id, checkpoint_id))

    def add_listings(self, record: CheckpointRecord) -> None:
        """Write the listing entries of a published checkpoint."""
        for key in self._listing_keys(record):
            self.bank.put(key, b"")

    def remove_listings(self, record: CheckpointRecord) -> None:
        """Remove its listing entries, in reverse write order (none if it was never published)."""
        for key in reversed(self._listing_keys(record)):
            self.bank.delete(key)

    @staticmethod
    def _listing_keys(record: CheckpointRecord) -> list[str]:
        if record.created_at is None:
            return []
        return BankLayout.listing_keys(record.id, record.created_at, record.provider_id, record.plan_id)

    def mark_reclaimed(self, checkpoint_id: str, by: str, reason: str) -> None:
        self.bank.put_json(BankLayout.reclaimed_key(checkpoint_id), {
            "by": by, "at": self.clock.now().isoformat(), "reason": reason})

    def unmark_reclaimed(self, checkpoint_id: str) -> None:
        self.bank.delete(BankLayout.reclaimed_key(checkpoint_id))
