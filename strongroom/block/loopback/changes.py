"""How the loopback backend tells what changed between two snapshots of a volume.

Two rules, tried in this order by :meth:`LoopbackBackend.changed_extents`:

1. **The image's stat.**  Each snapshot's sidecar records the volume image's ``st_dev``, ``st_ino``,
   ``st_size``, ``st_mtime_ns`` and ``st_ctime_ns`` (:class:`ImageStat`), taken before the copy and
   checked again after it (a change during the copy records none).  Two snapshots whose records are equal
   and trusted saw the same file unchanged: nothing changed, nothing is read.  A record is trusted only
   when the wall clock, read before the copy began, was past the recorded mtime and ctime by more than
   the stamps' granularity (:data:`FINE_MARGIN_NS`, 100 ms, for stamps with a sub-second part, else
   :data:`RACY_MARGIN_NS`, 2 s): the kernel stamps them with a coarse clock, so a write in the same tick as
   an earlier one (as git's "racily clean" entries) may leave both unchanged.  Reading the clock before the copy,
   not after, also covers a write during a long sparse copy in that tick.  The image is fsynced before
   its stat: a page a program dirtied through ``mmap`` would otherwise take later writes without a
   fault, and so without a new mtime.
2. **Shared extents (FIEMAP).**  When both snapshots are reflinks on one filesystem, a range that both
   images map to the same physical blocks holds the same bytes: neither image is ever written, and a
   filesystem never writes in place into a block two files share.  Everything else is reported: data
   in one and a hole in the other, different blocks, blocks whose address the flags leave meaningless
   (:func:`strongroom.block.loopback.fiemap.physical_key`), and anything past the base's end.  Holes in
   both are unchanged.

Otherwise (sparse copies of a changed or racily stamped file) the backend cannot tell: None.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from typing import Any

from strongroom.block.base import Extent
from strongroom.block.loopback import fiemap

#: How far the wall clock must be past an image's mtime and ctime for its stat to prove it unchanged, on a
#: filesystem that stamps whole seconds (FAT, HFS+, ext4 with 128-byte inodes): the stamp's granularity.
RACY_MARGIN_NS = 2_000_000_000
#: The same where the stamps have a sub-second part (ext4, XFS, btrfs, tmpfs): they come from the kernel's
#: coarse clock, one tick (at most 10 ms, HZ=100) or finer, or from a filesystem granularity below it
#: (exFAT's 10 ms); ten ticks of margin.
FINE_MARGIN_NS = 100_000_000
_SECOND_NS = 1_000_000_000


@dataclasses.dataclass(frozen=True)
class ImageStat:
    """A volume image's identity and timestamps when a snapshot copied it, and when that was."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int
    #: The wall clock (ns since the epoch) read before the copy began.
    taken_ns: int

    @classmethod
    def of(cls, st: os.stat_result, taken_ns: int) -> ImageStat:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, taken_ns)

    def same_file_state(self, other: ImageStat) -> bool:
        """Same inode, size and timestamps (the moment each was taken aside)."""
        return (self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns) == (
            other.dev, other.ino, other.size, other.mtime_ns, other.ctime_ns)

    @property
    def trusted(self) -> bool:
        """Taken long enough after the last stamp that a later write in the same clock tick is impossible:
        :data:`FINE_MARGIN_NS` after stamps with a sub-second part, else :data:`RACY_MARGIN_NS`."""
        fine = self.mtime_ns % _SECOND_NS or self.ctime_ns % _SECOND_NS
        margin = FINE_MARGIN_NS if fine else RACY_MARGIN_NS
        return self.taken_ns - max(self.mtime_ns, self.ctime_ns) >= margin

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> ImageStat | None:
        """The record of a sidecar, or None where it has none (taken by an older version, or the image
        changed during the copy) or it is malformed."""
        if not isinstance(value, Mapping):
            return None
        try:
            fields = {f.name: value[f.name] for f in dataclasses.fields(cls)}
        except KeyError:
            return None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in fields.values()):
            return None
        return cls(**fields)


def stat_if_unchanged(before: os.stat_result, after: os.stat_result, taken_ns: int) -> ImageStat | None:
    """The record for a snapshot whose copy began at ``taken_ns`` with the image's stat ``before`` and ended
    with ``after``; None if the image changed meanwhile."""
    first, second = ImageStat.of(before, taken_ns), ImageStat.of(after, taken_ns)
    return first if first.same_file_state(second) else None


def unchanged_by_stat(new: ImageStat | None, base: ImageStat | None) -> bool:
    """Whether the records prove the image did not change between the two snapshots."""
    return (new is not None and base is not None and new.trusted and base.trusted
            and new.same_file_state(base))


# -- shared extents ---------------------------------------------------------------------------------

_HOLE = ("hole",)
_UNKNOWN = ("unknown",)  # never equal to anything, itself included (compared by identity below)


def _segments(fd: int, size: int, upto: int) -> Iterator[tuple[int, int, object]]:
    """``[0, upto)`` cut into (start, end, key) covering it whole: FIEMAP extents keyed by their physical
    key, holes by :data:`_HOLE`, and what lies past ``size`` (the file's end) or behind untrusted flags
    by :data:`_UNKNOWN`."""
    pos = 0
    for extent in fiemap.mappings(fd, min(size, upto)):
        start, end = max(extent.logical, pos), min(extent.end, size, upto)
        if end <= start:
            continue
        if start > pos:
            yield pos, start, _HOLE
        key = fiemap.physical_key(extent)
        yield start, end, _UNKNOWN if key is None else key
        pos = end
    if pos < min(size, upto):
        yield pos, min(size, upto), _HOLE
        pos = min(size, upto)
    if pos < upto:
        yield pos, upto, _UNKNOWN


def _same(a: object, b: object) -> bool:
    return a is not _UNKNOWN and b is not _UNKNOWN and a == b


def differing_extents(new_fd: int, new_size: int, base_fd: int, base_size: int) -> list[Extent]:
    """Where the image ``new_fd`` (``new_size`` bytes) may hold other bytes than ``base_fd``: everything
    but the ranges where both are holes or map the same physical blocks.  Ascending, merged."""
    out: list[Extent] = []
    if new_size <= 0:
        return out
    new, base = _segments(new_fd, new_size, new_size), _segments(base_fd, base_size, new_size)
    a, b = next(new), next(base)
    start = -1  # of the changed run being built
    while True:
        end = min(a[1], b[1])
        pos = max(a[0], b[0])
        if _same(a[2], b[2]):
            if start >= 0:
                out.append(Extent(start, pos - start))
                start = -1
        elif start < 0:
            start = pos
        if end >= new_size:
            break
        if a[1] == end:
            a = next(new)
        if b[1] == end:
            b = next(base)
    if start >= 0:
        out.append(Extent(start, new_size - start))
    return out
