"""A small synchronous QMP client: JSON lines over the daemon's unix socket.

QMP is line-delimited JSON: the daemon greets, the client answers ``qmp_capabilities``, then each
command carries an ``id`` and gets exactly one ``return`` or ``error`` with that id; events (``event``)
may come in between and are skipped (the backend polls ``query-block-jobs`` instead of waiting for
them).  One lock per client makes it safe to share between threads, one command at a time; every
read and write has a timeout, so a daemon that hangs fails the call in bounded time.

``qemu.qmp`` (PyPI) is asyncio throughout; its synchronous face is its ``legacy`` module, documented as
not a stable interface, and it runs an event loop per client, which does not sit well in the service's
thread pools.  The protocol needs sixty lines, so they are here.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
from collections.abc import Iterable, Mapping
from typing import Any

#: The largest single QMP message accepted (a query-named-block-nodes answer of many nodes stays far below).
MAX_LINE = 16 << 20


class QmpError(Exception):
    """The daemon answered a command with an error: ``klass`` is QMP's error class (``GenericError``...)."""

    def __init__(self, command: str, klass: str, desc: str) -> None:
        super().__init__(f"{command}: {desc}")
        self.command = command
        self.klass = klass
        self.desc = desc


class QmpGone(Exception):
    """The socket could not be reached, closed, timed out or spoke something that is not QMP."""


class QmpClient:
    """One QMP connection, negotiated on construction."""

    def __init__(self, path: str, timeout: float, greeting_timeout: float | None = None) -> None:
        """``timeout`` bounds every command; ``greeting_timeout`` (default ``timeout``) the connection and
        the negotiation."""
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._buffer = b""
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout if greeting_timeout is None else greeting_timeout)
        try:
            self._sock.connect(path)
            greeting = self._receive()
            if "QMP" not in greeting:
                raise QmpGone(f"no QMP greeting on {path}: {str(greeting)[:200]}")
            self.execute("qmp_capabilities")
            self._sock.settimeout(timeout)
        except (OSError, QmpGone) as err:
            self._sock.close()
            raise err if isinstance(err, QmpGone) else QmpGone(f"QMP socket {path}: {err}") from err

    def execute(self, command: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """The command's ``return`` value; ``QmpError`` for its ``error``, ``QmpGone`` if the daemon is."""
        with self._lock:
            ident = next(self._ids)
            message: dict[str, Any] = {"execute": command, "id": ident}
            if arguments:
                message["arguments"] = dict(arguments)
            try:
                self._sock.sendall(json.dumps(message).encode() + b"\n")
                while True:
                    answer = self._receive()
                    if answer.get("id") != ident:
                        continue  # an event, or a late answer to a command that timed out
                    if "error" in answer:
                        error = answer["error"]
                        raise QmpError(command, str(error.get("class")), str(error.get("desc")))
                    return answer.get("return")
            except OSError as err:
                raise QmpGone(f"{command}: {err}") from err

    def transaction(self, actions: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """QMP ``transaction``: every action or none (a backup job with its fleecing target, later a dirty
        bitmap switched beside it)."""
        self.execute("transaction", {"actions": [{"type": kind, "data": dict(data)} for kind, data in actions]})

    def _receive(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE:
                raise QmpGone("QMP message too long")
            chunk = self._sock.recv(65536)
            if not chunk:
                raise QmpGone("the daemon closed its QMP socket")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            value = json.loads(line)
        except ValueError as err:
            raise QmpGone(f"not QMP: {line[:200]!r}") from err
        if not isinstance(value, dict):
            raise QmpGone(f"not QMP: {line[:200]!r}")
        return value

    def close(self) -> None:
        self._sock.close()
