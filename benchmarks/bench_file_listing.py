"""File-level browse of a large directory: open the filesystem, list it, read every file, from a checkpoint.

Run from the repository root with ``.venv/bin/python benchmarks/bench_file_listing.py [--files 2000]
[--filesystem fat --filesystem ntfs ...]``.  For each filesystem (default FAT32, NTFS, XFS; ``ext4`` too when
named) a 512 MiB GPT disk image is built with one directory of ``--files`` files of 1-4 KiB (8.3 names, so
that FAT needs no long names) by ``strongroom/testing/disk_images.py`` (NTFS needs root and /dev/fuse), backed
up into a memory bank in ``--chunk-mib`` chunks, and read through a BlockReader with a ``--cache-mib`` chunk
cache, as the protection service reads it.  Prints one line per filesystem.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from strongroom.datamover.reader import BlockReader  # noqa: E402
from strongroom.files.tree import open_tree  # noqa: E402
from strongroom.testing import checkpoints, disk_images  # noqa: E402

MIB = disk_images.MIB


def _checkpoint(work: Path, image: Path, chunk: int, cache: int) -> BlockReader:
    return checkpoints.backed_up(image, work / "volumes", chunk_size=chunk, cache_bytes=cache)


def run(filesystem: str, files: int, chunk: int, cache: int, size: int) -> str:
    work = Path(tempfile.mkdtemp(prefix=f"bench-{filesystem}-"))
    try:
        source = work / "src"
        big = source / "BIG"
        big.mkdir(parents=True)
        rng = random.Random(1)
        for i in range(files):
            (big / f"F{i:05d}.DAT").write_bytes(rng.randbytes(1024 + i % 3000))
        image = work / "disk.img"
        started = time.monotonic()
        if filesystem == "ext4":
            disk_images.make_gpt_disk(image, source, size=size)
        else:
            disk_images.make_foreign_disk(image, source, filesystem, size=size)
        built = time.monotonic() - started
        reader = _checkpoint(work, image, chunk, cache)
        started = time.monotonic()
        tree = open_tree(reader)
        opened = time.monotonic() - started
        started = time.monotonic()
        entries = tree.list("/BIG")
        listed = time.monotonic() - started
        started = time.monotonic()
        for entry in entries:
            assert len(tree.read(entry.path)) == entry.size
        read = time.monotonic() - started
        return (f"{filesystem}: {len(entries)} files (image built in {built:.1f} s): open {opened:.2f} s, "
                f"list {listed:.2f} s, read all {read:.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--filesystem", action="append", choices=("fat", "ntfs", "xfs", "ext4"))
    parser.add_argument("--chunk-mib", type=int, default=4)
    parser.add_argument("--cache-mib", type=int, default=64)
    parser.add_argument("--size-mib", type=int, default=512)
    args = parser.parse_args()
    print(f"chunks {args.chunk_mib} MiB, cache {args.cache_mib} MiB, memory bank, {args.size_mib} MiB GPT image")
    for filesystem in args.filesystem or ["fat", "ntfs", "xfs"]:
        missing = disk_images.foreign_missing(filesystem) if filesystem != "ext4" else disk_images.tools_missing()
        if missing:
            print(f"{filesystem}: skipped, needs {missing}")
            continue
        print(run(filesystem, args.files, args.chunk_mib * MIB, args.cache_mib * MIB, args.size_mib * MIB),
              flush=True)


if __name__ == "__main__":
    main()
