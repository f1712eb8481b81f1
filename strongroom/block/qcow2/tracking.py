"""Changed-block tracking on the qcow2 backend: one persistent dirty bitmap per interval between snapshots.

Each snapshot of a volume starts an interval: in the snapshot's own QMP ``transaction`` the bitmap of the
interval that ends is disabled and a new persistent one is added to the live image's node, named after
the snapshot (:func:`bitmap_name`: a sequence number that orders the chain, then the snapshot id).  So
the bitmap of snapshot *S* holds every 64 KiB block written from *S*'s instant to the next snapshot's,
and what changed from a base *B* to a snapshot *N* is the union of the bitmaps from *B*'s up to (not
including) *N*'s.  qemu stores the bitmaps in the image when it closes it and marks them *in use* while
it has it open; after a daemon that did not close the image (SIGKILL, a crash) they read back
*inconsistent*, and then the chain cannot tell: it is dropped and the next snapshot starts a new one.

When a snapshot is deleted its bitmap is merged into the one before it (the neighbour interval grows
over both), so a base several snapshots back still finds every interval; a bitmap whose snapshot is gone
with none before it is removed (no base can need it).  :func:`tidy_actions` plans that.

The union is read over NBD: the bitmaps are merged into a temporary disabled bitmap, exported with a
read-only export of the live node, and read with libnbd ``block_status`` on ``qemu:dirty-bitmap:NAME``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from strongroom import exceptions
from strongroom.block.base import Extent
from strongroom.block.qcow2.handles import STATUS_WINDOW, libnbd

#: The block size the bitmaps track (qcow2's default cluster size).
GRANULARITY = 64 << 10
PREFIX = "strongroom."
_NAME = re.compile(r"^strongroom\.(\d{20})\.([0-9a-f-]{36})$")


def bitmap_name(seq: int, snapshot_id: str) -> str:
    """The bitmap of the interval that starts at snapshot ``snapshot_id``, ``seq`` its place in the chain."""
    return f"{PREFIX}{seq:020d}.{snapshot_id}"


@dataclass(frozen=True)
class Bitmap:
    name: str
    seq: int
    snapshot_id: str
    recording: bool
    inconsistent: bool


def parse_bitmaps(infos: Iterable[Mapping[str, Any]]) -> list[Bitmap]:
    """The chain's bitmaps among a node's ``dirty-bitmaps`` (``query-named-block-nodes``), by sequence."""
    found = []
    for info in infos:
        match = _NAME.match(str(info.get("name") or ""))
        if match is None:
            continue
        found.append(Bitmap(name=match.group(0), seq=int(match.group(1)), snapshot_id=match.group(2),
                            recording=bool(info.get("recording")),
                            inconsistent=bool(info.get("inconsistent"))))
    return sorted(found, key=lambda b: b.seq)


def tidy_actions(node: str, bitmaps: list[Bitmap], kept: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """QMP transaction actions that leave only bitmaps of the snapshots in ``kept`` (ids), each interval
    of a snapshot that is gone merged into the interval before it (which then records if it did).  An
    inconsistent bitmap makes the whole chain useless: every bitmap of it is removed."""
    if any(b.inconsistent for b in bitmaps):
        return [("block-dirty-bitmap-remove", {"node": node, "name": b.name}) for b in bitmaps]
    actions: list[tuple[str, dict[str, Any]]] = []
    survivors: list[Bitmap] = []
    for bitmap in bitmaps:
        if bitmap.snapshot_id in kept:
            survivors.append(bitmap)
            continue
        if survivors:  # the interval before grows over this one
            into = survivors[-1]
            actions.append(("block-dirty-bitmap-merge", {"node": node, "target": into.name,
                                                         "bitmaps": [bitmap.name]}))
            if bitmap.recording and not into.recording:
                actions.append(("block-dirty-bitmap-enable", {"node": node, "name": into.name}))
                survivors[-1] = Bitmap(into.name, into.seq, into.snapshot_id, True, False)
        actions.append(("block-dirty-bitmap-remove", {"node": node, "name": bitmap.name}))
    return actions


def intervals(bitmaps: list[Bitmap], base: tuple[int, str], new: tuple[int, str],
              kept: Mapping[str, int]) -> list[Bitmap] | None:
    """The bitmaps whose union is what changed from snapshot ``base`` to snapshot ``new`` (each ``(seq,
    id)``), or None if the chain cannot tell: a bitmap inconsistent or missing (the base's, the new
    snapshot's, or that of a snapshot in ``kept`` (id -> seq) between them), or one between them still
    recording."""
    by_snapshot = {b.snapshot_id: b for b in bitmaps}
    if any(b.inconsistent for b in bitmaps) or base[0] >= new[0]:
        return None
    for seq, snapshot_id in (base, new):
        found = by_snapshot.get(snapshot_id)
        if found is None or found.seq != seq:
            return None
    for snapshot_id, seq in kept.items():
        if base[0] <= seq < new[0] and snapshot_id not in by_snapshot:
            return None
    between = [b for b in bitmaps if base[0] <= b.seq < new[0]]
    if any(b.recording for b in between):
        return None
    return between


def dirty_extents(socket_path: str, export: str, bitmap: str, size: int, backend: str) -> list[Extent]:
    """The dirty extents of ``bitmap`` over ``[0, size)``, read on the NBD export ``export`` that carries it."""
    nbd = libnbd()
    context = f"qemu:dirty-bitmap:{bitmap}"
    handle = nbd.NBD()
    handle.set_export_name(export)
    handle.add_meta_context(context)
    try:
        handle.connect_unix(socket_path)
        if not handle.can_meta_context(context):
            raise exceptions.BlockUnavailable(backend=backend, reason=f"the daemon does not export {context}")
        found: list[Extent] = []
        offset = 0
        while offset < size:
            ends = [offset]

            def status(ctx: str, start: int, entries: list[int], err: Any, ends: list[int] = ends) -> int:
                if ctx == context:
                    pos = start
                    for i in range(0, len(entries) - 1, 2):
                        length, flags = entries[i], entries[i + 1]
                        if flags & 1 and pos < size:
                            found.append(Extent(pos, min(length, size - pos)))
                        pos += length
                    ends.append(pos)
                return 0

            handle.block_status(min(STATUS_WINDOW, size - offset), offset, status)
            if max(ends) <= offset:
                raise exceptions.BlockUnavailable(
                    backend=backend, reason=f"no answer for {context} at offset {offset}")
            offset = max(ends)
        return found
    except nbd.Error as err:
        raise exceptions.BlockUnavailable(backend=backend, reason=f"reading {context}: {err.string}") from err
    finally:
        with contextlib.suppress(Exception):  # closing a handle that may be dead
            handle.shutdown()
        del handle
