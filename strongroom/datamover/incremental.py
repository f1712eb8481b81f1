"""Incremental-forever backups: a new manifest is its parent's with the changed slots replaced.

The caller (the volume protection plugin) knows the parent checkpoint's manifest and where the volume changed
since the parent's snapshot (``BlockBackend.changed_extents``).  A slot no changed extent touches takes the
parent's entry as it is (its chunk, or zeros) and is never read; a changed slot is read and chunked as in a
full backup.  Every manifest stays complete (it lists every slot), so deleting any checkpoint never breaks
another: chunks are shared, never manifests.

Before it relies on the parent, :func:`load_parent` checks what would make the result wrong and says why it
cannot (the backup then reads everything): a parent manifest that is incomplete or unreadable, of another
size (the volume was resized), of other chunk settings, or naming a chunk the store no longer holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

from strongroom import exceptions
from strongroom.bank_plugins.bank import BankSection
from strongroom.block.base import Extent
from strongroom.datamover import manifest as _manifest
from strongroom.datamover.chunkstore import ChunkStore

#: Why a backup read everything (``BackupResult.full_reason``), the mover's own reasons; the plugin adds
#: its own (no parent in this bank, base snapshot gone, backend cannot tell, periodic full read).
RESIZED = "volume resized"
CHUNK_SETTINGS = "chunk settings changed"
PARENT_UNREADABLE = "parent manifest unreadable"
PARENT_CHUNKS_MISSING = "parent chunks missing"


@dataclasses.dataclass(frozen=True)
class Parent:
    """What an incremental backup builds on: the parent checkpoint's manifest (read only) and the extents of
    the volume that may have changed since the parent's snapshot."""

    manifest: BankSection
    changed: Iterable[Extent]
    #: Checkpoint id, for messages.
    name: str = "the parent checkpoint"


@dataclasses.dataclass(frozen=True)
class ParentView:
    """The parent's entry for every slot (a digest, or None for zeros) and which slots changed."""

    slots: list[str | None]
    changed: bytearray  # 1 per slot that changed since the parent
    reused_chunks: int  # distinct chunks of unchanged slots, checked present


class CannotUseParent(Exception):
    """Internal: the parent cannot be built on; ``reason`` (one of this module's) says why."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def load_parent(parent: Parent, store: ChunkStore, size: int, chunk_size: int) -> ParentView:
    """The parent's slots, checked usable for a backup of ``size`` bytes in ``chunk_size`` slots, or
    ``CannotUseParent``."""
    try:
        header = _manifest.read_manifest_header(parent.manifest)
    except exceptions.DataIntegrityError as err:
        raise CannotUseParent(PARENT_UNREADABLE, str(err)) from err
    if header.size != size:
        raise CannotUseParent(RESIZED, f"{parent.name} holds {header.size} bytes, the volume {size}")
    if (header.chunk_size, header.hash) != (chunk_size, store.hash_algo):
        raise CannotUseParent(CHUNK_SETTINGS, f"{parent.name} has {header.chunk_size}-byte {header.hash} chunks, "
                              f"this backup {chunk_size}-byte {store.hash_algo}")
    count = -(-size // chunk_size)
    changed = changed_slots(parent.changed, size, chunk_size)
    slots: list[str | None] = [None] * count
    try:
        for entry in _manifest.iter_entries(parent.manifest, header):
            if entry.digest is None:
                continue
            if entry.offset % chunk_size or entry.length != min(chunk_size, size - entry.offset):
                raise CannotUseParent(CHUNK_SETTINGS, f"{parent.name} has a chunk at {entry.offset} off the slots")
            slots[entry.offset // chunk_size] = entry.digest
    except exceptions.DataIntegrityError as err:
        raise CannotUseParent(PARENT_UNREADABLE, str(err)) from err
    reused = {digest for index, digest in enumerate(slots) if digest is not None and not changed[index]}
    missing = store.missing(reused)
    if missing:
        raise CannotUseParent(PARENT_CHUNKS_MISSING, f"{len(missing)} chunk(s) of {parent.name} are not in the "
                              f"bank, e.g. {sorted(missing)[0]}")
    return ParentView(slots=slots, changed=changed, reused_chunks=len(reused))


def changed_slots(extents: Iterable[Extent], size: int, chunk_size: int) -> bytearray:
    """One byte per slot, 1 where an extent touches it.  ``BlockError`` for an extent outside the volume."""
    marks = bytearray(-(-size // chunk_size))
    for extent in extents:
        if extent.length <= 0:
            continue
        if extent.offset < 0 or extent.end > size:
            raise exceptions.BlockError(reason=f"changed extent {extent} lies outside the volume ({size} bytes)")
        first, last = extent.offset // chunk_size, (extent.end - 1) // chunk_size
        marks[first:last + 1] = b"\x01" * (last - first + 1)
    return marks


def changed_allocated(allocated: Iterable[Extent], changed: bytearray, size: int,
                      chunk_size: int) -> Iterator[Extent]:
    """The parts of ``allocated`` (ascending) inside changed slots: what an incremental backup reads."""
    runs = _runs(changed)
    run = next(runs, None)
    for extent in allocated:
        start, end = max(extent.offset, 0), min(extent.end, size)
        while run is not None and start < end:
            lo, hi = run[0] * chunk_size, min(run[1] * chunk_size, size)
            if hi <= start:
                run = next(runs, None)
                continue
            if lo >= end:
                break
            piece_start, piece_end = max(start, lo), min(end, hi)
            yield Extent(piece_start, piece_end - piece_start)
            start = piece_end
        if run is None:
            return


def _runs(marks: bytearray) -> Iterator[tuple[int, int]]:
    """``[first, end)`` slot ranges of consecutive 1s."""
    index, count = 0, len(marks)
    while index < count:
        start = marks.find(1, index)
        if start < 0:
            return
        end = marks.find(0, start)
        end = count if end < 0 else end
        yield start, end
        index = end
