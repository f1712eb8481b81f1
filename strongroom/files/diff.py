"""What changed between two checkpoints of one volume.

Byte ranges come from the manifests alone: two ranges holding the same chunk id hold the same bytes, so
only the entries are compared, no chunk is read (when both manifests name their chunks with the same hash;
otherwise the ranges whose ids cannot be compared are read and compared).  A volume that grew or shrank has
its tail changed.  Files are compared by what ``ls -l`` shows (type, size, mode, owner, mtime, symlink
target), as rsync does by default: a rewrite that keeps size and mtime is not seen.
"""

from __future__ import annotations

from typing import Any

from strongroom import exceptions
from strongroom.datamover.reader import BlockReader
from strongroom.files.tree import FileInfo, Tree

#: Bytes compared per read when chunk ids cannot be.
COMPARE_PIECE = 4 * 1024 * 1024


def changed_ranges(old: BlockReader, new: BlockReader) -> list[tuple[int, int]]:
    """``[(offset, length)]``, ascending and merged, where ``new`` differs from ``old``."""
    same_ids = old.header.hash == new.header.hash
    a, b = old.entries(), new.entries()
    i = j = 0
    at = 0
    end = min(old.size, new.size)
    out: list[tuple[int, int]] = []

    def add(start: int, stop: int) -> None:
        if stop <= start:
            return
        if out and out[-1][0] + out[-1][1] == start:
            out[-1] = (out[-1][0], stop - out[-1][0])
        else:
            out.append((start, stop - start))

    while at < end:
        while a[i].end <= at:
            i += 1
        while b[j].end <= at:
            j += 1
        stop = min(a[i].end, b[j].end, end)
        da, db = a[i].digest, b[j].digest
        if da is None and db is None:
            pass
        elif same_ids and da is not None and db is not None and a[i].offset == b[j].offset \
                and a[i].length == b[j].length:
            if da != db:
                add(at, stop)
        elif (da is None) != (db is None) and (a[i] if da is not None else b[j]).offset == at \
                and (a[i] if da is not None else b[j]).end == stop:
            add(at, stop)  # a whole chunk against zeros: a chunk is never all zeros (those are zero runs)
        else:
            _compare(old, new, at, stop, add)
        at = stop
    add(end, max(old.size, new.size))
    return out


def _compare(old: BlockReader, new: BlockReader, start: int, stop: int, add: Any) -> None:
    """Read both sides of ``[start, stop)`` and mark what differs, at 4 KiB granularity."""
    block = 4096
    pos = start
    while pos < stop:
        n = min(COMPARE_PIECE, stop - pos)
        x, y = old.read(pos, n), new.read(pos, n)
        if x != y:
            for k in range(0, n, block):
                if x[k:k + block] != y[k:k + block]:
                    add(pos + k, min(pos + k + block, stop))
        pos += n


_COMPARED = ("type", "size", "mode", "uid", "gid", "mtime", "target")


def changed_files(old: Tree, new: Tree, path: str, *, limit: int = 100_000) -> dict[str, list[dict[str, Any]]]:
    """``{"added": [...], "removed": [...], "modified": [...]}`` under ``path`` (each a file's info; a
    modified one with ``changed``: the fields that differ, and ``before``: their old values)."""
    before = _index(old, path, limit)
    after = _index(new, path, limit)
    modified = []
    for name in sorted(set(before) & set(after)):
        x, y = before[name], after[name]
        fields = [f for f in _COMPARED if getattr(x, f) != getattr(y, f)]
        if fields:
            was = x.to_dict()
            modified.append({**y.to_dict(), "changed": fields, "before": {f: was.get(f) for f in fields}})
    return {"added": [after[n].to_dict() for n in sorted(set(after) - set(before))],
            "removed": [before[n].to_dict() for n in sorted(set(before) - set(after))],
            "modified": modified}


def _index(tree: Tree, path: str, limit: int) -> dict[str, FileInfo]:
    out: dict[str, FileInfo] = {}
    try:
        for info in tree.walk(path):
            out[info.path] = info
            if len(out) > limit:
                raise exceptions.InvalidInput(reason=f"path: {path} holds more than {limit} entries")
    except exceptions.NotFound:
        return {}  # absent on this side: everything is added (or removed)
    return out
