"""Data-path measurements behind the defaults of ``doc/data-path.md``: compression, durability, memory.

Run from the repository root (not part of ``make bench``)::

    .venv/bin/python benchmarks/bench_datapath.py codec [--chunk-size N] [--mib N] [--repeat N]
    .venv/bin/python benchmarks/bench_datapath.py fsync [--objects 256] [--object-kib 2048]
    .venv/bin/python benchmarks/bench_datapath.py rss [--runs 10] [--workers 3] [--callers 4] [--same-project]
    .venv/bin/python benchmarks/bench_datapath.py aio [--runs 10] [--change]

``codec`` cuts two samples into chunks: ``.bench/volume.img`` (the image of ``bench_volume.py``:
random, text, zeros) and a sample of this machine's real files (``/usr``: binaries, libraries,
scripts, compressed documentation, in directory order).  For each compression setting it prints
the single-thread CPU time to compress every non-zero chunk and the bytes stored, with and without
the incompressibility probe.

``rss`` runs ``datamover.backup`` of the 1 GiB ``.bench/volume.img`` (through a real
``LoopbackBackend`` snapshot into a real ``FilesystemBank``) ``--runs`` times in this one process
and prints the process's RSS after each run and its peak (``VmHWM``).  Each run backs up into a
new project, so every run stores every chunk (a full protect), unless ``--same-project``; the runs
take turns on ``--callers`` long-lived threads, as a service's protects do.

``fsync`` writes chunk-like objects into a ``FilesystemBank`` with an ``fsync`` per put, then with
deferred puts and one barrier.  ``aio`` starts the real ``strongroom-all-in-one`` (as
``bench_api_load.py`` does) with the 1 GiB image as a loopback volume, protects it ``--runs`` times
(``--change``: rewriting ~1% of its 4 KiB blocks before each) and prints the service's RSS after each
protect, by kind of mapping (glibc's main heap, its thread arenas, other anonymous memory, files).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MIB = 1 << 20


def _status(field: str) -> float:
    """A ``/proc/self/status`` field in MiB (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def smaps(pid: int | str = "self") -> dict[str, float]:
    """Resident MiB of a process by kind of mapping: glibc's main heap, its thread arenas (mappings
    aligned on 64 MiB), other anonymous memory (Python's object arenas, mmap'd buffers) and files."""
    out = {"heap": 0.0, "arenas": 0.0, "anon": 0.0, "files": 0.0}
    kind = "anon"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
                start = int(fields[0].split("-")[0], 16)
                name = fields[5] if len(fields) > 5 else ""
                kind = ("heap" if name == "[heap]" else "files" if name.startswith("/") else
                        "anon" if name else "arenas" if start % (64 * MIB) == 0 else "anon")
            elif fields[0] == "Rss:":
                out[kind] += int(fields[1]) / 1024
    return out


def _image() -> Path:
    import bench_volume

    bench_volume.BENCH.mkdir(exist_ok=True)
    version = bench_volume.BENCH / "volume.version"
    if not bench_volume.IMAGE.exists() or not version.exists() \
            or version.read_text() != bench_volume.IMAGE_VERSION:
        print("generating .bench/volume.img ...", flush=True)
        bench_volume.generate_image(bench_volume.IMAGE)
    return bench_volume.IMAGE


def _image_chunks(chunk_size: int, limit: int) -> list[bytes]:
    out = []
    with open(_image(), "rb") as f:
        while len(out) * chunk_size < limit and (data := f.read(chunk_size)):
            if data.count(0) != len(data):
                out.append(data)
    return out


def _file_chunks(chunk_size: int, limit: int, top: str = "/usr") -> list[bytes]:
    """Real files concatenated as a filesystem would hold them, cut into chunks."""
    buf = bytearray()
    out: list[bytes] = []
    for dirpath, dirnames, files in os.walk(top):
        dirnames.sort()
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            try:
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                with open(path, "rb") as f:
                    buf += f.read()
            except OSError:
                continue
            buf += bytes(-len(buf) % 4096)  # files start on block boundaries
            while len(buf) >= chunk_size:
                out.append(bytes(buf[:chunk_size]))
                del buf[:chunk_size]
                if len(out) * chunk_size >= limit:
                    return out
    return out


def codec(args: argparse.Namespace) -> None:
    from strongroom.datamover import compression

    settings = [("none", 0, False)] + [("zstd", lvl, probe) for lvl in (-5, -3, -1, 1, 3)
                                       for probe in (False, True)]
    limit = args.mib * MIB
    samples = {"bench image": _image_chunks(args.chunk_size, limit),
               "real files (/usr)": _file_chunks(args.chunk_size, limit)}
    print(f"chunk size {args.chunk_size}, best of {args.repeat}")
    for label, chunks in samples.items():
        total = sum(map(len, chunks))
        print(f"\n{label}: {len(chunks)} non-zero chunks, {total / MIB:.0f} MiB")
        print(f"{'setting':18} {'cpu s':>7} {'MiB/s':>7} {'stored MiB':>11} {'ratio':>6} {'raw chunks':>10}")
        for name, level, probe in settings:
            codec_ = compression.Codec(name, level, probe=probe)
            best = float("inf")
            stored = raw = 0
            for _ in range(args.repeat):
                started = time.thread_time()
                stored = raw = 0
                for chunk in chunks:
                    payload, method = codec_.compress(chunk)
                    stored += len(payload)
                    raw += method == compression.NONE
                best = min(best, time.thread_time() - started)
            what = f"{name}" if name == "none" else f"zstd {level}{' +probe' if probe else ''}"
            print(f"{what:18} {best:7.2f} {total / MIB / best if best else 0:7.0f} {stored / MIB:11.1f} "
                  f"{stored / total:6.3f} {raw:10d}", flush=True)


def rss(args: argparse.Namespace) -> None:
    from strongroom.bank_plugins.bank import Bank
    from strongroom.bank_plugins.fs import FilesystemBank
    from strongroom.block.loopback import LoopbackBackend

    image = _image()
    work = ROOT / ".bench" / "datapath-rss"
    shutil.rmtree(work, ignore_errors=True)
    (work / "volumes").mkdir(parents=True)
    os.system(f"cp --sparse=always {image} {work / 'volumes' / 'vol1'}")  # noqa: S605 - fixed paths
    backend = LoopbackBackend({"path": str(work / "volumes")})
    bank = Bank(FilesystemBank({"path": str(work / "bank")}), name="rss")
    print(f"before: RSS {_status('VmRSS'):.0f} MiB", flush=True)
    # A service runs each protect on one of its long-lived threads (flow, job and conductor pools):
    # run i goes to caller i % --callers, a thread that lives for the whole measurement.
    callers = [_Caller() for _ in range(args.callers)]
    for run in range(1, args.runs + 1):
        callers[run % len(callers)].call(_one_run, args, run, backend, bank)
    for caller in callers:
        caller.stop()
    backend.close()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


class _Caller:
    """A long-lived thread that runs one call at a time."""

    def __init__(self) -> None:
        import queue
        import threading

        self.requests: queue.Queue[Any] = queue.Queue()
        self.results: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (request := self.requests.get()) is not None:
            func, args = request
            try:
                self.results.put((func(*args), None))
            except BaseException as err:  # noqa: BLE001 - handed back to the caller
                self.results.put((None, err))

    def call(self, func: Any, *args: Any) -> Any:
        self.requests.put((func, args))
        result, err = self.results.get()
        if err is not None:
            raise err
        return result

    def stop(self) -> None:
        self.requests.put(None)
        self.thread.join()


def _one_run(args: argparse.Namespace, run: int, backend: Any, bank: Any) -> None:
    from strongroom.datamover import ChunkStore, backup

    project = "p" if args.same_project else f"p{run}"
    store = ChunkStore(bank.section(f"projects/{project}/chunks"), compression_level=args.level)
    started = time.monotonic()
    snapshot = backend.create_snapshot("vol1")
    try:
        with backend.reading_snapshot(snapshot.id) as reader:
            result = backup(reader, store, bank.section(f"checkpoints/c{run}/data"), workers=args.workers,
                            chunk_size=args.chunk_size)
    finally:
        backend.delete_snapshot(snapshot.id)
    parts = ", ".join(f"{k} {v:.0f}" for k, v in smaps().items())
    print(f"run {run:2}: {time.monotonic() - started:5.2f} s, {result.new_chunks:4} new chunks, "
          f"RSS {_status('VmRSS'):4.0f} MiB, peak {_status('VmHWM'):4.0f} MiB ({parts})", flush=True)


def durability(args: argparse.Namespace) -> None:
    """Chunk-like objects into a FilesystemBank: fsync per put against deferred puts and one barrier."""
    from strongroom.bank_plugins.fs import FilesystemBank

    work = ROOT / ".bench" / "datapath-fsync"
    payload = os.urandom(args.object_kib * 1024)
    print(f"{args.objects} objects of {args.object_kib} KiB, 256 directories, best of {args.repeat}")
    for mode in ("fsync per put", "deferred + barrier"):
        times = []
        for _ in range(args.repeat):
            shutil.rmtree(work, ignore_errors=True)
            bank = FilesystemBank({"path": str(work)})
            os.sync()
            started = time.monotonic()
            for i in range(args.objects):
                key = f"chunks/{i % 256:02x}/{i:064x}"
                if mode == "fsync per put":
                    bank.put_object(key, payload[:-1] + bytes([i % 256]), {"size": "1"})
                else:
                    bank.put_object_deferred(key, payload[:-1] + bytes([i % 256]), {"size": "1"})
            bank.barrier()
            times.append(time.monotonic() - started)
        print(f"  {mode:20} best {min(times):6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times)})", flush=True)
    shutil.rmtree(work, ignore_errors=True)


def aio(args: argparse.Namespace) -> None:
    """Ten protects through the real all-in-one, its RSS after each."""
    import random

    import bench_api_load
    import bench_volume
    import requests

    image = _image()
    work = ROOT / ".bench" / "datapath-aio"
    shutil.rmtree(work, ignore_errors=True)
    state = work / "state"
    (state / "volumes").mkdir(parents=True)
    volume = state / "volumes" / "vol1.img"
    os.system(f"cp --sparse=always {image} {volume}")  # noqa: S605 - fixed paths
    bench_api_load.WORK = work
    service = bench_api_load.AllInOne(state, 8)
    service.start()
    assert service.process is not None
    pid = service.process.pid
    headers = {"X-Auth-Token": "rss"}
    api = f"{service.url}/v1/rss"
    provider = bench_api_load.PROVIDER_ID

    def status(field: str) -> float:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return 0.0

    try:
        plan = requests.post(f"{api}/plans", headers=headers, timeout=60, json={"plan": {
            "name": "rss", "provider_id": provider,
            "resources": [{"id": "vol1.img", "type": bench_api_load.VOLUME_TYPE}]}}).json()["plan"]["id"]
        parts = ", ".join(f"{k} {v:.0f}" for k, v in smaps(pid).items())
        print(f"started: RSS {status('VmRSS'):.0f} MiB ({parts})", flush=True)
        rng = random.Random(bench_volume.SEED)
        for run in range(1, args.runs + 1):
            if run > 1 and args.change:
                with open(volume, "r+b") as f:  # ~1% of the 4 KiB blocks, as a running machine would
                    for index in rng.sample(range(bench_volume.SIZE // 4096), bench_volume.SIZE // 4096 // 100):
                        f.seek(index * 4096)
                        f.write(rng.randbytes(4096))
            started = time.monotonic()
            cid = requests.post(f"{api}/providers/{provider}/checkpoints", headers=headers, timeout=60,
                                json={"checkpoint": {"plan_id": plan}}).json()["checkpoint"]["id"]
            while True:
                cp = requests.get(f"{api}/providers/{provider}/checkpoints/{cid}", headers=headers,
                                  timeout=60).json()["checkpoint"]
                if cp["status"] != "protecting":
                    break
                time.sleep(0.2)
            parts = ", ".join(f"{k} {v:.0f}" for k, v in smaps(pid).items())
            print(f"run {run:2}: {cp['status']} in {time.monotonic() - started:5.2f} s, "
                  f"RSS {status('VmRSS'):4.0f} MiB, peak {status('VmHWM'):4.0f} MiB ({parts})", flush=True)
    finally:
        service.stop()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("codec")
    c.add_argument("--mib", type=int, default=256, help="MiB of each sample")
    c.add_argument("--repeat", type=int, default=2)
    r = sub.add_parser("rss")
    r.add_argument("--runs", type=int, default=10)
    r.add_argument("--workers", type=int, default=3)
    r.add_argument("--level", type=int, default=3)
    r.add_argument("--same-project", action="store_true")
    r.add_argument("--callers", type=int, default=4, help="long-lived threads the runs take turns on")
    r.add_argument("--keep", action="store_true")
    a = sub.add_parser("aio")
    a.add_argument("--runs", type=int, default=10)
    a.add_argument("--change", action="store_true", help="rewrite ~1%% of the 4 KiB blocks before each run")
    a.add_argument("--keep", action="store_true")
    d = sub.add_parser("fsync")
    d.add_argument("--objects", type=int, default=256)
    d.add_argument("--object-kib", type=int, default=2048)
    d.add_argument("--repeat", type=int, default=3)
    for each in (c, r):
        each.add_argument("--chunk-size", type=int, default=4 * MIB)
    args = parser.parse_args()
    {"codec": codec, "rss": rss, "aio": aio, "fsync": durability}[args.command](args)


if __name__ == "__main__":
    main()
