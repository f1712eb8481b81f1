"""A real single-node Ceph cluster (one mon, one memstore OSD) on 127.0.0.1, for RBD tests.

In pytest, ask for the session fixture (the cluster starts once per run, on first use)::

    def test_something(ceph_cluster):
        backend = RbdBackend(ceph_cluster.backend_options(pool=ceph_cluster.new_pool()))

Outside pytest (benchmarks, by hand)::

    from tests.servers.ceph import CephCluster
    with CephCluster(pathlib.Path("/tmp/ceph"), cephx=True) as cluster:
        print(cluster.conf_path, cluster.client_key)

What it runs, and why so (measured facts in the project's notes on real backends):

* ``ceph-mon`` and ``ceph-osd`` from Debian (``ceph-mon``, ``ceph-osd``, ``ceph-common``), in the
  foreground, every path (data, logs, admin sockets, run files, keyring) under the given directory;
* the mon on a random free port, v1 messenger only (``monmaptool --add`` takes any port but 6789 for
  msgr2, and clients then time out, so the map is made with ``--addv``);
* ``osd objectstore = memstore`` (writable in about 5 s; the data lives in the OSD's RAM, capped by
  ``memstore_bytes``), one replica, CRUSH choosing among OSDs rather than hosts;
* no ceph-mgr: RBD does not need one (``ceph pg stat`` would hang, so readiness is a ``rados`` write);
* cephx on or off; with it on, ``client.strongroom`` gets exactly the caps ``doc/block-rbd.md`` asks
  operators to give (``mon 'profile rbd' osd 'profile rbd pool=...'``), per pool.

``stop()`` sends SIGKILL and reaps each daemon by PID (SIGTERM takes about 5 s; nothing on disk needs
a clean shutdown); on Linux the daemons also get SIGTERM when the process that started them dies, so a
killed test run leaves no cluster behind.  ``kill_osd()`` / ``start_osd()`` stop and restart the one
OSD, for dead-cluster tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers import dying_with_parent, free_port, must_not_skip, tail_log

#: Debian packages the cluster needs, by the program or module that shows they are there.
PACKAGES = {"ceph-mon": "ceph-mon", "ceph-osd": "ceph-osd", "monmaptool": "ceph-base",
            "ceph-authtool": "ceph-common"}
START_TIMEOUT = 60.0
#: The client user the backend connects as when cephx is on.
CLIENT = "strongroom"


class CephError(RuntimeError):
    """The cluster could not be started or asked."""


def missing_packages() -> list[str]:
    """Debian packages (programs and the ``rados``/``rbd`` Python modules) missing for the cluster."""
    missing = sorted({package for program, package in PACKAGES.items() if shutil.which(program) is None})
    for module, package in (("rados", "python3-rados"), ("rbd", "python3-rbd")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    return missing


@dataclasses.dataclass
class CephCluster:
    """One mon and one OSD under ``directory``; ``start()`` returns once a ``rados`` write succeeds."""

    directory: pathlib.Path
    cephx: bool = True
    memstore_bytes: int = 6 << 30
    #: ``memstore`` (data in RAM, lost when the OSD is killed) or ``bluestore`` on a sparse file of
    #: ``memstore_bytes`` under the directory (survives a killed OSD; a few seconds more to start).
    objectstore: str = "memstore"
    port: int = 0
    fsid: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    #: Seconds from the first command to the first successful write.
    start_seconds: float = 0.0
    #: The key of ``client.strongroom`` (cephx only); secret, so never in ``repr()``.
    client_key: str = dataclasses.field(default="", repr=False)
    _mon: subprocess.Popen[bytes] | None = dataclasses.field(default=None, repr=False)
    _osd: subprocess.Popen[bytes] | None = dataclasses.field(default=None, repr=False)
    _admin: Any = dataclasses.field(default=None, repr=False)

    # -- paths -----------------------------------------------------------------------------------------

    @property
    def conf_path(self) -> pathlib.Path:
        return self.directory / "ceph.conf"

    @property
    def admin_keyring(self) -> pathlib.Path:
        return self.directory / "keyring"

    @property
    def client_keyring(self) -> pathlib.Path:
        return self.directory / f"ceph.client.{CLIENT}.keyring"

    @property
    def mon_host(self) -> str:
        return f"v1:127.0.0.1:{self.port}"

    def log_path(self, daemon: str) -> pathlib.Path:
        return self.directory / "log" / f"{daemon}.log"

    # -- life cycle ------------------------------------------------------------------------------------

    def __enter__(self) -> CephCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        began = time.monotonic()
        if not self.port:
            self.port = free_port()
        for sub in ("mon/ceph-a", "osd/ceph-0", "log", "run"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self._conf())
        try:
            self._make_keys()
            monmap = self.directory / "monmap"
            self._run("monmaptool", "--create", "--clobber", "--fsid", self.fsid,
                      "--addv", "a", f"[v1:127.0.0.1:{self.port}]", str(monmap))
            self._run("ceph-mon", "-c", str(self.conf_path), "--mkfs", "-i", "a", "--monmap", str(monmap),
                      "--keyring", str(self.admin_keyring))
            self._mon = self._spawn("ceph-mon", "-i", "a")
            osd_uuid = str(uuid.uuid4())
            self.mon_command({"prefix": "osd new", "uuid": osd_uuid, "id": 0})
            self._run("ceph-osd", "-c", str(self.conf_path), "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
            self.start_osd()
            self.create_pool("strongroom-ready")
            self.wait_until_writable("strongroom-ready")
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def stop(self) -> None:
        """SIGKILL both daemons and reap them.  Idempotent; the directory stays for the logs."""
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.shutdown()
            self._admin = None
        self.kill_osd()
        if self._mon is not None:
            _kill(self._mon)
            self._mon = None

    def kill_osd(self) -> None:
        """SIGKILL the OSD and reap it: every read or write after this waits for an OSD that is gone."""
        if self._osd is not None:
            _kill(self._osd)
            self._osd = None

    def start_osd(self) -> None:
        """(Re)start the OSD (memstore comes back empty after :meth:`kill_osd`; bluestore with its data)."""
        if self._osd is None:
            self._osd = self._spawn("ceph-osd", "-i", "0")

    def wait_until_writable(self, pool: str, timeout: float = START_TIMEOUT) -> None:
        """Return once a write to ``pool`` succeeds (after :meth:`start_osd`, the OSD must peer first)."""
        ioctx = self.admin().open_ioctx(pool)
        try:
            self._until_written(ioctx, time.monotonic() + timeout)
        finally:
            ioctx.close()

    # -- what tests use --------------------------------------------------------------------------------

    def admin(self) -> Any:
        """A connected ``rados.Rados`` as client.admin (kept for the cluster's lifetime)."""
        if self._admin is None:
            import rados

            # Bounded waits: a test that killed the OSD gets an error, not a hang.
            timeouts = {"rados_osd_op_timeout": "60", "rados_mon_op_timeout": "60"}
            cluster = rados.Rados(conffile=str(self.conf_path), rados_id="admin",
                                  conf={**timeouts, **({"keyring": str(self.admin_keyring)} if self.cephx else {})})
            cluster.connect(timeout=int(START_TIMEOUT))
            self._admin = cluster
        return self._admin

    def mon_command(self, command: dict[str, Any]) -> bytes:
        for _ in range(100):
            ret, out, err = self.admin().mon_command(json.dumps(command), b"", timeout=int(START_TIMEOUT))
            # A client that has not got the monitor map yet sends a null fsid and is refused: ask again.
            if ret != -1 or "wrong fsid" not in err:
                break
            time.sleep(0.05)
        if ret != 0:
            raise CephError(f"ceph {command['prefix']} failed ({ret}): {err}")
        return bytes(out)

    def create_pool(self, name: str, rbd: bool = True) -> str:
        """A one-replica pool ``name`` (its application ``rbd``); with cephx, ``client.strongroom`` may use it."""
        self.mon_command({"prefix": "osd pool create", "pool": name, "pg_num": 8, "pgp_num": 8})  # size 1
        if rbd:
            self.mon_command({"prefix": "osd pool application enable", "pool": name, "app": "rbd"})
        self._grant()
        return name

    def new_pool(self, prefix: str = "test") -> str:
        return self.create_pool(f"{prefix}-{uuid.uuid4().hex[:8]}")

    def delete_pool(self, name: str) -> None:
        self.mon_command({"prefix": "osd pool delete", "pool": name, "pool2": name,
                          "yes_i_really_really_mean_it": True})
        self._grant()

    def backend_options(self, pool: str, **extra: Any) -> dict[str, Any]:
        """Options for :class:`strongroom.block.rbd.RbdBackend` on ``pool``: mon address and, with cephx,
        the client's keyring (or give ``key=cluster.client_key`` instead)."""
        options: dict[str, Any] = {"mon_host": self.mon_host, "pool": pool, "connect_timeout": 10,
                                   "op_timeout": 10}
        if self.cephx:
            options.update(client_name=CLIENT, keyring=str(self.client_keyring))
        return {**options, **extra}

    # -- internals -------------------------------------------------------------------------------------

    def _conf(self) -> str:
        d = self.directory
        auth = "cephx" if self.cephx else "none"
        return f"""[global]
fsid = {self.fsid}
mon host = {self.mon_host}
ms bind msgr2 = false
auth cluster required = {auth}
auth service required = {auth}
auth client required = {auth}
keyring = {self.admin_keyring}
run dir = {d}/run
admin socket = {d}/run/$name.asok
log file = {d}/log/$name.log
pid file =
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
# One monitor has no one to agree with: commit changes (pools, caps) at once rather than once a second.
paxos propose interval = 0.02
paxos min wait = 0.001
# A dead client's watches (what tells a staged image's maker is gone) lapse in 10 s, not 30 s.
osd client watch timeout = 10
[mon]
mon data = {d}/mon/$cluster-$id
mon cluster log file = {d}/log/cluster.log
[osd]
osd data = {d}/osd/$cluster-$id
osd objectstore = {self.objectstore}
memstore device bytes = {self.memstore_bytes}
bluestore block path = {d}/osd/block
bluestore block create = true
bluestore block size = {self.memstore_bytes}
bluestore block db create = false
bluestore block wal create = false
bluestore fsck on mount = false
bluestore cache size = 67108864
osd op num shards = 1
osd op num threads per shard = 2
"""

    def _make_keys(self) -> None:
        keyring = str(self.admin_keyring)
        if not self.cephx:
            self.admin_keyring.write_text("")
            return
        self._run("ceph-authtool", "--create-keyring", keyring, "--gen-key", "-n", "mon.", "--cap", "mon",
                  "allow *")
        self._run("ceph-authtool", keyring, "--gen-key", "-n", "client.admin", "--cap", "mon", "allow *",
                  "--cap", "osd", "allow *", "--cap", "mgr", "allow *")
        self._run("ceph-authtool", keyring, "--gen-key", "-n", "osd.0", "--cap", "mon", "allow profile osd",
                  "--cap", "osd", "allow *")
        self._run("ceph-authtool", keyring, "--gen-key", "-n", f"client.{CLIENT}", "--cap", "mon",
                  "profile rbd", "--cap", "osd", "profile rbd pool=strongroom-ready")
        key = self._run("ceph-authtool", keyring, "-p", "-n", f"client.{CLIENT}").strip()
        self.client_key = key
        self.client_keyring.write_text(f"[client.{CLIENT}]\n\tkey = {key}\n")
        os.chmod(self.client_keyring, 0o600)

    def _grant(self) -> None:
        """Give ``client.strongroom`` ``profile rbd`` on every pool there is (cephx only)."""
        if not self.cephx:
            return
        pools = [p["poolname"] for p in json.loads(self.mon_command({"prefix": "osd lspools", "format": "json"}))]
        osd_caps = ", ".join(f"profile rbd pool={p}" for p in pools) or "profile rbd pool=none"
        self.mon_command({"prefix": "auth caps", "entity": f"client.{CLIENT}",
                          "caps": ["mon", "profile rbd", "osd", osd_caps]})

    def _run(self, *argv: str) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise CephError(f"{argv[0]} failed: {err}") from err
        if done.returncode != 0:
            raise CephError(f"{' '.join(argv[:3])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        return done.stdout

    def _spawn(self, program: str, *args: str) -> subprocess.Popen[bytes]:
        daemon = f"{program.removeprefix('ceph-')}.{args[-1]}"
        with open(self.directory / "log" / f"{daemon}.out", "ab") as out:
            command = dying_with_parent([shutil.which(program) or program, "-f", "-c", str(self.conf_path), *args])
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def _until_written(self, ioctx: Any, deadline: float) -> None:
        import rados

        restarts = 0
        while True:
            if self._mon is not None and self._mon.poll() is not None:
                raise CephError(f"ceph-mon exited with status {self._mon.returncode}: "
                                f"{tail_log(self.log_path('mon.a'))}")
            if self._osd is not None and self._osd.poll() is not None:
                # Now and then (more often without cephx) a starting OSD asks the mon before it has the
                # monitor map, is refused with "wrong fsid" and exits: starting it again is enough.
                if restarts >= 3:
                    raise CephError(f"ceph-osd exited with status {self._osd.returncode}: "
                                    f"{tail_log(self.log_path('osd.0'))}")
                restarts += 1
                self._osd = None
                self.start_osd()
            try:
                completion = ioctx.aio_write_full("ready", b"ready")
                for _ in range(20):
                    if completion.is_complete():
                        break
                    time.sleep(0.05)
                if completion.is_complete() and completion.get_return_value() == 0:
                    return
            except rados.Error:
                pass
            if time.monotonic() > deadline:
                raise CephError(f"the OSD took no write within {START_TIMEOUT:.0f} s: "
                                f"{tail_log(self.log_path('osd.0'))}")
            time.sleep(0.1)


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


# -- pytest --------------------------------------------------------------------------------------------


def _unavailable(reason: str) -> None:
    if must_not_skip():
        pytest.fail(f"{reason} (CI=true: not skipping)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def ceph_cluster() -> Iterator[CephCluster]:
    """One cephx cluster for the whole session; tests use their own pools (``cluster.new_pool()``)."""
    missing = missing_packages()
    if missing:
        _unavailable(f"Ceph is not installed (Debian packages missing: {', '.join(missing)}; `make install` as "
                     "root installs them and links the Python modules into .venv)")
    directory = pathlib.Path(tempfile.mkdtemp(prefix="strongroom-ceph-"))
    cluster = CephCluster(directory, cephx=True)
    try:
        cluster.start()
    except CephError as err:
        shutil.rmtree(directory, ignore_errors=True)
        _unavailable(f"the Ceph cluster could not start: {err}")
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
