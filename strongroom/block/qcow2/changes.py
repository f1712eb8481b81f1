"""Changed-block tracking on the running daemon: each image's chain of persistent dirty bitmaps.

:mod:`.tracking` says what the chain is and plans its QMP actions; :class:`Changes` applies them to an
attached image's node: the bitmap switch a snapshot's transaction makes (:meth:`Changes.next_interval`),
the tidying of intervals whose snapshots are gone, and ``changed_extents``, the union of the bitmaps
between two snapshots read over a temporary NBD export.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

from strongroom import exceptions
from strongroom.block.base import Extent, merge_extents
from strongroom.block.qcow2.layout import holds_bitmaps, is_volume_name, node_name
from strongroom.block.qcow2.nodes import Nodes
from strongroom.block.qcow2.qmp import QmpError
from strongroom.block.qcow2.tracking import (
    GRANULARITY,
    Bitmap,
    bitmap_name,
    dirty_extents,
    intervals,
    parse_bitmaps,
    tidy_actions,
)

LOG = logging.getLogger("strongroom.block.qcow2")

#: QMP transaction actions: (command, arguments).
Actions = list[tuple[str, dict[str, Any]]]


class Changes:
    """The dirty bitmap chains of the images attached to ``nodes``' daemon."""

    def __init__(self, nodes: Nodes) -> None:
        self.nodes = nodes
        self.dir = nodes.dir
        self.daemon = nodes.daemon
        self.what = nodes.what

    def chain(self, volume_id: str) -> dict[str, dict[str, Any]]:
        """Sidecars of ``volume_id``'s snapshots that have a place in its bitmap chain (``seq``)."""
        return {sid: info for sid, info in self.dir.sidecars().items()
                if info.get("volume_id") == volume_id and type(info.get("seq")) is int}

    def next_interval(self, volume_id: str, live: str, snapshot_id: str) -> tuple[int, Actions]:
        """The place in the chain of a new snapshot ``snapshot_id`` of image node ``live``, and the actions
        of its transaction that switch the bitmaps: the interval that ends stops recording, the next
        starts (none on an image that cannot store bitmaps), at the snapshot's instant."""
        bitmaps = self.tidy(volume_id, live)
        seqs = [b.seq for b in bitmaps] + [i["seq"] for i in self.chain(volume_id).values()]
        seq = max([time.time_ns(), *(s + 1 for s in seqs)])
        switch: Actions = [
            ("block-dirty-bitmap-disable", {"node": live, "name": b.name})
            for b in bitmaps if b.recording]
        if holds_bitmaps(self.dir.image(volume_id)):
            switch.append(("block-dirty-bitmap-add", {
                "node": live, "name": bitmap_name(seq, snapshot_id), "persistent": True,
                "granularity": GRANULARITY}))
        return seq, switch

    def bitmaps(self, live: str) -> list[Bitmap]:
        for node in self.nodes.qmp("query-named-block-nodes", {"flat": True}) or []:
            if node.get("node-name") == live:
                return parse_bitmaps(node.get("dirty-bitmaps") or [])
        raise exceptions.BlockError(reason=f"{self.what}: node {live} is not open")

    def tidy(self, volume_id: str, live: str) -> list[Bitmap]:
        """Merge the bitmaps of snapshots that are gone into their neighbours (drop an inconsistent chain);
        the chain's bitmaps after that.  A failure is logged: it costs space, never a wrong answer."""
        bitmaps = self.bitmaps(live)
        actions = tidy_actions(live, bitmaps, set(self.chain(volume_id)))
        if not actions:
            return bitmaps
        if any(b.inconsistent for b in bitmaps):
            LOG.warning("%s: the dirty bitmaps of image %s are inconsistent (its daemon did not close it): "
                        "changes since its snapshots cannot be told; the next snapshot starts a new chain",
                        self.what, volume_id)
        try:
            self.daemon.transaction(actions)
        except QmpError as err:
            LOG.warning("%s: could not tidy the dirty bitmaps of image %s: %s", self.what, volume_id, err.desc)
        return self.bitmaps(live)

    def changed_extents(self, snapshot_id: str, base_snapshot_id: str) -> Iterator[Extent] | None:
        """The union of the dirty bitmaps of the intervals from the base's snapshot to this one (64 KiB
        blocks), plus the tail a growth added; None when a bitmap is missing or inconsistent."""
        new, base = (self._sidecar_or_missing(sid) for sid in (snapshot_id, base_snapshot_id))
        if new["volume_id"] != base["volume_id"] or not isinstance(new.get("size"), int) or \
                not isinstance(base.get("size"), int):
            return None
        if snapshot_id == base_snapshot_id:
            return iter(())
        if type(new.get("seq")) is not int or type(base.get("seq")) is not int or base["size"] > new["size"]:
            return None
        volume_id = str(new["volume_id"])
        if not is_volume_name(volume_id) or not os.path.isfile(self.dir.image(volume_id)):
            return None
        with self.nodes.lock:
            live = self.nodes.attach(volume_id)
            kept = {sid: info["seq"] for sid, info in self.chain(volume_id).items()}
            chosen = intervals(self.bitmaps(live), (base["seq"], base_snapshot_id), (new["seq"], snapshot_id),
                               kept)
            if not chosen:
                return None
            extents = self._union(live, [b.name for b in chosen], new["size"])
        if new["size"] > base["size"]:  # grown since: the new tail is all new
            extents.append(Extent(base["size"], new["size"] - base["size"]))
        return iter(merge_extents(extents, new["size"]))

    def _sidecar_or_missing(self, snapshot_id: str) -> dict[str, Any]:
        info = self.dir.read_sidecar(snapshot_id)
        if info is None or not isinstance(info.get("volume_id"), str):
            raise exceptions.SnapshotNotFound(snapshot_id=snapshot_id)
        return info

    def _union(self, live: str, names: list[str], size: int) -> list[Extent]:
        """The dirty extents of the union of bitmaps ``names`` (merged into a temporary disabled bitmap,
        exported over a temporary read-only export of the live node) within ``[0, size)``."""
        temporary = f"strongroom-union-{uuid.uuid4().hex}"
        export = node_name("c", temporary)
        try:
            self.daemon.transaction([
                ("block-dirty-bitmap-add", {"node": live, "name": temporary, "disabled": True,
                                            "persistent": False, "granularity": GRANULARITY}),
                ("block-dirty-bitmap-merge", {"node": live, "target": temporary, "bitmaps": names})])
        except QmpError as err:
            raise exceptions.BlockError(reason=f"{self.what}: merging dirty bitmaps: {err.desc}") from err
        try:
            self.nodes.qmp("block-export-add", {"type": "nbd", "id": export, "node-name": live, "name": export,
                                                "writable": False, "bitmaps": [temporary]},
                           doing="exporting a dirty bitmap")
            try:
                return dirty_extents(self.daemon.nbd_socket, export, temporary, size, self.what)
            finally:
                self.nodes.remove_export(export)
        finally:
            with contextlib.suppress(exceptions.BlockError):
                self.nodes.qmp("block-dirty-bitmap-remove", {"node": live, "name": temporary})
