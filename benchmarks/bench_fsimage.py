"""A real filesystem image protected through the service, beside restic and borg in the same run.

Run from the repository root as root (it loop-mounts images) with ``.venv/bin/python
benchmarks/bench_fsimage.py`` (``make bench-fsimage``).  Everything lives in ``.bench/``:

* ``fsimage-cache/base-<size>.img`` -- the workload, built once and kept: a sparse file of ``--size-gib``
  (3) formatted ext4 (fixed UUID and hash seed), loop-mounted and filled with ~1.8 GB of ordinary files
  copied from this machine's trees in a fixed order (the pyenv Python, the project's venv, /usr/share,
  /usr/lib), plus a few log files; unmounted.
* ``fsimage/`` -- one run's state: the working image ``loopback/volumes/disk.img`` (restic and borg back up
  this file), each backend's all-in-one (state dir, provider file, filesystem bank), the peers' repositories.

The sequence, for every Strongroom backend (each its own ``strongroom-all-in-one``, driven by the
``strongroom`` CLI: plan create, checkpoint create --wait, restore create --wait) and for restic and borg:

1. full protect;
2. protect after a ~1% change: the image is mounted and changed as a running machine changes its disk
   (logs appended, files rewritten in place and replaced, new files, deleted files, metadata touched; about
   1% of the used bytes, fixed by ``--seed``), then unmounted;
3. protect with nothing changed;
4. restore of the last checkpoint, checked by sha256 against the image;
5. Strongroom only: more protects (a ~1% change before every other one) up to ``--runs`` (10) in a row,
   with the service's RSS sampled (psutil, every 50 ms) for the peak of each run.

The rbd volume (image ``disk`` in a one-mon, one-OSD Ceph of ``tests/servers/ceph.py``), the qcow2 volume
(``disk.qcow2``, served by the backend's own qemu-storage-daemon) and the loopback volume on a loop-mounted
XFS (reflink snapshots) hold the same image; every change made to the ext4 image file is written into them
too, as the 4 KiB blocks that differ (what a VM would have written).  Bytes stored = growth of each
repository's disk usage (du).  The tables (one per backend, ratios against restic and borg, PASS/FAIL
against issue 12's targets) go to stdout and ``.bench/fsimage-results.md``; the figures to
``.bench/fsimage-results-<size>.json``, which a later run at another ``--size-gib`` compares with.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from strongroom.protection.plugins import volume as volume_plugin

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MIB = 1 << 20
GIB = 1 << 30
BLOCK = 4096
PASSWORD = "strongroom-bench"  # a throwaway password for throwaway repositories
FS_UUID = "5f1c0b9e-3a47-4d21-9c58-2e7d6b1a0f33"
IMAGE_VERSION = "fsimage-v1"
BACKENDS = ("loopback", "loopback-xfs", "rbd", "qcow2")
PEERS = ("restic", "borg")
VOLUME_TYPE = "OS::Cinder::Volume"


def default_sources() -> list[Path]:
    return [Path(sys.base_prefix), ROOT / ".venv", Path("/usr/share"), Path("/usr/lib")]


# -- running things ----------------------------------------------------------


def sh(*argv: str | Path, **kw: Any) -> str:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)
    if result.returncode:
        raise RuntimeError(f"{' '.join(map(str, argv[:4]))} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


class Sampler:
    """Peak RSS of a process (and its children) sampled every ``interval`` seconds while it is used."""

    def __init__(self, pid: int, children: bool, interval: float = 0.05) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.children = children
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        import psutil

        try:
            total = self.process.memory_info().rss
            if self.children:
                for child in self.process.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        total += child.memory_info().rss
            return total
        except psutil.Error:
            return 0

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.rss())
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(argv: Sequence[str | Path], env: dict[str, str] | None = None,
          cwd: Path | None = None) -> tuple[float, int, str]:
    """Run ``argv``; (seconds, peak RSS of its process tree, stdout).  Dirty pages are synced first."""
    os.sync()
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([str(a) for a in argv], stdout=out, stderr=err, env=env, cwd=cwd)
        with Sampler(proc.pid, children=True) as sampler:
            proc.wait()
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(map(str, argv[:3]))} failed ({proc.returncode}): {stderr[-2000:]}")
    return seconds, sampler.peak, stdout


def disk_usage(path: Path) -> int:
    """Bytes the tree takes on disk (what ``du`` counts)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MIB):
            h.update(block)
    return h.hexdigest()


def sha256_stream(argv: Sequence[str | Path]) -> str:
    h = hashlib.sha256()
    with subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        while block := proc.stdout.read(8 * MIB):
            h.update(block)
    if proc.returncode:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode})")
    return h.hexdigest()


def data_extents(fd: int) -> list[tuple[int, int]]:
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


def sparse_copy(src: Path, dst: Path) -> None:
    sh("cp", "--sparse=always", src, dst)


@contextlib.contextmanager
def mounted(image: Path, mountpoint: Path, options: str = "loop") -> Iterator[Path]:
    mountpoint.mkdir(parents=True, exist_ok=True)
    sh("mount", "-o", options, image, mountpoint)
    try:
        yield mountpoint
    finally:
        for attempt in range(20):
            result = subprocess.run(["umount", str(mountpoint)], capture_output=True, text=True)
            if result.returncode == 0:
                break
            time.sleep(0.25 * (attempt + 1))
        else:
            raise RuntimeError(f"umount {mountpoint}: {result.stderr}")


# -- the workload ------------------------------------------------------------


def file_list(sources: Sequence[Path], fill: int) -> list[str]:
    """Paths (relative to /) of directories, files and symlinks from ``sources`` in a fixed order, until their
    sizes add up to ``fill`` bytes."""
    chosen: list[str] = []
    total = 0
    for source in sources:
        if not source.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames.sort()
            rel = os.path.relpath(dirpath, "/")
            chosen.append(rel)
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if not (os.path.isfile(path) or os.path.islink(path)) or not os.access(path, os.R_OK):
                    continue
                chosen.append(os.path.relpath(path, "/"))
                if not os.path.islink(path):
                    total += st.st_size
                if total >= fill:
                    return chosen
    return chosen


def log_line(rng: random.Random, n: int) -> bytes:
    services = ["sshd", "cron", "nginx", "postgres", "kernel", "systemd", "app"]
    words = ["started", "stopped", "connection from", "accepted", "GET /api/v1/items", "checkpoint complete",
             "session opened for user", "disk usage", "request took", "retrying"]
    return (f"2026-12-02T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d} host "
            f"{rng.choice(services)}[{rng.randint(100, 99999)}]: {rng.choice(words)} "
            f"{rng.randint(0, 10**9)} id={rng.getrandbits(64):016x}\n").encode()


def build_base(path: Path, size: int, fill: int, sources: Sequence[Path], seed: int) -> None:
    """The sparse ext4 image with ``fill`` bytes of ordinary files and some logs."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb") as f:
        f.truncate(size)
    sh("mkfs.ext4", "-q", "-F", "-U", FS_UUID, "-L", "benchfs",
       "-E", f"lazy_itable_init=0,lazy_journal_init=0,nodiscard,hash_seed={FS_UUID}", tmp)
    files = file_list(sources, fill)
    with tempfile.TemporaryDirectory(dir=path.parent) as mnt, mounted(tmp, Path(mnt)) as root:
        listing = path.with_suffix(".list")
        listing.write_bytes(b"\0".join(os.fsencode(f) for f in files) + b"\0")
        copy = f"tar -C / --no-recursion --null -T {listing} -cf - 2>/dev/null | tar -C {root} -xpf -"
        subprocess.run(["sh", "-c", copy], check=False)  # files that vanished meanwhile are left out
        rng = random.Random(seed)
        logs = root / "var" / "log"
        logs.mkdir(parents=True, exist_ok=True)
        for name in ("syslog", "auth.log", "nginx-access.log", "app.log"):
            with open(logs / name, "wb") as f:
                f.write(b"".join(log_line(rng, n) for n in range(20000)))
        (root / "home" / "user").mkdir(parents=True, exist_ok=True)
    os.sync()
    tmp.rename(path)


def regular_files(root: Path) -> list[tuple[Path, int]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if dirpath == str(root):
            dirnames[:] = [d for d in dirnames if d != "lost+found"]
        for name in sorted(filenames):
            path = Path(dirpath, name)
            st = path.lstat()
            if path.is_file() and not path.is_symlink():
                out.append((path, st.st_size))
    return out


def change_filesystem(image: Path, mountpoint: Path, fraction: float, seed: int) -> dict[str, int]:
    """Mount ``image`` and change about ``fraction`` of its used bytes as a running machine would."""
    rng = random.Random(seed)
    stats = dict(appended=0, rewritten_in_place=0, replaced=0, created=0, deleted=0, touched=0, bytes=0)
    with mounted(image, mountpoint) as root:
        vfs = os.statvfs(root)
        budget = int((vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize * fraction)
        files = regular_files(root)
        # Logs: appended (15%).
        logs = sorted((root / "var" / "log").glob("*.log")) + [root / "var" / "log" / "syslog"]
        spent, n = 0, seed * 100000
        while spent < budget * 0.15:
            lines = b"".join(log_line(rng, n + i) for i in range(200))
            n += 200
            with open(rng.choice(logs), "ab") as f:
                f.write(lines)
            spent += len(lines)
        stats["appended"] = spent
        # Database-like files: 4 KiB pages rewritten in place (30%).
        big = [(p, s) for p, s in files if s >= 256 * 1024]
        spent = 0
        while spent < budget * 0.30 and big:
            path, size = rng.choice(big)
            with open(path, "r+b") as f:
                for _ in range(rng.randint(1, 32)):
                    f.seek(rng.randrange(size // BLOCK) * BLOCK)
                    f.write(rng.randbytes(BLOCK))
                    spent += BLOCK
            stats["rewritten_in_place"] += 1
        written = spent
        # Package-upgrade-like: files replaced by a new version (write new, rename over) (25%).
        mid = [(p, s) for p, s in files if 4096 <= s <= 8 * MIB]
        spent = 0
        while spent < budget * 0.25 and mid:
            path, size = mid.pop(rng.randrange(len(mid)))
            data = bytearray(path.read_bytes())
            for _ in range(max(1, size // 65536)):
                at = rng.randrange(len(data))
                data[at : at + 64] = rng.randbytes(min(64, len(data) - at))
            tmp = path.with_name(path.name + ".new")
            tmp.write_bytes(bytes(data))
            os.replace(tmp, path)
            spent += size
            stats["replaced"] += 1
        written += spent
        # New files: half random (media, archives), half text (30%).
        new = root / "home" / "user" / f"data-{seed}"
        new.mkdir(parents=True, exist_ok=True)
        spent = 0
        while spent < budget * 0.30:
            size = int(2 ** rng.uniform(10, 22))
            if rng.random() < 0.5:
                data = rng.randbytes(size)
            else:
                data = b"".join(log_line(rng, i) for i in range(size // 80 + 1))[:size]
            (new / f"file-{stats['created']:05d}").write_bytes(data)
            spent += size
            stats["created"] += 1
        # Deletions: a few files of the tree (0.2% of them).
        survivors = [p for p, _ in files if p.exists()]
        for path in rng.sample(survivors, max(1, len(survivors) // 500)):
            path.unlink()
            stats["deleted"] += 1
        # Metadata: mode and times of 0.5% of the files.
        survivors = [p for p in survivors if p.exists()]
        for path in rng.sample(survivors, max(1, len(survivors) // 200)):
            os.chmod(path, 0o600 | (path.stat().st_mode & 0o077))
            os.utime(path, (time.time(), time.time() - rng.randint(0, 10**6)))
            stats["touched"] += 1
        stats["bytes"] = stats["appended"] + written + spent
        stats["budget"] = budget
    return stats


def changed_blocks(previous: Path, current: Path) -> Iterator[tuple[int, bytes]]:
    """``(offset, data)`` of the runs of 4 KiB blocks in which ``current`` differs from ``previous``."""
    step = 4 * MIB
    with open(previous, "rb") as p, open(current, "rb") as c:
        regions = sorted(data_extents(p.fileno()) + data_extents(c.fileno()))
        merged: list[list[int]] = []
        for offset, length in regions:
            start, end = offset // step * step, -(-(offset + length) // step) * step
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        size = os.fstat(c.fileno()).st_size
        for start, end in merged:
            for at in range(start, min(end, size), step):
                a, b = os.pread(p.fileno(), step, at), os.pread(c.fileno(), step, at)
                if a == b:
                    continue
                run_start = None
                for i in range(0, len(b), BLOCK):
                    differs = a[i : i + BLOCK] != b[i : i + BLOCK]
                    if differs and run_start is None:
                        run_start = i
                    elif not differs and run_start is not None:
                        yield at + run_start, b[run_start:i]
                        run_start = None
                if run_start is not None:
                    yield at + run_start, b[run_start:]


# -- Strongroom through the service ------------------------------------------


@dataclasses.dataclass
class Result:
    seconds: float
    stored: int | None = None
    rss: int = 0
    note: str = ""


class Ours:
    """One backend's ``strongroom-all-in-one``, driven by the ``strongroom`` CLI."""

    volume = "disk"

    def __init__(self, name: str, work: Path) -> None:
        self.name = name
        self.dir = work / name
        self.bank = self.dir / "bank"
        self.provider = str(uuid.uuid4())
        self.service: Any = None
        self.plan = ""
        self.checkpoints: list[str] = []
        self.results: dict[str, Result] = {}
        self.runs: list[dict[str, Any]] = []

    # Overridden per backend.
    def available(self) -> str | None:
        return None

    def prepare(self, image: Path) -> None:
        """Put the image into the backend as volume ``self.volume``."""

    def backend_section(self) -> str:
        raise NotImplementedError

    def apply(self, writes: list[tuple[int, bytes]]) -> None:
        """Write the changed blocks into the volume."""

    def restored_digest(self, name: str) -> str:
        raise NotImplementedError

    def remove_restored(self, name: str) -> None:
        pass

    def teardown(self) -> None:
        pass

    # The service.
    def start(self) -> None:
        sys.path.insert(0, str(ROOT))
        from tests.functional.harness import AllInOne

        state, providers = self.dir / "state", self.dir / "providers.d"
        state.mkdir(parents=True)
        providers.mkdir()
        (providers / f"{self.name}.conf").write_text(
            f"[provider]\nname = bench {self.name}\nid = {self.provider}\nplugin = volume\nbank = fs\n\n"
            f"[fs]\npath = {self.bank}\n\n[volume]\n{self.backend_section()}")
        conf = self.dir / "strongroom.conf"
        conf.write_text(f"[DEFAULT]\nstate_dir = {state}\nproviders_dir = {providers}\n[api]\nbind_port = 0\n")
        self.service = AllInOne(state_dir=state, config_file=conf)
        self.service.start()
        plan = self.cli_json("plan", "create", f"bench-{self.name}", self.provider,
                             "--resource", f"{VOLUME_TYPE}={self.volume}")
        self.plan = plan["id"]

    def stop(self) -> None:
        if self.service is not None and self.service.process is not None and self.service.process.poll() is None:
            self.service.stop()

    def cli(self, *args: str) -> list[str]:
        return [str(BIN / "strongroom"), "-f", "json", "--poll-interval", "0.05", *args]

    def env(self) -> dict[str, str]:
        env = dict(os.environ, STRONGROOM_URL=self.service.url, OS_PROJECT_ID="bench",
                   STRONGROOM_STATE_DIR=str(self.service.state_dir))
        env.pop("OS_AUTH_TOKEN", None)
        return env

    def cli_json(self, *args: str) -> Any:
        return json.loads(sh(*self.cli(*args), env=self.env(), timeout=3600))

    def protect(self) -> Result:
        before = disk_usage(self.bank)
        os.sync()
        began = time.monotonic()
        with Sampler(self.service.process.pid, children=False) as sampler:
            out = subprocess.run(self.cli("checkpoint", "create", self.provider, self.plan, "--wait"),
                                 capture_output=True, text=True, env=self.env(), timeout=3600)
        seconds = time.monotonic() - began
        if out.returncode:
            raise RuntimeError(f"{self.name}: checkpoint create failed: {out.stderr[-2000:]}")
        checkpoint = json.loads(out.stdout)
        if checkpoint["status"] != "available":
            raise RuntimeError(f"{self.name}: checkpoint {checkpoint['id']} is {checkpoint['status']}")
        self.checkpoints.append(checkpoint["id"])
        shown = self.cli_json("checkpoint", "show", self.provider, checkpoint["id"])
        after_rss = sampler.rss()
        stored = disk_usage(self.bank) - before
        note = describe(shown.get("extra_info") or {}) or describe(checkpoint.get("extra_info") or {})
        self.runs.append({"seconds": seconds, "peak_rss": sampler.peak, "rss_after": after_rss, "stored": stored,
                          "note": note})
        return Result(seconds, stored, sampler.peak, note)

    def restore(self, expected: str) -> Result:
        name = self.restore_name()
        os.sync()
        began = time.monotonic()
        with Sampler(self.service.process.pid, children=False) as sampler:
            self.cli_json("restore", "create", self.provider, self.checkpoints[-1], "--restore-name", name,
                          "--wait")
        seconds = time.monotonic() - began
        ok = self.restored_digest(name) == expected
        self.remove_restored(name)
        return Result(seconds, None, sampler.peak, "sha256 OK" if ok else "SHA256 MISMATCH")

    def restore_name(self) -> str:
        return "restored"


def describe(extra: Any) -> str:
    """What the checkpoint says about its protect: mode, why a full read, bytes read (any depth)."""
    found: dict[str, Any] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("mode", "full_reason", "bytes_read", "reason") and not isinstance(item, (dict, list)):
                    found.setdefault(key, item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(extra)
    parts = [str(found[k]) for k in ("mode",) if k in found]
    for key in ("full_reason", "reason"):
        if found.get(key):
            parts.append(f"({found[key]})")
            break
    if isinstance(found.get("bytes_read"), int):
        parts.append(f"read {found['bytes_read'] / MIB:.0f} MiB")
    return " ".join(parts)


class Loopback(Ours):
    volume = "disk.img"

    def __init__(self, name: str, work: Path, volumes: Path) -> None:
        super().__init__(name, work)
        self.volumes = volumes

    def backend_section(self) -> str:
        return f"block_backend = loopback\nworkers = 3\n\n[loopback]\npath = {self.volumes}\n"

    def restore_name(self) -> str:
        return "restored.img"

    def restored_digest(self, name: str) -> str:
        return sha256_file(self.volumes / name)

    def remove_restored(self, name: str) -> None:
        (self.volumes / name).unlink()


class LoopbackXfs(Loopback):
    """The loopback backend with its path on a loop-mounted XFS (reflink snapshots)."""

    def __init__(self, work: Path, size: int) -> None:
        super().__init__("loopback-xfs", work, work / "xfs" / "volumes")
        self.fs_image = work / "xfs.img"
        self.size = size
        self.mounted = False

    def available(self) -> str | None:
        return None if shutil.which("mkfs.xfs") else "mkfs.xfs is not installed (Debian package xfsprogs)"

    def prepare(self, image: Path) -> None:
        with open(self.fs_image, "wb") as f:
            f.truncate(3 * self.size + GIB)
        sh("mkfs.xfs", "-q", "-f", "-m", "reflink=1", self.fs_image)
        mnt = self.volumes.parent
        mnt.mkdir(parents=True)
        sh("mount", "-o", "loop", self.fs_image, mnt)
        self.mounted = True
        self.volumes.mkdir()
        sparse_copy(image, self.volumes / self.volume)

    def apply(self, writes: list[tuple[int, bytes]]) -> None:
        fd = os.open(self.volumes / self.volume, os.O_WRONLY)
        try:
            for offset, data in writes:
                os.pwrite(fd, data, offset)
            os.fsync(fd)
        finally:
            os.close(fd)

    def teardown(self) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.volumes.parent)], check=False)
            self.mounted = False


class Rbd(Ours):
    pool = "bench"

    def __init__(self, work: Path, size: int) -> None:
        super().__init__("rbd", work)
        self.size = size
        self.cluster: Any = None
        self.setup_seconds = 0.0

    def available(self) -> str | None:
        sys.path.insert(0, str(ROOT))
        from tests.servers import ceph

        missing = ceph.missing_packages()
        return f"Debian packages missing: {', '.join(missing)}" if missing else None

    def prepare(self, image: Path) -> None:
        import rbd

        from tests.servers.ceph import CephCluster

        began = time.monotonic()
        self.cluster = CephCluster(self.dir / "ceph", cephx=True, objectstore="bluestore",
                                   memstore_bytes=3 * self.size + 4 * GIB)
        self.cluster.start()
        self.cluster.create_pool(self.pool)
        with self.cluster.admin().open_ioctx(self.pool) as ioctx:
            rbd.RBD().create(ioctx, self.volume, self.size, old_format=False,
                             features=rbd.RBD_FEATURE_LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK
                             | rbd.RBD_FEATURE_OBJECT_MAP | rbd.RBD_FEATURE_FAST_DIFF)
        with open(image, "rb") as f:
            writes = ((at, os.pread(f.fileno(), min(8 * MIB, offset + length - at), at))
                      for offset, length in data_extents(f.fileno())
                      for at in range(offset, offset + length, 8 * MIB))
            self._write(writes)
        self.setup_seconds = time.monotonic() - began

    def _write(self, writes: Any) -> None:
        import rbd

        with self.cluster.admin().open_ioctx(self.pool) as ioctx, rbd.Image(ioctx, self.volume) as image:
            for offset, data in writes:
                image.write(data, offset)
            image.flush()

    def apply(self, writes: list[tuple[int, bytes]]) -> None:
        self._write(writes)

    def backend_section(self) -> str:
        return (f"block_backend = rbd\nworkers = 3\n\n[rbd]\nmon_host = {self.cluster.mon_host}\npool = {self.pool}\n"
                f"client_name = strongroom\nkey = {self.cluster.client_key}\nop_timeout = 60\n")

    def restored_digest(self, name: str) -> str:
        return sha256_stream(["rbd", "--conf", self.cluster.conf_path, "--keyring", self.cluster.admin_keyring,
                              "--id", "admin", "export", f"{self.pool}/{name}", "-"])

    def remove_restored(self, name: str) -> None:
        import rbd

        with self.cluster.admin().open_ioctx(self.pool) as ioctx:
            rbd.RBD().remove(ioctx, name)

    def teardown(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None


class Qcow2(Ours):
    def __init__(self, work: Path) -> None:
        super().__init__("qcow2", work)
        self.images = self.dir / "images"

    def available(self) -> str | None:
        sys.path.insert(0, str(ROOT))
        from tests.servers import qemu

        missing = qemu.missing_packages()
        return f"Debian packages missing: {', '.join(missing)}" if missing else None

    def prepare(self, image: Path) -> None:
        self.images.mkdir(parents=True)
        sh("qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", image, self.images / f"{self.volume}.qcow2")

    def backend_section(self) -> str:
        return f"block_backend = qcow2\nworkers = 3\n\n[qcow2]\npath = {self.images}\ntimeout = 30\n"

    def apply(self, writes: list[tuple[int, bytes]]) -> None:
        """Through the daemon's NBD export of the live image, as a VM's writes would arrive."""
        import nbd

        socket = json.loads((self.images / ".strongroom" / "daemon.json").read_text())["nbd_socket"]
        handle = nbd.NBD()
        handle.set_export_name(self.volume)
        handle.connect_unix(socket)
        try:
            for offset, data in writes:
                handle.pwrite(data, offset)
            handle.flush()
        finally:
            handle.shutdown()

    def restored_digest(self, name: str) -> str:
        raw = self.dir / "restored.raw"
        sh("qemu-img", "convert", "-U", "-q", "-f", "qcow2", "-O", "raw", self.images / f"{name}.qcow2", raw)
        try:
            return sha256_file(raw)
        finally:
            raw.unlink()


# -- the peers ---------------------------------------------------------------


class Peer:
    name = ""

    def __init__(self, work: Path, volumes: Path) -> None:
        self.repo = work / self.name
        self.volumes = volumes
        self.env: dict[str, str] = {}
        self.count = 0
        self.results: dict[str, Result] = {}

    def available(self) -> str | None:
        return None if shutil.which(self.name) else f"{self.name} is not installed"

    def setup(self) -> None:
        raise NotImplementedError

    def backup_argv(self) -> list[str]:
        raise NotImplementedError

    def protect(self) -> Result:
        self.count += 1
        before = disk_usage(self.repo)
        seconds, rss, _ = timed(self.backup_argv(), env=self.env, cwd=self.volumes)
        return Result(seconds, disk_usage(self.repo) - before, rss)

    def restore_argv(self, target: Path) -> list[str]:
        raise NotImplementedError

    def restore(self, expected: str) -> Result:
        target = self.repo.parent / f"{self.name}-restore"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        restored = target / "disk.img"
        # Timed until the restored file is on disk, as Strongroom's restore is (it fsyncs).
        argv = ["sh", "-c", '"$@" && sync "$0"', str(restored), *self.restore_argv(target)]
        seconds, rss, _ = timed(argv, env=self.env, cwd=target)
        ok = sha256_file(restored) == expected
        shutil.rmtree(target)
        return Result(seconds, None, rss, "sha256 OK" if ok else "SHA256 MISMATCH")


class Restic(Peer):
    name = "restic"

    def setup(self) -> None:
        self.env = dict(os.environ, RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=str(self.repo),
                        RESTIC_CACHE_DIR=str(self.repo.parent / "restic-cache"))
        sh("restic", "init", env=self.env)  # repository v2: AES-256, zstd (auto)

    def backup_argv(self) -> list[str]:
        return ["restic", "backup", "--quiet", "--compression", "auto", "disk.img"]

    def restore_argv(self, target: Path) -> list[str]:
        return ["restic", "restore", "latest", "--target", str(target)]


class Borg(Peer):
    name = "borg"

    def setup(self) -> None:
        self.env = dict(os.environ, BORG_PASSPHRASE=PASSWORD, BORG_REPO=str(self.repo),
                        BORG_BASE_DIR=str(self.repo.parent / "borg-home"), BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")
        sh("borg", "init", "--encryption=repokey", env=self.env)

    def backup_argv(self) -> list[str]:
        return ["borg", "create", "--compression", "zstd,3", f"::b{self.count}", "disk.img"]

    def restore_argv(self, target: Path) -> list[str]:
        return ["borg", "extract", "--sparse", f"::b{self.count}"]


# -- the run -----------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=[*BACKENDS, *PEERS],
                        help="run only these backends and peers (repeatable; default: all that are installed)")
    parser.add_argument("--size-gib", type=float, default=3.0, help="the image's size (default 3)")
    parser.add_argument("--fill-gb", type=float, default=1.8,
                        help="bytes of files copied in (default 1.8 GB; at most 60%% of the size)")
    parser.add_argument("--runs", type=int, default=10, help="Strongroom protects in a row (default 10, at least 3)")
    parser.add_argument("--change-percent", type=float, default=1.0, help="of the used bytes (default 1)")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--keep", action="store_true", help="keep .bench/fsimage/ (services' state, repositories)")
    parser.add_argument("--prepare-only", action="store_true", help="build the cached image, measure nothing")
    parser.add_argument("--bench-dir", type=Path, default=ROOT / ".bench")
    parser.add_argument("--source", type=Path, action="append",
                        help="trees copied into the image, in order (default: the Python, the venv, "
                             "/usr/share, /usr/lib)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("must run as root: the images are loop-mounted")
    args.runs = max(3, args.runs)
    size = int(args.size_gib * GIB) // MIB * MIB
    fill = min(int(args.fill_gb * 1e9), int(size * 0.6))
    sources = args.source or default_sources()
    bench = args.bench_dir.resolve()
    cache, work = bench / "fsimage-cache", bench / "fsimage"
    cache.mkdir(parents=True, exist_ok=True)
    label = f"{args.size_gib:g}GiB"

    key = json.dumps([IMAGE_VERSION, size, fill, args.seed, [str(s) for s in sources]])
    base = cache / f"base-{hashlib.sha256(key.encode()).hexdigest()[:12]}.img"
    if not base.exists():
        print(f"building {base} ({label}, {fill / 1e9:.2f} GB of files) ...", flush=True)
        began = time.monotonic()
        build_base(base, size, fill, sources, args.seed)
        print(f"  built in {time.monotonic() - began:.0f}s", flush=True)
    if args.prepare_only:
        return 0

    cleanup_stale(work)
    volumes = work / "loopback" / "volumes"
    volumes.mkdir(parents=True)
    image = volumes / "disk.img"
    sparse_copy(base, image)

    wanted = set(args.only or [*BACKENDS, *PEERS])
    candidates: list[Any] = [Loopback("loopback", work, volumes), LoopbackXfs(work, size), Rbd(work, size),
                             Qcow2(work), Restic(work, volumes), Borg(work, volumes)]
    notes: list[str] = []
    active: list[Any] = []
    for tool in candidates:
        if tool.name not in wanted:
            continue
        missing = tool.available()
        if missing:
            notes.append(f"{tool.name} skipped: {missing}")
        else:
            active.append(tool)
    ours = [t for t in active if isinstance(t, Ours)]
    peers = [t for t in active if isinstance(t, Peer)]
    try:
        rc = run(args, work, image, ours, peers, notes, label, fill)
    finally:
        for tool in ours:
            with contextlib.suppress(Exception):
                tool.stop()
            tool.teardown()
        if not args.keep:
            cleanup_stale(work)
    return rc


def cleanup_stale(work: Path) -> None:
    if not work.exists():
        return
    for mnt in (work / "xfs", work / "mnt"):
        if os.path.ismount(mnt):
            subprocess.run(["umount", str(mnt)], check=False)
    shutil.rmtree(work)


def run(args: argparse.Namespace, work: Path, image: Path, ours: list[Any], peers: list[Peer],
        notes: list[str], label: str, fill: int) -> int:
    mnt = work / "mnt"
    previous = work / "previous.img"
    needs_copies = any(not isinstance(t, Loopback) or isinstance(t, LoopbackXfs) for t in ours)
    if needs_copies:
        sparse_copy(image, previous)
    for tool in ours:
        tool.prepare(image)
        tool.start()
        if isinstance(tool, Rbd):
            notes.append(f"rbd: Ceph started and the image written into RBD in {tool.setup_seconds:.1f}s")
    for peer in peers:
        peer.setup()

    def change(step: int) -> None:
        began = time.monotonic()
        stats = change_filesystem(image, mnt, args.change_percent / 100, args.seed + step)
        writes: list[tuple[int, bytes]] = []
        if needs_copies:
            writes = list(changed_blocks(previous, image))
            for tool in ours:
                tool.apply(writes)
            with open(previous, "r+b") as f:
                for offset, data in writes:
                    os.pwrite(f.fileno(), data, offset)
        changes.append({**stats, "blocks_bytes": sum(len(d) for _, d in writes)})
        print(f"  change {len(changes)}: {stats['bytes'] / MIB:.1f} MiB of files written, "
              f"{stats['deleted']} deleted, {stats['touched']} touched"
              + (f"; {changes[-1]['blocks_bytes'] / MIB:.1f} MiB of blocks differ" if needs_copies else "")
              + f" ({time.monotonic() - began:.1f}s)", flush=True)

    def protect_all(op: str, with_peers: bool) -> None:
        for tool in [*ours, *(peers if with_peers else [])]:
            result = tool.protect()
            tool.results.setdefault(op, result)
            print(f"  {tool.name:13} {op:10} {result.seconds:7.2f}s {(result.stored or 0) / MIB:9.1f} MiB stored "
                  f"{result.rss / MIB:6.0f} MiB RSS {result.note}", flush=True)

    changes: list[dict[str, int]] = []
    print("full protect ...", flush=True)
    protect_all("full", True)
    print("~1% change ...", flush=True)
    change(1)
    protect_all("change", True)
    print("no change ...", flush=True)
    protect_all("none", True)
    print("restore ...", flush=True)
    expected = sha256_file(image)
    failed = False
    for tool in [*ours, *peers]:
        result = tool.restore(expected)
        tool.results["restore"] = result
        failed |= result.note != "sha256 OK"
        print(f"  {tool.name:13} restore    {result.seconds:7.2f}s {result.note}", flush=True)
    print(f"more protects, up to {args.runs} in a row ...", flush=True)
    for step in range(4, args.runs + 1):
        if step % 2 == 0:
            change(step)
        protect_all("change" if step % 2 == 0 else "none", False)

    figures = {
        "size": label, "fill": fill, "changes": changes, "notes": notes,
        "ours": {t.name: {"results": {k: dataclasses.asdict(v) for k, v in t.results.items()}, "runs": t.runs}
                 for t in ours},
        "peers": {p.name: {k: dataclasses.asdict(v) for k, v in p.results.items()} for p in peers},
    }
    bench = work.parent
    (bench / f"fsimage-results-{label}.json").write_text(json.dumps(figures, indent=1))
    others = {}
    for path in bench.glob("fsimage-results-*.json"):
        if path.name != f"fsimage-results-{label}.json":
            with contextlib.suppress(ValueError, OSError):
                other = json.loads(path.read_text())
                others[other["size"]] = other
    report = render(figures, others, args)
    print()
    print(report)
    (bench / "fsimage-results.md").write_text(report)
    return 1 if failed else 0


# -- the report --------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else ""


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def render(figures: dict[str, Any], others: dict[str, Any], args: argparse.Namespace) -> str:
    peers = figures["peers"]
    changes = figures["changes"]
    first = changes[0] if changes else {}
    lines = [
        f"# Filesystem image: {figures['size']} ext4 holding {figures['fill'] / 1e9:.2f} GB of files",
        "",
        f"{os.cpu_count()} CPUs. Strongroom through `strongroom-all-in-one` and the `strongroom` CLI "
        "(filesystem bank, the volume plugin's defaults: "
        f"{volume_plugin.DEFAULT_CHUNK_SIZE // 1024} KiB chunks, sha256, "
        f"zstd {volume_plugin.DEFAULT_COMPRESSION_LEVEL}, 3 workers); seconds are the "
        "CLI's `checkpoint create --wait` / `restore create --wait` (polling every 50 ms). restic: repository v2, "
        "`--compression auto`; borg: repokey, zstd,3; both back up the ext4 image file. Peak RSS: psutil every "
        "50 ms (the service's process; the peer's process). Bytes stored: growth of the repository's disk usage.",
        f"~1% change (seed {args.seed}): {first.get('bytes', 0) / MIB:.1f} MiB of files written "
        f"(logs appended, pages rewritten in place, files replaced, {first.get('created', 0)} new files), "
        f"{first.get('deleted', 0)} files deleted, {first.get('touched', 0)} touched"
        + (f"; {first['blocks_bytes'] / MIB:.1f} MiB of 4 KiB blocks differ in the image"
           if first.get("blocks_bytes") else "") + ".",
        "",
    ]
    rows = [("full protect", "full"), ("protect after ~1% change", "change"),
            ("protect, nothing changed", "none"), ("restore", "restore")]
    for name, tool in figures["ours"].items():
        res = tool["results"]
        lines += [f"## {name}", "",
                  "| operation | strongroom s | restic s | borg s | /restic | /borg | strongroom stored | "
                  "restic stored | borg stored | stored /restic | stored /borg | note |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for label, op in rows:
            ours = res.get(op)
            if ours is None:
                continue
            r, b = peers.get("restic", {}).get(op), peers.get("borg", {}).get(op)

            def s(x: dict[str, Any] | None) -> str:
                return f"{x['seconds']:.2f}" if x else ""

            def st(x: dict[str, Any] | None) -> str:
                return f"{x['stored']:,}" if x and x.get("stored") is not None else ""

            lines.append(
                f"| {label} | {ours['seconds']:.2f} | {s(r)} | {s(b)} | "
                f"{_ratio(ours['seconds'], r and r['seconds'])} | {_ratio(ours['seconds'], b and b['seconds'])} | "
                f"{st(ours)} | {st(r)} | {st(b)} | "
                f"{_ratio(ours.get('stored'), r and r.get('stored'))} | "
                f"{_ratio(ours.get('stored'), b and b.get('stored'))} | {ours['note']} |")
        runs = tool["runs"]
        peaks = [run["peak_rss"] / MIB for run in runs]
        peer_rss = {p: max(v["rss"] for v in peers[p].values()) / MIB for p in peers}
        lines.append(f"| peak RSS MiB ({len(runs)} protects) | {max(peaks):.0f} | "
                     + " | ".join(f"{peer_rss[p]:.0f}" if p in peer_rss else "" for p in PEERS) + " | "
                     + " | ".join(_ratio(max(peaks), peer_rss.get(p)) for p in PEERS) + " | | | | | | |")
        lines += ["", "protects in a row (s / peak RSS MiB / RSS after MiB / stored MiB): "
                  + "; ".join(f"{i + 1}: {run['seconds']:.2f} / {run['peak_rss'] / MIB:.0f} / "
                              f"{run['rss_after'] / MIB:.0f} / {run['stored'] / MIB:.1f}"
                              for i, run in enumerate(runs)), ""]
        lines += ["| done-when target | measured | result |", "| --- | --- | --- |"]
        lines += [f"| {t} | {m} | {v} |" for t, m, v in verdicts(name, tool, peers, others, figures["size"])]
        lines.append("")
    if not figures["ours"]:
        lines.append("(no Strongroom backend ran)")
    for p, res in peers.items():
        lines.append(f"- {p}: " + ", ".join(f"{op} {v['seconds']:.2f}s" + (f" {v['stored']:,} B" if v.get('stored')
                                                                          is not None else f" {v['note']}")
                                            for op, v in res.items()))
    lines += [f"- {n}" for n in figures["notes"]]
    return "\n".join(lines) + "\n"


def verdicts(name: str, tool: dict[str, Any], peers: dict[str, Any], others: dict[str, Any],
             size: str) -> list[tuple[str, str, str]]:
    res = tool["results"]
    restic, borg = peers.get("restic", {}), peers.get("borg", {})
    out: list[tuple[str, str, str]] = []

    def sec(d: dict[str, Any], op: str) -> float | None:
        return d[op]["seconds"] if op in d else None

    def compare(target: str, ours: float | None, theirs: float | None, factor: float, unit: str = "s") -> None:
        if ours is None or theirs is None:
            out.append((target, "peer not measured", "n/a"))
        else:
            out.append((target, f"{ours:.2f}{unit} vs {theirs:.2f}{unit} ({ours / theirs:.2f}x)",
                        _verdict(ours <= factor * theirs)))

    none = sec(res, "none")
    if name == "loopback":
        compare("1. no change: no slower than restic", none, sec(restic, "none"), 1.0)
    elif name in ("rbd", "qcow2") and none is not None:
        out.append(("1. no change: under 1 s", f"{none:.2f}s", _verdict(none < 1.0)))
    if name in ("rbd", "qcow2", "loopback-xfs"):
        compare("2. ~1% change: at most 0.2x restic's time", sec(res, "change"), sec(restic, "change"), 0.2)
    if "change" in res and "change" in restic:
        ours, theirs = res["change"]["stored"], restic["change"]["stored"]
        out.append(("2. ~1% change: bytes stored at most 1.1x restic's", f"{ours:,} vs {theirs:,} "
                    f"({ours / max(theirs, 1):.2f}x)", _verdict(ours <= 1.1 * theirs)))
    compare("3. full protect at most 0.6x restic", sec(res, "full"), sec(restic, "full"), 0.6)
    compare("3. full protect at most 0.8x borg", sec(res, "full"), sec(borg, "full"), 0.8)
    compare("3. restore at most 0.6x restic", sec(res, "restore"), sec(restic, "restore"), 0.6)
    for other_size, other in sorted(others.items()):
        theirs = other.get("ours", {}).get(name, {}).get("results", {}).get("change")
        if theirs and "change" in res:
            a, b = res["change"]["seconds"], theirs["seconds"]
            out.append((f"4. ~1% change: {size} within 20% of {other_size}", f"{a:.2f}s vs {b:.2f}s",
                        _verdict(abs(a - b) <= 0.2 * min(a, b))))
    peaks = [run["peak_rss"] / MIB for run in tool["runs"]]
    half = len(peaks) // 2
    grows = max(peaks[half:]) > 1.1 * max(peaks[:half])
    out.append(("5. peak RSS under 200 MiB", f"{max(peaks):.0f} MiB", _verdict(max(peaks) < 200)))
    out.append(("5. peak RSS does not grow (later half's peak within 10% of the first half's)",
                f"{max(peaks[:half]):.0f} -> {max(peaks[half:]):.0f} MiB (median {statistics.median(peaks):.0f})",
                _verdict(not grows)))
    return out


if __name__ == "__main__":
    sys.exit(main())
