"""Volume protection benchmark: Strongroom's data mover against restic and borg.

Run from the repository root with ``.venv/bin/python benchmarks/bench_volume.py``
(``make bench``).  Everything lives in ``.bench/``:

* ``volume.img`` -- a 1 GiB sparse image generated from a fixed seed (kept
  between runs): ~40% random data, ~20% text, ~20% written zeros and ~20% holes,
  interleaved in runs of 64 KiB to 8 MiB.
* ``volumes/vol1`` -- the working volume (a sparse copy of ``volume.img``) in a
  real LoopbackBackend; ``bank/`` -- a real FilesystemBank.
* ``restic/``, ``borg/`` -- the peers' repositories.
* ``ceph/`` -- a one-mon, one-OSD Ceph cluster (``tests/servers/ceph.py``, bluestore on a sparse file)
  whose pool holds the image as RBD image ``vol1``; ``qcow2/vol1.qcow2`` -- the image converted to qcow2
  (``qemu-img convert``), served by the qcow2 backend's own qemu-storage-daemon; ``bank-rbd/``,
  ``bank-qcow2/`` -- their FilesystemBanks.  These two rows protect and restore only.

Sequence, for every tool: full backup, restore (sha256 checked), then (a)
rewrite 1% of the 4 MiB blocks and back up again, then (b) rewrite 1% of the
4 KiB blocks at random places and back up again.  Every measured run is a
subprocess, so its peak RSS (``wait4``) is its own.  The table goes to stdout
and to ``.bench/results.md``.
"""

from __future__ import annotations

import argparse
import array
import dataclasses
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".bench"
IMAGE = BENCH / "volume.img"
VOLUMES = BENCH / "volumes"
VOLUME = VOLUMES / "vol1"
MIB = 1 << 20
SIZE = 1024 * MIB
SEED = 20261122
IMAGE_VERSION = f"v1-{SEED}-{SIZE}"
PASSWORD = "strongroom-bench"  # a throwaway password for throwaway repositories

TARGETS = {
    "protect": "protect no slower than restic",
    "restore": "restore no slower than restic",
    "incremental": "second protect (a) uploads < 5% of the first",
    "rss": "peak RSS < 512 MiB",
    "encryption": "full protect encrypted within 10% of clear",
}


# -- the test image ---------------------------------------------------------


def _text_source(rng: random.Random) -> list[bytes]:
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    weights = range(26, 0, -1)
    words = ["".join(rng.choices(letters, weights=weights, k=rng.randint(2, 9))) for _ in range(3000)]
    sentences = []
    for _ in range(65536):
        n = rng.randint(5, 14)
        sentence = " ".join(rng.choices(words, k=n)).capitalize() + rng.choice([".", ",", ";", ".\n"]) + " "
        sentences.append(sentence.encode())
    return sentences


def _text(rng: random.Random, sentences: list[bytes], length: int) -> bytes:
    idx = array.array("H", rng.randbytes(2 * (length // 40 + 2)))
    out = b"".join(map(sentences.__getitem__, idx))
    while len(out) < length:
        out += out
    return out[:length]


def generate_image(path: Path) -> None:
    """A deterministic 1 GiB sparse image (40% random, 20% text, 20% written zeros, 20% holes)."""
    rng = random.Random(SEED)
    sentences = _text_source(rng)
    kinds = ["random", "text", "zeros", "hole"]
    weights = [40, 20, 20, 20]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.truncate(SIZE)
        offset = 0
        while offset < SIZE:
            kind = rng.choices(kinds, weights)[0]
            length = min(rng.randint(1, 128) * 64 * 1024, SIZE - offset)
            if kind == "random":
                f.seek(offset)
                f.write(rng.randbytes(length))
            elif kind == "text":
                f.seek(offset)
                f.write(_text(rng, sentences, length))
            elif kind == "zeros":
                f.seek(offset)
                f.write(bytes(length))
            offset += length
        f.flush()
        os.fsync(f.fileno())
    tmp.rename(path)
    (path.parent / "volume.version").write_text(IMAGE_VERSION)


def rewrite_blocks(path: Path, block: int, fraction: float, seed: int) -> int:
    """Overwrite ``fraction`` of the image's ``block``-sized blocks (random places) with new random data."""
    rng = random.Random(seed)
    blocks = SIZE // block
    chosen = rng.sample(range(blocks), max(1, round(blocks * fraction)))
    with open(path, "r+b") as f:
        for index in sorted(chosen):
            f.seek(index * block)
            f.write(rng.randbytes(block))
        f.flush()
        os.fsync(f.fileno())
    return len(chosen)


def sparse_copy(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MIB):
            h.update(block)
    return h.hexdigest()


def tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total


def prefault(nbytes: int) -> float:
    """Touch ``nbytes`` of RAM once, then free it; return the seconds it took.

    On a VM the first touch of a guest page is expensive (a host fault; ~3 ms per MiB
    was measured here), and page cache pages are allocated on first touch too.
    Without this, whichever tool first writes new files (snapshot copies, repository
    packs, restored images) pays for the VM rather than for its own work.
    """
    import mmap

    started = time.monotonic()
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    step = 256 * MIB
    regions = []  # all held at once, or the kernel would hand back the same pages each time
    for _ in range(nbytes // step):
        region = mmap.mmap(-1, step, flags=flags)
        if not getattr(mmap, "MAP_POPULATE", 0):
            region.write(bytes(step))
        regions.append(region)
    for region in regions:
        region.close()
    return time.monotonic() - started


def prefault_in_child(nbytes: int) -> float:
    """:func:`prefault` in a child process: Linux passes a parent's peak RSS on to its
    children's ``ru_maxrss``, so the bench process itself must stay small."""
    code = f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import bench_volume as b; " \
           f"print(b.prefault({nbytes}))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(out)


# -- measuring --------------------------------------------------------------


@dataclasses.dataclass
class Row:
    tool: str
    operation: str
    seconds: float
    mib_s: float
    stored: int | None
    rss_mib: float
    note: str = ""


class Runner:
    """Popen + wait4 so that each run's rusage is its own."""

    def __call__(self, argv: Sequence[str], env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> tuple[float, float, str]:
        os.sync()  # the previous step's dirty pages must not be flushed on this run's time
        started = time.monotonic()
        with open(BENCH / ".out", "w+b") as out, open(BENCH / ".err", "w+b") as err:
            proc = subprocess.Popen(list(argv), stdout=out, stderr=err, env=env, cwd=cwd)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            seconds = time.monotonic() - started
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(), err.read().decode()
        if proc.returncode:
            raise RuntimeError(f"{' '.join(argv[:3])} failed ({proc.returncode}): {stderr[-2000:]}")
        return seconds, usage.ru_maxrss / 1024, stdout


run = Runner()


# -- the tools --------------------------------------------------------------


def durable(argv: list[str], restored: Path) -> list[str]:
    """``argv`` followed by an fsync of the restored file, in one measured child.

    Strongroom's restore ends with ``BlockWriter.flush()`` (fsync); restic and borg
    leave the restored data in dirty pages.  Timing every tool until its data is on
    disk compares the same work.
    """
    return ["sh", "-c", '"$@" && sync "$0"', str(restored), *argv]


class Tool:
    name = ""
    repo: Path
    #: Whether the tool takes part in the incremental backups (a) and (b) of ``volumes/vol1``.
    incremental = True

    def available(self) -> str | None:
        return None

    def setup(self) -> None:
        """Create the repository."""

    def backup(self, label: str) -> tuple[float, float]:
        """Back ``.bench/volumes/vol1`` up; return (seconds, peak RSS MiB)."""
        raise NotImplementedError

    def restore(self) -> tuple[float, float, Path]:
        """Restore the first backup; return (seconds, peak RSS MiB, restored file)."""
        raise NotImplementedError

    def stored(self) -> int:
        return tree_bytes(self.repo)

    def restored_digest(self, path: Path) -> str:
        return sha256_file(path)

    def remove_restored(self, path: Path) -> None:
        if path.is_relative_to(VOLUMES):
            path.unlink()
        else:
            shutil.rmtree(path.parent, ignore_errors=True)

    def teardown(self) -> None:
        """Stop what :meth:`setup` started."""


class Ours(Tool):
    name = "strongroom"

    def __init__(self, workers: int, level: int, hash_algo: str, chunk_size: int = 4 * MIB) -> None:
        self.repo = BENCH / "bank"
        self.opts = ["--workers", str(workers), "--level", str(level), "--hash", hash_algo,
                     "--chunk-size", str(chunk_size)]
        self.count = 0
        self.last: dict[str, object] = {}

    def _argv(self, *args: str) -> list[str]:
        return [sys.executable, str(ROOT / "benchmarks" / "_ours.py"), *args, *self.opts]

    def backup(self, label: str) -> tuple[float, float]:
        self.count += 1
        seconds, rss, out = run(self._argv("protect", str(BENCH), "vol1", f"cp{self.count}"))
        self.last = json.loads(out)
        return seconds, rss

    def restore(self) -> tuple[float, float, Path]:
        seconds, rss, _ = run(self._argv("restore", str(BENCH), "cp1", "restored"))
        return seconds, rss, VOLUMES / "restored"


class OursEncrypted(Ours):
    """Strongroom on loopback with the bank sealing what it stores, as the service does by default
    (AES-256-GCM per object, HMAC-SHA256 chunk ids, a key-encryption key in a local file)."""

    def __init__(self, workers: int, level: int, hash_algo: str, chunk_size: int = 4 * MIB) -> None:
        super().__init__(workers, level, hash_algo, chunk_size)
        self.name = "strongroom-encrypted"
        self.repo = BENCH / "bank-encrypted"
        self.opts += ["--bank", str(self.repo), "--encrypt"]

    def teardown(self) -> None:
        (BENCH / "key-encryption-keys.json").unlink(missing_ok=True)


class OursOn(Ours):
    """Strongroom on the rbd or qcow2 backend: the same data path, another block backend."""

    incremental = False

    def __init__(self, backend: str, workers: int, level: int, hash_algo: str, chunk_size: int = 4 * MIB) -> None:
        super().__init__(workers, level, hash_algo, chunk_size)
        self.backend = backend
        self.name = f"strongroom-{backend}"
        self.repo = BENCH / f"bank-{backend}"
        self.opts += ["--backend", backend, "--bank", str(self.repo)]
        self.cluster: Any = None
        self.pool = "bench"

    def available(self) -> str | None:
        sys.path.insert(0, str(ROOT))
        if self.backend == "rbd":
            from tests.servers import ceph

            missing = ceph.missing_packages()
        else:
            from tests.servers import qemu

            missing = qemu.missing_packages()
        return f"Debian packages missing: {', '.join(missing)}" if missing else None

    def setup(self) -> None:
        if self.backend == "rbd":
            self._setup_rbd()
        else:
            directory = BENCH / "qcow2"
            directory.mkdir()
            subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(IMAGE),
                            str(directory / "vol1.qcow2")], check=True)
            (BENCH / "qcow2.json").write_text(json.dumps({"path": str(directory)}))

    def _setup_rbd(self) -> None:
        import rbd

        from tests.servers.ceph import CephCluster

        started = time.monotonic()
        self.cluster = CephCluster(BENCH / "ceph", cephx=True, objectstore="bluestore", memstore_bytes=8 << 30)
        self.cluster.start()
        self.cluster.create_pool(self.pool)
        (BENCH / "rbd.json").write_text(json.dumps(self.cluster.backend_options(self.pool, op_timeout=60)))
        with self.cluster.admin().open_ioctx(self.pool) as ioctx:
            rbd.RBD().create(ioctx, "vol1", SIZE, old_format=False,
                             features=rbd.RBD_FEATURE_LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK
                             | rbd.RBD_FEATURE_OBJECT_MAP | rbd.RBD_FEATURE_FAST_DIFF)
            with rbd.Image(ioctx, "vol1") as image, open(IMAGE, "rb") as f:
                for offset, length in data_extents(f.fileno()):
                    for at in range(offset, offset + length, 8 * MIB):
                        image.write(os.pread(f.fileno(), min(8 * MIB, offset + length - at), at), at)
                image.flush()
        self.started = time.monotonic() - started

    def restore(self) -> tuple[float, float, Path]:
        seconds, rss, _ = run(self._argv("restore", str(BENCH), "cp1", "restored"))
        return seconds, rss, Path("restored")

    def restored_digest(self, path: Path) -> str:
        if self.backend == "qcow2":
            raw = BENCH / "qcow2-restored.raw"
            subprocess.run(["qemu-img", "convert", "-q", "-f", "qcow2", "-O", "raw",
                            str(BENCH / "qcow2" / "restored.qcow2"), str(raw)], check=True)
            try:
                return sha256_file(raw)
            finally:
                raw.unlink()
        # Read back by the rbd tool, in a child: pages librbd took in this process would count in the peak
        # RSS of every later run (a child's ru_maxrss starts from its parent's).
        h = hashlib.sha256()
        argv = ["rbd", "--conf", str(self.cluster.conf_path), "--keyring", str(self.cluster.admin_keyring),
                "--id", "admin", "export", f"{self.pool}/restored", "-"]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
            assert proc.stdout is not None
            while block := proc.stdout.read(8 * MIB):
                h.update(block)
        if proc.returncode:
            raise RuntimeError(f"rbd export failed ({proc.returncode})")
        return h.hexdigest()

    def remove_restored(self, path: Path) -> None:
        if self.backend == "qcow2":
            (BENCH / "qcow2" / "restored.qcow2").unlink()
            return
        import rbd

        with self.cluster.admin().open_ioctx(self.pool) as ioctx:
            rbd.RBD().remove(ioctx, "restored")

    def teardown(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None


def data_extents(fd: int) -> list[tuple[int, int]]:
    """``(offset, length)`` of the file's data (``SEEK_DATA``/``SEEK_HOLE``): its holes are not copied."""
    out, offset, end = [], 0, os.fstat(fd).st_size
    while offset < end:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError:
            break
        stop = os.lseek(fd, start, os.SEEK_HOLE)
        out.append((start, stop - start))
        offset = stop
    return out


class Restic(Tool):
    name = "restic"

    def __init__(self) -> None:
        self.repo = BENCH / "restic"
        self.env = dict(os.environ, RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=str(self.repo),
                        RESTIC_CACHE_DIR=str(BENCH / "restic-cache"))

    def available(self) -> str | None:
        return None if shutil.which("restic") else "restic is not installed"

    def setup(self) -> None:
        run(["restic", "init"], env=self.env)  # repository v2: zstd compression (auto), AES-256 always

    def backup(self, label: str) -> tuple[float, float]:
        seconds, rss, _ = run(["restic", "backup", "--quiet", "--compression", "auto", "vol1"], env=self.env,
                              cwd=VOLUMES)
        return seconds, rss

    def restore(self) -> tuple[float, float, Path]:
        target = BENCH / "restic-restore"
        restored = target / "vol1"  # restic keeps the relative path it was given
        seconds, rss, _ = run(durable(["restic", "restore", "latest", "--target", str(target)], restored),
                              env=self.env)
        return seconds, rss, restored


class Borg(Tool):
    name = "borg"

    def __init__(self) -> None:
        self.repo = BENCH / "borg"
        self.env = dict(os.environ, BORG_PASSPHRASE=PASSWORD, BORG_REPO=str(self.repo),
                        BORG_BASE_DIR=str(BENCH / "borg-home"), BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")
        self.count = 0

    def available(self) -> str | None:
        return None if shutil.which("borg") else "borg is not installed"

    def setup(self) -> None:
        run(["borg", "init", "--encryption=repokey"], env=self.env)

    def backup(self, label: str) -> tuple[float, float]:
        self.count += 1
        seconds, rss, _ = run(["borg", "create", "--compression", "zstd,3", f"::b{self.count}", "vol1"],
                              env=self.env, cwd=VOLUMES)
        return seconds, rss

    def restore(self) -> tuple[float, float, Path]:
        target = BENCH / "borg-restore"
        target.mkdir()
        restored = target / "vol1"
        seconds, rss, _ = run(durable(["borg", "extract", "--sparse", "::b1"], restored), env=self.env,
                              cwd=target)
        return seconds, rss, restored


# -- the run ----------------------------------------------------------------


def _mib_s(nbytes: int, seconds: float) -> float:
    return nbytes / MIB / seconds if seconds > 0 else float("inf")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--level", type=int, default=3)
    parser.add_argument("--hash", default="sha256")
    parser.add_argument("--chunk-size", type=int, default=4 * MIB, help="Strongroom's chunk size in bytes")
    parser.add_argument("--only", choices=["strongroom", "strongroom-encrypted", "strongroom-rbd", "strongroom-qcow2",
                                           "restic", "borg"],
                        action="append")
    parser.add_argument("--restore-runs", type=int, default=2,
                        help="restores per tool; the fastest is reported (the first run of any tool "
                             "may pay for first-touch page faults of the VM)")
    parser.add_argument("--prefault-gib", type=int, default=0,
                        help="RAM to touch once before measuring (0: none); see prefault()")
    args = parser.parse_args(argv)

    if os.geteuid() == 0 and not (shutil.which("restic") and shutil.which("borg")):
        subprocess.run(["apt-get", "install", "-y", "restic", "borgbackup"], check=False)

    BENCH.mkdir(exist_ok=True)
    version = BENCH / "volume.version"
    if not IMAGE.exists() or not version.exists() or version.read_text() != IMAGE_VERSION:
        print("generating .bench/volume.img ...", flush=True)
        generate_image(IMAGE)
    original = sha256_file(IMAGE)

    tools: list[Tool] = [Ours(args.workers, args.level, args.hash, args.chunk_size),
                         OursEncrypted(args.workers, args.level, args.hash, args.chunk_size),
                         OursOn("rbd", args.workers, args.level, args.hash, args.chunk_size),
                         OursOn("qcow2", args.workers, args.level, args.hash, args.chunk_size), Restic(), Borg()]
    notes: list[str] = []
    active: list[Tool] = []
    for tool in tools:
        if args.only and tool.name not in args.only:
            continue
        missing = tool.available()
        if missing:
            notes.append(f"{tool.name} skipped: {missing}")
        else:
            active.append(tool)

    (BENCH / "key-encryption-keys.json").unlink(missing_ok=True)
    for stale in ("volumes", "bank", "bank-encrypted", "bank-rbd", "bank-qcow2", "ceph", "qcow2", "restic",
                  "restic-cache", "restic-restore", "borg", "borg-home", "borg-restore"):
        shutil.rmtree(BENCH / stale, ignore_errors=True)
    VOLUMES.mkdir()
    sparse_copy(IMAGE, VOLUME)
    if args.prefault_gib:
        seconds = prefault_in_child(args.prefault_gib << 30)
        notes.append(f"{args.prefault_gib} GiB of RAM pre-faulted before measuring ({seconds:.1f}s)")

    try:
        return _measure(active, notes, original, args)
    finally:
        for tool in active:
            tool.teardown()


def _measure(active: list[Tool], notes: list[str], original: str, args: argparse.Namespace) -> int:
    rows: list[Row] = []
    first_stored: dict[str, int] = {}
    for tool in active:
        tool.setup()
        if isinstance(tool, OursOn) and tool.cluster is not None:
            notes.append(f"{tool.name}: Ceph cluster started and the image written to RBD in {tool.started:.1f}s")

    def backup_all(op: str) -> None:
        for tool in active:
            if op != "protect" and not tool.incremental:
                continue
            before = tool.stored()
            seconds, rss = tool.backup(op)
            stored = tool.stored() - before
            note = ""
            if isinstance(tool, Ours):
                note = f"snapshot {tool.last['snapshot_method']} {tool.last['snapshot_seconds']:.2f}s"
            if op == "protect":
                first_stored[tool.name] = stored
            else:
                note = f"{100 * stored / first_stored[tool.name]:.2f}% of first; " + note
            rows.append(Row(tool.name, op, seconds, _mib_s(SIZE, seconds), stored, rss, note.strip("; ")))
            print(f"  {tool.name:10} {op:13} {seconds:6.2f}s {stored / MIB:8.1f} MiB stored", flush=True)

    print("full backups ...", flush=True)
    backup_all("protect")
    print("restores ...", flush=True)
    for tool in active:
        times = []
        for _ in range(args.restore_runs):
            seconds, rss, path = tool.restore()
            ok = tool.restored_digest(path) == original
            times.append(seconds)
            print(f"  {tool.name:10} restore       {seconds:6.2f}s {'ok' if ok else 'MISMATCH'}", flush=True)
            if not ok:
                notes.append(f"{tool.name}: restored image differs from the original")
            tool.remove_restored(path)
        note = "sha256 OK" if ok else "SHA256 MISMATCH"
        if len(times) > 1:
            note += f"; best of {', '.join(f'{t:.2f}' for t in times)}"
        rows.append(Row(tool.name, "restore", min(times), _mib_s(SIZE, min(times)), None, rss, note))

    n = rewrite_blocks(VOLUME, 4 * MIB, 0.01, SEED + 1)
    notes.append(f"(a): {n} of {SIZE // (4 * MIB)} 4 MiB blocks rewritten with random data")
    print("(a) 1% of 4 MiB blocks changed ...", flush=True)
    backup_all("protect (a)")
    n = rewrite_blocks(VOLUME, 4096, 0.01, SEED + 2)
    notes.append(f"(b): {n} of {SIZE // 4096} 4 KiB blocks rewritten at random places (after (a))")
    print("(b) 1% of 4 KiB blocks changed ...", flush=True)
    backup_all("protect (b)")

    report = render(rows, notes, args)
    print()
    print(report)
    (BENCH / "results.md").write_text(report)
    return 0


def _verdicts(rows: list[Row]) -> list[tuple[str, str, str]]:
    def find(tool: str, op: str) -> Row | None:
        return next((r for r in rows if r.tool == tool and r.operation == op), None)

    out: list[tuple[str, str, str]] = []
    for op in ("protect", "restore"):
        ours, restic = find("strongroom", op), find("restic", op)
        if ours and restic:
            ok = ours.seconds <= restic.seconds
            measured = f"{ours.seconds:.2f}s vs {restic.seconds:.2f}s"
            out.append((TARGETS[op], measured, "PASS" if ok else "FAIL"))
        else:
            out.append((TARGETS[op], "restic not measured", "n/a"))
    clear, sealed = find("strongroom", "protect"), find("strongroom-encrypted", "protect")
    if clear and sealed:
        ratio = sealed.seconds / clear.seconds
        out.append((TARGETS["encryption"], f"{sealed.seconds:.2f}s vs {clear.seconds:.2f}s ({ratio:.2f}x)",
                    "PASS" if ratio <= 1.10 else "FAIL"))
    first, second = find("strongroom", "protect"), find("strongroom", "protect (a)")
    if first and second and first.stored:
        ratio = 100 * (second.stored or 0) / first.stored
        out.append((TARGETS["incremental"], f"{ratio:.2f}%", "PASS" if ratio < 5 else "FAIL"))
    peak = max((r.rss_mib for r in rows if r.tool == "strongroom"), default=0.0)
    out.append((TARGETS["rss"], f"{peak:.0f} MiB", "PASS" if peak < 512 else "FAIL"))
    return out


def render(rows: list[Row], notes: list[str], args: argparse.Namespace) -> str:
    lines = [
        "# Volume protection benchmark",
        "",
        f"1 GiB image (40% random, 20% text, 20% written zeros, 20% holes), seed {SEED}; "
        f"{os.cpu_count()} CPUs.",
        f"strongroom: LoopbackBackend + FilesystemBank, {args.chunk_size // 1024} KiB fixed chunks, {args.hash}, "
        f"zstd level "
        f"{args.level}, {args.workers} workers; protect includes the snapshot.",
        "strongroom-rbd: the same on RbdBackend (one-OSD Ceph, bluestore on a file, this host) and "
        "strongroom-qcow2 on Qcow2Backend (its own qemu-storage-daemon, read over NBD); protect and "
        "restore only.",
        "restic: repository v2 (AES-256 + zstd auto), content-defined chunks. "
        "borg: --encryption=repokey (AES-256), --compression zstd,3.",
        "The image is in the page cache for every tool; dirty pages are synced before each run, and",
        "every restore is timed until the restored file is fsynced.",
        "Bytes stored = growth of the repository directory.",
        "",
        "| tool | operation | seconds | MiB/s | bytes stored | peak RSS MiB | note |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        stored = f"{r.stored:,}" if r.stored is not None else ""
        lines.append(f"| {r.tool} | {r.operation} | {r.seconds:.2f} | {r.mib_s:.0f} | {stored} | "
                     f"{r.rss_mib:.0f} | {r.note} |")
    lines += ["", "| target | measured | result |", "| --- | --- | --- |"]
    lines += [f"| {t} | {m} | {v} |" for t, m, v in _verdicts(rows)]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
