"""File-level browsing of a large directory: ``ls`` of 2000 entries inside a protected ext4 volume.

Run from the repository root (not root; not part of ``make bench``: a minute or two)::

    .venv/bin/python benchmarks/bench_listing.py [--entries 2000] [--only direct|api] [--profile]

The workload, built in ``.bench/listing/`` (kept between runs; ``--rebuild`` makes it again): a 512 MiB GPT
disk whose ext4 partition (``mkfs.ext4 -d``, no root) holds ``/big`` with ``--entries`` files of 0 to 128 KiB
(fixed seed), written in name order as a VM's files are: ``mkfs.ext4`` grows the directory one block at a
time between the files' data, so its blocks are spread over the partition, as they are in a directory that
grew over time.

``direct``: the volume is backed up (4 MiB chunks) into a memory bank and read through a
:class:`~strongroom.datamover.reader.BlockReader` with the protection service's cache (``READER_CACHE``,
32 MiB) and :func:`~strongroom.files.tree.open_tree`: it times ``Tree.list("/big")`` (and the chunk fetches
it made), ``stat`` of every entry through one tree, and ``read`` of 50 files checked byte for byte.

``api``: the real ``strongroom-all-in-one`` (its default encrypted bank) protects the disk, then it times
``GET .../files?path=/big`` twice (the first call opens the reader: manifest read) and checks every name.

``--profile`` runs the direct listing under cProfile and prints the 25 costliest functions.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import random
import shutil
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIB = 1 << 20
DISK = 512 * MIB
CHUNK = 4 * MIB
RESOURCE = "OS::Cinder::Volume#disk.img"


def build(work: Path, entries: int, rebuild: bool) -> tuple[Path, Path]:
    """``(source tree, disk image)``, made once per entry count."""
    from strongroom.testing import disk_images

    src, disk = work / f"src-{entries}", work / f"disk-{entries}.img"
    if disk.exists() and src.exists() and not rebuild:
        return src, disk
    shutil.rmtree(src, ignore_errors=True)
    rng = random.Random(2000)
    big = src / "big"
    big.mkdir(parents=True)
    for i in range(entries):
        (big / f"file-{i:05d}.dat").write_bytes(rng.randbytes(rng.randrange(0, 128 * 1024)))
    (src / "etc").mkdir()
    (src / "etc" / "hostname").write_text("listing-bench\n")
    disk_images.make_gpt_disk(disk, src, size=DISK)
    return src, disk


def direct(src: Path, disk: Path, profile: bool) -> dict[str, Any]:
    from strongroom.files.tree import open_tree
    from strongroom.protection.files import READER_CACHE
    from strongroom.testing import checkpoints

    with tempfile.TemporaryDirectory(dir=disk.parent) as tmp:
        reader = checkpoints.backed_up(disk, Path(tmp), chunk_size=CHUNK, cache_bytes=READER_CACHE,
                                       name="disk.img", link=True)
    expected = sorted(p.name for p in (src / "big").iterdir())

    started = time.perf_counter()
    tree = open_tree(reader)
    if profile:
        profiler = cProfile.Profile()
        listing = profiler.runcall(tree.list, "/big")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    else:
        listing = tree.list("/big")
    list_s = time.perf_counter() - started
    list_fetches = reader.fetches
    print(f"direct: list {list_s:.2f} s ({list_fetches} chunk fetches)", flush=True)
    assert [i.name for i in listing] == expected, "the listing misses names"
    sizes = {p.name: p.stat().st_size for p in (src / "big").iterdir()}
    assert all(i.size == sizes[i.name] and i.type == "file" for i in listing)

    started = time.perf_counter()
    tree = open_tree(reader)
    for name in expected:
        assert tree.stat(f"/big/{name}").size == sizes[name]
    stat_s = time.perf_counter() - started

    started = time.perf_counter()
    tree = open_tree(reader)
    for name in expected[::max(1, len(expected) // 50)]:
        data = tree.read(f"/big/{name}")
        assert hashlib.sha256(data).digest() == hashlib.sha256((src / "big" / name).read_bytes()).digest(), name
    read_s = time.perf_counter() - started
    return {"list_s": list_s, "list_fetches": list_fetches, "stat_all_s": stat_s, "read_50_s": read_s}


def api(src: Path, disk: Path) -> dict[str, Any]:
    import requests

    from tests.functional.harness import PROVIDER_ID, running_all_in_one, wait_for

    expected = sorted(p.name for p in (src / "big").iterdir())
    with tempfile.TemporaryDirectory(dir=disk.parent) as tmp, running_all_in_one(Path(tmp)) as service:
        (service.volumes / "disk.img").hardlink_to(disk)
        base = service.api()
        plan = requests.post(f"{base}/plans", json={"plan": {
            "name": "listing", "provider_id": PROVIDER_ID, "parameters": {},
            "resources": [{"id": "disk.img", "type": "OS::Cinder::Volume", "name": "disk.img"}]}}, timeout=30)
        plan.raise_for_status()
        created = requests.post(f"{base}/providers/{PROVIDER_ID}/checkpoints",
                                json={"checkpoint": {"plan_id": plan.json()["plan"]["id"]}}, timeout=30)
        created.raise_for_status()
        cp = wait_for(f"{base}/providers/{PROVIDER_ID}/checkpoints/{created.json()['checkpoint']['id']}",
                      "checkpoint", {"available", "error"}, timeout=600)
        assert cp["status"] == "available", cp
        key = urllib.parse.quote(RESOURCE, safe=":")
        url = f"{base}/providers/{PROVIDER_ID}/checkpoints/{cp['id']}/resources/{key}/files"
        out: dict[str, Any] = {}
        for label in ("first_s", "again_s"):
            started = time.perf_counter()
            got = requests.get(url, params={"path": "/big"}, timeout=1800)
            out[label] = time.perf_counter() - started
            assert got.status_code == 200, got.text[:500]
            assert sorted(f["name"] for f in got.json()["directory"]["files"]) == expected
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--only", choices=("direct", "api"), action="append")
    parser.add_argument("--profile", action="store_true", help="cProfile the direct listing")
    parser.add_argument("--rebuild", action="store_true", help="make the disk image again")
    parser.add_argument("--bench-dir", type=Path, default=ROOT / ".bench")
    args = parser.parse_args()
    work = args.bench_dir.resolve() / "listing"
    work.mkdir(parents=True, exist_ok=True)
    src, disk = build(work, args.entries, args.rebuild)
    only = args.only or ["direct", "api"]
    print(f"{args.entries} entries in /big, {DISK // MIB} MiB GPT disk, {CHUNK // MIB} MiB chunks", flush=True)
    if "direct" in only:
        d = direct(src, disk, args.profile)
        print(f"direct: stat of every entry {d['stat_all_s']:.2f} s, read of 50 files {d['read_50_s']:.2f} s")
    if "api" in only:
        a = api(src, disk)
        print(f"api: GET files?path=/big {a['first_s']:.2f} s (first), {a['again_s']:.2f} s (again)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
