"""What a nightly protect's tracking costs on the qcow2 backend: create_snapshot + changed_extents.

A qcow2 volume (4 GiB by default, its first ``--fill-mib`` written) gets a base snapshot; then, ``--runs``
times each: nothing written, or 1% of its 64 KiB blocks touched (4 KiB each, random blocks), then a new
snapshot, ``changed_extents(new, base)`` listed (and checked: exactly the touched blocks), and the old base
deleted, as a protect that keeps the last checkpoint's snapshot does.  Also a base several snapshots back
(the bitmaps of the intervals between merged at query time).  Prints the timings (median, min, max).

    .venv/bin/python benchmarks/bench_qcow2_changes.py [--size-gib 4] [--fill-mib 1024] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from strongroom.block.qcow2 import Qcow2Backend  # noqa: E402

BLOCK = 64 << 10
MiB = 1 << 20


def timed(fn, *args):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def listed(backend: Qcow2Backend, new: str, base: str) -> list:  # type: ignore[type-arg]
    return list(backend.changed_extents(new, base) or [])


def summary(name: str, values: list[float]) -> str:
    return (f"| {name} | {statistics.median(values) * 1000:.1f} | {min(values) * 1000:.1f} | "
            f"{max(values) * 1000:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-gib", type=int, default=4)
    parser.add_argument("--fill-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--between", type=int, default=5, help="snapshots between base and new (last part)")
    args = parser.parse_args()
    size = args.size_gib << 30
    blocks = size // BLOCK
    rng = random.Random(12)
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-qcow2-", dir=os.environ.get("BENCH_DIR")) as tmp:
        backend = Qcow2Backend({"path": os.path.join(tmp, "images")})
        try:
            volume = backend.create_volume(size, name="vol1")
            with backend.writing_volume(volume.id) as writer:
                for offset in range(0, args.fill_mib * MiB, 4 * MiB):
                    writer.write(offset, rng.randbytes(4 * MiB))
            base = backend.create_snapshot(volume.id)
            for kind in ("unchanged", "1% of 64 KiB blocks"):
                for _ in range(args.runs):
                    touched = set() if kind == "unchanged" else set(rng.sample(range(blocks), blocks // 100))
                    if touched:
                        with backend.writing_volume(volume.id) as writer:
                            for block in touched:
                                writer.write(block * BLOCK + rng.randrange(0, BLOCK - 4096), rng.randbytes(4096))
                    new, t_snap = timed(backend.create_snapshot, volume.id)
                    extents, t_changes = timed(listed, backend, new.id, base.id)
                    reported = {e.offset // BLOCK + i for e in extents for i in range(e.length // BLOCK)}
                    assert reported == touched, (len(reported), len(touched))
                    _, t_delete = timed(backend.delete_snapshot, base.id)
                    base = new
                    for name, value in ((f"{kind}: create_snapshot", t_snap),
                                        (f"{kind}: changed_extents", t_changes),
                                        (f"{kind}: both", t_snap + t_changes),
                                        (f"{kind}: delete old base", t_delete)):
                        rows.setdefault(name, []).append(value)
            # A base several snapshots back: the bitmaps between are merged at query time.
            for _ in range(args.runs):
                first = base
                for _ in range(args.between):
                    with backend.writing_volume(volume.id) as writer:
                        for block in rng.sample(range(blocks), blocks // 100):
                            writer.write(block * BLOCK, rng.randbytes(4096))
                    base = backend.create_snapshot(volume.id)
                _, t_changes = timed(listed, backend, base.id, first.id)
                rows.setdefault(f"changed_extents over {args.between} intervals (1% each)", []).append(t_changes)
                for snap in backend.list_snapshots(volume.id):
                    if snap.id != base.id:
                        backend.delete_snapshot(snap.id)
            for snap in backend.list_snapshots(volume.id):
                backend.delete_snapshot(snap.id)
        finally:
            backend.close()
    print(f"qcow2, {args.size_gib} GiB volume ({args.fill_mib} MiB written), {args.runs} runs each")
    print("| step | median ms | min ms | max ms |\n| --- | ---: | ---: | ---: |")
    for name, values in rows.items():
        print(summary(name, values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
