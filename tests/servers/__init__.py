"""Real servers on 127.0.0.1 that tests start, use and stop by PID (Swift all-in-one, moto, a fault proxy).

The helpers here are what every server fixture needs: the tail of a log for error messages, stopping a
process by PID, and failing (``CI=true``) or skipping when a server cannot start or be reached.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
from typing import NoReturn

import pytest

#: Runs the program with PR_SET_PDEATHSIG (Linux): it gets SIGTERM when its parent dies.
#: A launcher rather than ``preexec_fn``, which would force a fork() in the test process.
LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def dying_with_parent(command: list[str]) -> list[str]:
    """``command`` run through :data:`LAUNCHER`: on Linux it gets SIGTERM when the thread that started it
    (this process's, for pytest and scripts) exits, so a killed test run leaves no server behind."""
    if sys.platform != "linux":
        return command
    return [sys.executable, "-c", LAUNCHER, str(os.getpid()), *command]


def tail_log(log_path: pathlib.Path, size: int = 3000) -> str:
    """The end of a server's log, for an error message."""
    try:
        text = log_path.read_bytes()[-size:].decode("utf-8", "replace").strip()
    except OSError:
        return "(no log)"
    return text or "(empty log)"


def stop_process(process: subprocess.Popen[bytes], group: bool = False) -> None:
    """SIGTERM ``process`` (by its PID), then SIGKILL it (its whole process group with ``group``: a server
    started with ``start_new_session`` and its forks) if it is still there after 10 s; reap it."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def must_not_skip() -> bool:
    """Under CI a server that cannot start fails the run instead of skipping its tests."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(message: str) -> NoReturn:
    """A server a test needs is missing: the test fails under CI, and is skipped elsewhere."""
    if must_not_skip():
        pytest.fail(f"{message} (CI=true: it must be running)")
    pytest.skip(message)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (for a server that cannot bind port 0 itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_port(host: str, port: int, what: str) -> None:
    """Go on only if something listens on ``host:port`` (a server the machine runs: RabbitMQ, Redis...)."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as err:
        unavailable(f"{what} on {host}:{port} unreachable: {err}")
