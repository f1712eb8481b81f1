"""How long the loopback backend takes to say what changed between two snapshots of a 3 GiB image.

For each filesystem (the worktree's own, ext4 here; and, as root with xfsprogs, a loop-mounted XFS with
reflink=1 in ``.bench/cbt/``) it makes a 3 GiB volume holding about 1.8 GiB of data (1 MiB runs of random
bytes, holes between them, fixed seed), lets its timestamps settle past the racy margin, and times:

- ``create_snapshot`` of the base, and of a new snapshot with nothing written (the copy a protect waits for);
- ``changed_extents`` with nothing written (the stat rule), and on XFS also by FIEMAP alone;
- ``changed_extents`` after 1% of the 4 KiB blocks were rewritten at random places.

Usage: ``.venv/bin/python benchmarks/bench_loopback_changes.py [--size-gib 3] [--no-xfs]``.  Prints a
Markdown table.  Needs about 2 GiB free per filesystem.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from strongroom.block.loopback import LoopbackBackend  # noqa: E402
from strongroom.block.loopback.changes import RACY_MARGIN_NS, differing_extents  # noqa: E402

MiB = 1 << 20
BLOCK = 4096


def fill(backend: LoopbackBackend, volume_id: str, size: int, rng: random.Random) -> int:
    """About 60% of the image in 1 MiB runs of random bytes; returns the bytes written."""
    written = 0
    with backend.writing_volume(volume_id) as writer:
        for offset in range(0, size, MiB):
            if rng.random() < 0.6:
                writer.write(offset, rng.randbytes(MiB))
                written += MiB
        writer.flush()
    return written


def change_blocks(backend: LoopbackBackend, volume_id: str, size: int, rng: random.Random) -> int:
    blocks = rng.sample(range(size // BLOCK), size // BLOCK // 100)
    with backend.writing_volume(volume_id) as writer:
        for block in blocks:
            writer.write(block * BLOCK, rng.randbytes(BLOCK))
        writer.flush()
    return len(blocks)


def timed(call):  # noqa: ANN001, ANN201 - any callable
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def describe(found: object) -> str:
    if found is None:
        return "None (cannot tell)"
    extents = list(found)  # type: ignore[call-overload]
    return f"{len(extents)} extents, {sum(e.length for e in extents) / MiB:.1f} MiB"


def measure(label: str, directory: pathlib.Path, size: int) -> list[str]:
    shutil.rmtree(directory, ignore_errors=True)
    backend = LoopbackBackend({"path": str(directory)})
    rng = random.Random(12)
    volume = backend.create_volume(size, name="vm.img")
    data = fill(backend, volume.id, size, rng)
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.2)  # past the racy margin, as a nightly protect is
    rows = []
    t, base = timed(lambda: backend.create_snapshot(volume.id))
    method = backend.snapshot_method(base.id)
    rows.append(f"| {label} | snapshot of the base ({method}, {data / MiB:.0f} MiB of data) | {t:.3f} s | |")
    t, new = timed(lambda: backend.create_snapshot(volume.id))
    rows.append(f"| {label} | snapshot, nothing written | {t:.3f} s | |")
    t, found = timed(lambda: backend.changed_extents(new.id, base.id))
    rows.append(f"| {label} | changed_extents, nothing written (stat) | {t * 1000:.2f} ms | {describe(found)} |")
    if method == "reflink":
        t, found = timed(lambda: _fiemap_only(backend, new.id, base.id))
        rows.append(f"| {label} | changed_extents by FIEMAP alone, nothing written | {t * 1000:.1f} ms "
                    f"| {describe(found)} |")
    backend.delete_snapshot(new.id)
    changed = change_blocks(backend, volume.id, size, rng)
    t, new = timed(lambda: backend.create_snapshot(volume.id))
    rows.append(f"| {label} | snapshot after 1% of 4 KiB blocks ({changed}) rewritten | {t:.3f} s | |")
    t, found = timed(lambda: backend.changed_extents(new.id, base.id))
    rows.append(f"| {label} | changed_extents, 1% of 4 KiB blocks rewritten | {t * 1000:.1f} ms "
                f"| {describe(found)} (written: {changed * BLOCK / MiB:.1f} MiB) |")
    for snap in backend.list_snapshots(volume.id):
        backend.delete_snapshot(snap.id)
    backend.destroy_volume(volume.id)
    shutil.rmtree(directory, ignore_errors=True)
    return rows


def _fiemap_only(backend: LoopbackBackend, new_id: str, base_id: str) -> list:
    with contextlib.ExitStack() as stack:
        fds = []
        for sid in (new_id, base_id):
            fd = os.open(backend._snapshots.image(sid), os.O_RDONLY)
            stack.callback(os.close, fd)
            fds.append(fd)
        return differing_extents(fds[0], os.fstat(fds[0]).st_size, fds[1], os.fstat(fds[1]).st_size)


@contextlib.contextmanager
def xfs(base: pathlib.Path, size: int) -> Iterator[pathlib.Path]:
    from tests.servers.reflinkfs import reflink_filesystem

    base.mkdir(parents=True, exist_ok=True)
    with reflink_filesystem(base, size) as mountpoint:
        yield mountpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=3)
    parser.add_argument("--no-xfs", action="store_true")
    args = parser.parse_args()
    size = int(args.size_gib * 1024) * MiB
    bench = ROOT / ".bench" / "cbt"
    bench.mkdir(parents=True, exist_ok=True)
    fstype = subprocess.run(["findmnt", "-no", "FSTYPE", "-T", str(bench)],
                            capture_output=True, text=True, check=False).stdout.strip()
    rows = measure(fstype or "local", bench / "local", size)
    if not args.no_xfs:
        shutil.rmtree(bench / "xfs", ignore_errors=True)
        with xfs(bench / "xfs", 2 * size) as mountpoint:
            rows += measure("XFS", mountpoint / "volumes", size)
    print(f"| filesystem | {args.size_gib:g} GiB volume | time | answer |")
    print("| --- | --- | ---: | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
