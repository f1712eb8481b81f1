"""What changed-block tracking costs on rbd: create_snapshot + changed_extents of a multi-GiB image.

Starts its own one-mon, one-OSD Ceph cluster (``tests/servers/ceph.py``, bluestore on a sparse file, cephx)
in a temporary directory, fills a ``--size-gib`` image with data through the rbd backend (every 4 MiB object
exists), then times, ``--runs`` times each (the best and the worst are printed), against a base snapshot taken
just before the change:

* ``unchanged``: nothing written since the base;
* ``1% of 4 MiB blocks``: whole objects rewritten, spread over the image;
* ``1% of 4 KiB blocks``: small writes spread over the image (almost every object changes a little).

Each run is ``create_snapshot`` (timed alone) and ``changed_extents`` against the base, consumed whole
(timed alone); both snapshots are deleted afterwards.
Run by hand (not part of ``make bench``)::

    .venv/bin/python benchmarks/bench_rbd_changes.py [--size-gib 4] [--runs 3] [--features ...]
"""

from __future__ import annotations

import argparse
import pathlib
import random
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MiB = 1 << 20
KiB = 1 << 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-gib", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--features", default="layering,exclusive-lock,object-map,fast-diff,deep-flatten",
                        help="image_features of the image (without fast-diff librbd asks every object)")
    parser.add_argument("--sparse", action="store_true",
                        help="write 4 KiB per object instead of filling the image (every object still exists)")
    args = parser.parse_args()

    from strongroom.block.rbd import RbdBackend
    from tests.servers.ceph import CephCluster

    size = args.size_gib << 30
    with tempfile.TemporaryDirectory(prefix="bench-rbd-changes-") as tmp:
        cluster = CephCluster(pathlib.Path(tmp), cephx=True, objectstore="bluestore",
                              memstore_bytes=size + (4 << 30))
        with cluster:
            cluster.create_pool("bench")
            backend = RbdBackend(cluster.backend_options("bench", op_timeout=60, image_features=args.features))
            try:
                volume = backend.create_volume(size, name="vol1")
                began = time.monotonic()
                rng = random.Random(1)
                block = rng.randbytes(4 * MiB)
                with backend.writing_volume(volume.id) as writer:
                    for offset in range(0, size, 4 * MiB):
                        # Every object differs from the others (its offset in its first bytes).
                        piece = offset.to_bytes(8, "little") + (block[8:4096] if args.sparse else block[8:])
                        writer.write(offset, piece)
                    writer.flush()
                print(f"filled {args.size_gib} GiB image ({'4 KiB per object' if args.sparse else 'whole'}, "
                      f"features {args.features}) in {time.monotonic() - began:.1f} s", flush=True)
                cases = {"unchanged": None, "1% of 4 MiB blocks": 4 * MiB, "1% of 4 KiB blocks": 4 * KiB}
                print("| change | snapshot s (best / worst) | changed_extents s (best / worst) | extents | "
                      "bytes reported |")
                print("| --- | ---: | ---: | ---: | ---: |")
                for case, unit in cases.items():
                    snaps, diffs = [], []
                    count = reported = 0
                    for run in range(args.runs):
                        base = backend.create_snapshot(volume.id)
                        if unit is not None:
                            blocks = size // unit
                            chosen = random.Random(run).sample(range(blocks), max(1, blocks // 100))
                            with backend.writing_volume(volume.id) as writer:
                                for index in chosen:
                                    writer.write(index * unit, rng.randbytes(unit))
                                writer.flush()
                        t0 = time.monotonic()
                        snap = backend.create_snapshot(volume.id)
                        t1 = time.monotonic()
                        found = backend.changed_extents(snap.id, base.id)
                        assert found is not None
                        extents = list(found)
                        t2 = time.monotonic()
                        snaps.append(t1 - t0)
                        diffs.append(t2 - t1)
                        count, reported = len(extents), sum(e.length for e in extents)
                        backend.delete_snapshot(snap.id)
                        backend.delete_snapshot(base.id)
                    print(f"| {case} | {min(snaps):.3f} / {max(snaps):.3f} | {min(diffs):.3f} / {max(diffs):.3f} "
                          f"| {count} | {reported / MiB:.1f} MiB |", flush=True)
                backend.destroy_volume(volume.id)
            finally:
                backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
