"""The one ``qemu-storage-daemon`` a qcow2 backend serves its images through: started, watched, stopped.

The daemon runs as a child of the backend's process with QMP on a unix socket and one NBD server on
another, both in a private directory under the system's temporary directory (a unix socket path is
limited to 108 bytes, which an image directory deep in a tree would exceed).  It is started on first
use; :meth:`Daemon.ensure` starts a new one when the last has died (its images and fleecing views went
with it: every instance has an id, ``<pid>.<start time>``, that snapshots record); :meth:`Daemon.stop`
ends it by PID.

It is started through ``setpriv --pdeathsig`` from a thread that lives exactly as long as the daemon,
so the daemon gets SIGTERM if the process dies without stopping it (a crash, a SIGKILL): otherwise it
would keep the images locked against the next Strongroom.  The state file
(``<dir>/.strongroom/daemon.json``) names the running daemon, so one that survived anyway (no
``setpriv``) is stopped by its PID before the next starts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from typing import Any

from strongroom import exceptions
from strongroom.block.qcow2.qmp import QmpClient, QmpError, QmpGone

LOG = logging.getLogger("strongroom.block.qcow2")

BINARY = "qemu-storage-daemon"
#: The Debian package that ships :data:`BINARY`.
PACKAGE = "qemu-system-common"
#: Seconds a new daemon has to answer on QMP, at least (the operations' timeout when that is longer).
START_TIMEOUT = 30.0


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, from ``/proc``), or None if there is none.
    With the PID it names one process for good: PIDs are reused, start times are not."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def instance_alive(instance: Any) -> bool:
    """Whether the daemon instance ``<pid>.<start time>`` is still running."""
    if not isinstance(instance, str) or "." not in instance:
        return False
    pid, _, start = instance.partition(".")
    return pid.isdigit() and process_start(int(pid)) == start


class Daemon:
    """One qemu-storage-daemon for one image directory (thread-safe)."""

    def __init__(self, state_dir: str, what: str, timeout: float, binary: str | None = None) -> None:
        self.state_dir = state_dir
        self.what = what
        self.timeout = timeout
        self.binary = binary
        self._lock = threading.RLock()
        self._process: subprocess.Popen[bytes] | None = None
        self._qmp: QmpClient | None = None
        self._sockets: str | None = None
        self.instance: str | None = None
        #: Called with no argument after a new daemon started (the backend forgets what the last one had).
        self.on_start: list[Any] = []

    @property
    def nbd_socket(self) -> str:
        assert self._sockets is not None
        return os.path.join(self._sockets, "nbd.sock")

    def _state_file(self) -> str:
        return os.path.join(self.state_dir, "daemon.json")

    def alive(self) -> bool:
        process = self._process
        return process is not None and process.poll() is None and instance_alive(self.instance)

    def died(self, grace: float = 1.0) -> bool:
        """Is the daemon gone?  A connection a daemon just killed refused can come before its exit is
        visible, so a running one is given up to ``grace`` seconds to be seen exiting."""
        process = self._process
        if process is None:
            return True
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            return not instance_alive(self.instance)
        return True

    def ensure(self) -> QmpClient:
        """The running daemon's QMP client, starting a daemon first if none runs (or the last one died)."""
        with self._lock:
            if self._qmp is not None and self.alive():
                return self._qmp
            if self._process is not None:
                LOG.warning("%s: qemu-storage-daemon (pid %s) is gone; starting a new one (the snapshots it "
                            "served are no longer readable)", self.what, self._process.pid)
                self._forget()
            self._start()
            assert self._qmp is not None
            for hook in self.on_start:
                hook()
            return self._qmp

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """One QMP command on the running daemon; its death or silence is ``BlockUnavailable``."""
        client = self.ensure()
        try:
            return client.execute(command, arguments)
        except QmpGone as err:
            raise exceptions.BlockUnavailable(backend=self.what, reason=f"qemu-storage-daemon: {err}") from err

    def transaction(self, actions: list[tuple[str, dict[str, Any]]]) -> None:
        client = self.ensure()
        try:
            client.transaction(actions)
        except QmpGone as err:
            raise exceptions.BlockUnavailable(backend=self.what, reason=f"qemu-storage-daemon: {err}") from err

    # -- start and stop ------------------------------------------------------------------------------

    def _find_binary(self) -> str:
        found = self.binary or shutil.which(BINARY)
        if not found:
            raise exceptions.ConfigError(
                reason=f"{self.what}: {BINARY} is missing: install the Debian package {PACKAGE}")
        return found

    def _start(self) -> None:
        binary = self._find_binary()
        os.makedirs(self.state_dir, exist_ok=True)
        self._stop_recorded()
        self._sockets = tempfile.mkdtemp(prefix="strongroom-qsd-")
        qmp_path = os.path.join(self._sockets, "qmp.sock")
        log_path = os.path.join(self.state_dir, "daemon.log")
        argv = [binary, "--chardev", f"socket,id=qmp0,path={qmp_path},server=on,wait=off",
                "--monitor", "chardev=qmp0",
                "--nbd-server", f"addr.type=unix,addr.path={self.nbd_socket}"]
        setpriv = shutil.which("setpriv")
        if setpriv:
            argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
        self._process = _spawn_kept(argv, log_path)
        # Starting is not an operation: a loaded machine may take seconds just to load the daemon's
        # libraries, so it has at least START_TIMEOUT whatever the operations' timeout.
        budget = max(self.timeout, START_TIMEOUT)
        deadline = time.monotonic() + budget
        seen = "its QMP socket never appeared"
        while True:
            if self._process.poll() is not None:
                raise exceptions.BlockUnavailable(
                    backend=self.what, reason=f"qemu-storage-daemon exited with {self._process.returncode}: "
                    f"{_tail(log_path)}")
            start = process_start(self._process.pid)
            left = deadline - time.monotonic()
            if start is not None and os.path.exists(qmp_path) and left > 0:
                try:
                    self._qmp = QmpClient(qmp_path, self.timeout, greeting_timeout=min(self.timeout, left))
                    break
                except QmpGone as err:
                    seen = f"QMP: {err}"
            if time.monotonic() > deadline:
                state = _process_state(self._process.pid)
                self._kill()
                raise exceptions.BlockUnavailable(
                    backend=self.what, reason=f"qemu-storage-daemon (pid {self._process.pid}, {state}) did not "
                    f"answer on QMP within {budget:g} s ({seen}): {_tail(log_path)}")
            time.sleep(0.005)
        self.instance = f"{self._process.pid}.{start}"
        _write_state(self._state_file(), {"pid": self._process.pid, "instance": self.instance,
                                          "nbd_socket": self.nbd_socket})
        LOG.info("%s: started qemu-storage-daemon (pid %d)", self.what, self._process.pid)

    def _stop_recorded(self) -> None:
        """Stop a daemon that the state file names and that still runs (one that outlived its process)."""
        try:
            with open(self._state_file(), encoding="utf-8") as f:
                recorded = json.load(f)
        except (OSError, ValueError):
            return
        instance = recorded.get("instance") if isinstance(recorded, dict) else None
        if instance_alive(instance):
            pid = int(str(instance).partition(".")[0])
            LOG.warning("%s: stopping the qemu-storage-daemon (pid %d) a previous process left running",
                        self.what, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + self.timeout
            while instance_alive(instance) and time.monotonic() < deadline:
                time.sleep(0.01)

    def _kill(self) -> None:
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=5)

    def _forget(self) -> None:
        if self._qmp is not None:
            self._qmp.close()
        self._qmp = None
        self._process = None
        self.instance = None
        if self._sockets:
            shutil.rmtree(self._sockets, ignore_errors=True)
        self._sockets = None

    def stop(self) -> bool:
        """Stop the daemon (QMP ``quit``, then SIGTERM by its PID: either closes its images cleanly) and reap
        it.  True if it exited with status 0 after closing its images (their persistent dirty bitmaps
        stored, every overlay written), False if it had to be killed or none ran.  Idempotent."""
        with self._lock:
            process = self._process
            if process is None:
                return False
            if self._qmp is not None:
                with contextlib.suppress(QmpGone, QmpError):
                    self._qmp.execute("quit")
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=self.timeout)
            self._kill()
            with contextlib.suppress(OSError):
                os.unlink(self._state_file())
            LOG.info("%s: stopped qemu-storage-daemon (pid %d)", self.what, process.pid)
            self._forget()
            return process.returncode == 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None


def _process_state(pid: int) -> str:
    """What ``/proc`` says process ``pid`` is doing (its state and the kernel function it waits in), for an
    error message about a daemon that does not answer."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            state = next((line.split(":", 1)[1].strip() for line in f if line.startswith("State:")), "?")
        with open(f"/proc/{pid}/wchan", encoding="ascii", errors="replace") as f:
            wchan = f.read().strip() or "-"
    except OSError:
        return "gone"
    return f"state {state}, waiting in {wchan}"


def _spawn_kept(argv: list[str], log_path: str) -> subprocess.Popen[bytes]:
    """Start ``argv`` from a thread that waits for it, so ``--pdeathsig`` (which follows the thread that
    forked) fires when this process ends, not when some worker thread of a pool does."""
    started: queue.Queue[subprocess.Popen[bytes] | BaseException] = queue.Queue()

    def keep() -> None:
        try:
            with open(log_path, "ab") as log:
                process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                           close_fds=True)
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            started.put(err)
            return
        started.put(process)
        process.wait()

    threading.Thread(target=keep, name="qemu-storage-daemon", daemon=True).start()
    got = started.get()
    if isinstance(got, BaseException):
        raise got
    return got


def _write_state(path: str, value: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 1000))
            return f.read().decode("utf-8", "replace").strip() or "(empty log)"
    except OSError:
        return "(no log)"
