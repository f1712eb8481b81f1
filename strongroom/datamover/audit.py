"""Audit a manifest against the snapshot it was made from: the check of changed-block tracking.

An incremental backup trusts the backend's changed extents: a slot it was told is unchanged keeps the
parent's chunk without being read.  :func:`audit` re-reads the whole source snapshot (its allocated ranges),
hashes every slot as a full backup would, and compares each with the manifest's entry, so an operator can
prove that nothing was missed.  It reads, it never writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from strongroom.bank_plugins.bank import BankSection
from strongroom.block.base import BlockReader
from strongroom.datamover import hashing, plan
from strongroom.datamover import manifest as _manifest
from strongroom.datamover.slots import Bounded, Zeros, check_workers, read_slot

#: At most this many mismatching slots are named (the count is always exact).
MAX_NAMED = 20


@dataclasses.dataclass(frozen=True)
class AuditResult:
    slots_checked: int
    bytes_read: int
    mismatches: int
    errors: list[str]


def audit(reader: BlockReader, manifest_section: BankSection, *, workers: int = 2,
          progress: Callable[[int], None] | None = None, hash_key: bytes | None = None) -> AuditResult:
    """Compare every slot of ``reader`` with the manifest's entry for it.  ``ManifestIncomplete`` for an
    incomplete manifest; a manifest of another size is one error.  ``hash_key``: the chunk-id key of a
    manifest with keyed chunk ids."""
    check_workers(workers)
    header = _manifest.read_manifest_header(manifest_section)
    if header.size != reader.size:
        return AuditResult(0, 0, 1, [f"the snapshot holds {reader.size} bytes, the manifest {header.size}"])
    chunk_size, size = header.chunk_size, header.size
    expected: list[str | None] = [None] * (-(-size // chunk_size))
    for entry in _manifest.iter_entries(manifest_section, header):
        if entry.digest is not None:
            expected[entry.offset // chunk_size] = entry.digest
    digest_of = hashing.hasher(header.hash, hash_key)
    zeros = Zeros(chunk_size)
    report = progress or (lambda n: None)
    found: dict[int, str | None] = {}
    read = 0

    def check(slot: plan.Slot) -> tuple[int, str | None, int]:
        data, nread = read_slot(reader, slot)
        return slot.offset, None if zeros.equal(data) else digest_of(data), nread

    def done(result: tuple[int, str | None, int]) -> None:
        nonlocal read
        offset, digest, nread = result
        found[offset // chunk_size] = digest
        read += nread

    pool = Bounded(workers, "datamover-audit")
    try:
        for segment in plan.full_plan(reader, size, chunk_size):
            if segment.slot is not None:
                pool.submit(check, segment.slot, on_done=done)
            report(segment.length)
        pool.finish(done)
    finally:
        pool.close()
    errors: list[str] = []
    mismatches = 0
    for index, want in enumerate(expected):
        have = found.get(index)  # slots with no allocated byte read as zeros
        if have != want:
            mismatches += 1
            if len(errors) < MAX_NAMED:
                errors.append(f"bytes [{index * chunk_size}, {min((index + 1) * chunk_size, size)}): the snapshot "
                              f"holds {have or 'zeros'}, the manifest records {want or 'zeros'}")
    return AuditResult(slots_checked=len(expected), bytes_read=read, mismatches=mismatches, errors=errors)
