"""What a backup reads and records, slot by slot, in offset order (:mod:`strongroom.datamover.mover` runs it).

The device is cut into ``chunk_size`` slots aligned on multiples of ``chunk_size``.  A full plan reads every
slot holding an allocated byte (only its allocated ranges; the rest are zeros) and records the gaps as zero
runs; an incremental plan (:mod:`strongroom.datamover.incremental`) reads only the changed slots that hold
data and takes every other slot's entry from the parent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

from strongroom import exceptions
from strongroom.block.base import BlockReader, Extent
from strongroom.datamover import incremental


@dataclasses.dataclass(frozen=True)
class Slot:
    offset: int
    length: int
    ranges: tuple[tuple[int, int], ...]  # allocated [start, end) inside the slot, absolute offsets


def plan_slots(extents: Iterable[Extent], size: int, chunk_size: int) -> Iterator[Slot]:
    """Slots holding at least one allocated byte, ascending; gaps between them are zeros."""
    current: int | None = None
    ranges: list[tuple[int, int]] = []
    previous_end = 0
    for extent in extents:
        start, end = max(extent.offset, 0), min(extent.end, size)
        if extent.offset < previous_end:
            raise exceptions.BlockError(reason=f"allocated extents go backwards at offset {extent.offset}")
        previous_end = extent.end
        while start < end:
            slot = start // chunk_size
            slot_end = min((slot + 1) * chunk_size, size)
            seg_end = min(end, slot_end)
            if current is not None and slot != current:
                yield _make_slot(current, chunk_size, size, ranges)
                ranges = []
            current = slot
            if ranges and ranges[-1][1] == start:
                ranges[-1] = (ranges[-1][0], seg_end)
            else:
                ranges.append((start, seg_end))
            start = seg_end
    if current is not None:
        yield _make_slot(current, chunk_size, size, ranges)


def _make_slot(index: int, chunk_size: int, size: int, ranges: list[tuple[int, int]]) -> Slot:
    offset = index * chunk_size
    return Slot(offset, min(chunk_size, size - offset), tuple(ranges))


@dataclasses.dataclass(frozen=True)
class Segment:
    """A slot range of the new manifest, in offset order: read ``slot`` and chunk it, or take the parent's
    ``digest`` as it is, or (neither) record zeros."""

    offset: int
    length: int
    slot: Slot | None = None
    digest: str | None = None


def full_plan(reader: BlockReader, size: int, chunk_size: int) -> Iterator[Segment]:
    position = 0
    for slot in plan_slots(reader.allocated_extents(), size, chunk_size):
        if slot.offset > position:
            yield Segment(position, slot.offset - position)
        yield Segment(slot.offset, slot.length, slot=slot)
        position = slot.offset + slot.length
    if size > position:
        yield Segment(position, size - position)


def incremental_plan(reader: BlockReader, view: incremental.ParentView, size: int,
                      chunk_size: int) -> Iterator[Segment]:
    """Changed slots with data are read; every other slot is the parent's entry (zeros if it changed and holds
    no allocated byte now)."""
    position = 0

    def fill(end: int) -> Iterator[Segment]:
        zeros_from = None  # consecutive zero slots make one segment: a mostly empty volume costs little
        for index in range(position // chunk_size, -(-end // chunk_size)):
            offset = index * chunk_size
            digest = None if view.changed[index] else view.slots[index]
            if digest is None:
                zeros_from = offset if zeros_from is None else zeros_from
                continue
            if zeros_from is not None:
                yield Segment(zeros_from, offset - zeros_from)
                zeros_from = None
            yield Segment(offset, min(chunk_size, size - offset), digest=digest)
        if zeros_from is not None:
            yield Segment(zeros_from, min(end, size) - zeros_from)

    allocated = incremental.changed_allocated(reader.allocated_extents(), view.changed, size, chunk_size)
    for slot in plan_slots(allocated, size, chunk_size):
        yield from fill(slot.offset)
        yield Segment(slot.offset, slot.length, slot=slot)
        position = slot.offset + slot.length
    yield from fill(size)
