"""Slow clients cannot freeze the API: the real app on the real server on 127.0.0.1, with dozens of
connections that trickle their headers (or, after full headers, their body) one byte at a time.

A normal request must still answer within 1 s while they are open, and the server must close each slow
connection once its header or body timeout has passed.  ``STRONGROOM_SLOW_CLIENTS`` sets how many
(default 64).
"""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from apiharness import Stack, running_stack

SLOW_CLIENTS = int(os.environ.get("STRONGROOM_SLOW_CLIENTS", "64"))
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
MAX_HEADER = 4096  # small, so that an oversized request is read whole (no reset on the close)
TRICKLE_EVERY = 0.2  # seconds between two bytes of a slow client: far below any per-read timeout


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, header_timeout=HEADER_TIMEOUT, body_timeout=BODY_TIMEOUT,
                       max_connections=SLOW_CLIENTS + 32, max_header_size=MAX_HEADER) as running:
        yield running


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


class SlowClients:
    """Connections that each send one more byte every ``TRICKLE_EVERY`` s, and note when the server ends them."""

    def __init__(self, url: str, count: int) -> None:
        self.sockets: list[socket.socket] = []
        self.payloads: list[bytes] = []
        self.opened_at = time.monotonic()
        self.closed_at: dict[int, float] = {}
        self.answers: dict[int, bytes] = {}
        for index in range(count):
            sock = socket.create_connection(_address(url), timeout=5)
            if index % 3 == 2:  # full headers at once, then a body that never arrives in time
                sock.sendall(b"POST /v1/proj-a/plans HTTP/1.1\r\nHost: x\r\nX-Auth-Token: t\r\n"
                             b"Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n")
                self.payloads.append(b"{" + b" " * 1998 + b"}")
            else:  # headers a byte at a time
                self.payloads.append(b"GET /v1/proj-a/plans HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 2000)
            self.sockets.append(sock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        sent = [0] * len(self.sockets)
        while not self._stop.is_set() and len(self.closed_at) < len(self.sockets):
            for index, sock in enumerate(self.sockets):
                if index in self.closed_at:
                    continue
                try:
                    sock.send(self.payloads[index][sent[index]:sent[index] + 1])
                    sent[index] += 1
                except OSError:
                    self._closed(index)
            readable, _, _ = select.select([s for i, s in enumerate(self.sockets) if i not in self.closed_at],
                                           [], [], TRICKLE_EVERY)
            for sock in readable:
                index = self.sockets.index(sock)
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if data:
                    self.answers[index] = self.answers.get(index, b"") + data
                else:
                    self._closed(index)

    def _closed(self, index: int) -> None:
        self.closed_at.setdefault(index, time.monotonic())

    def wait_all_closed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.closed_at) < len(self.sockets) and time.monotonic() < deadline:
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self.sockets:
            sock.close()


def test_normal_request_answers_within_1s_while_slow_clients_trickle(stack: Stack) -> None:
    slow = SlowClients(stack.url, SLOW_CLIENTS)
    try:
        time.sleep(0.5)  # every slow client has started its request
        assert not slow.closed_at, "the server closed slow connections before their timeout"
        for _ in range(3):
            started = time.monotonic()
            resp = requests.get(f"{stack.url}/v1/proj-a/plans", headers={"X-Auth-Token": "t"}, timeout=5)
            elapsed = time.monotonic() - started
            assert resp.status_code == 200, resp.text
            assert elapsed < 1.0, f"a normal GET took {elapsed:.2f} s with {SLOW_CLIENTS} slow clients open"

        slow.wait_all_closed(timeout=max(HEADER_TIMEOUT, BODY_TIMEOUT) + 4.0)
        assert len(slow.closed_at) == SLOW_CLIENTS, (
            f"only {len(slow.closed_at)} of {SLOW_CLIENTS} slow connections were closed by the server")
        assert stack.server.timed_out == SLOW_CLIENTS  # closed for their deadline, not for another reason
        earliest = min(slow.closed_at.values()) - slow.opened_at
        assert earliest >= min(HEADER_TIMEOUT, BODY_TIMEOUT) - 0.1, f"closed after {earliest:.2f} s only"
        for index, answer in slow.answers.items():  # told why, unless the close's reset overtook the answer
            assert answer.startswith(b"HTTP/1.1 408 "), (index, answer[:200])
    finally:
        slow.close()


def _raw(stack: Stack, request: bytes) -> tuple[int, dict[str, Any]]:
    with socket.create_connection(_address(stack.url), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_oversized_headers_and_bodies_are_refused_at_once_in_json(stack: Stack) -> None:
    """The server refuses them before buffering them, with the API's JSON error naming the limit."""
    code, body = _raw(stack, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEADER + 1000) + b"\r\n\r\n")
    assert code == 431
    assert body["requestHeaderFieldsTooLarge"]["message"] == (
        f"The request line and headers are larger than the {MAX_HEADER} bytes this API accepts.")
    code, body = _raw(stack, b"POST /v1/proj-a/plans HTTP/1.1\r\nHost: x\r\nX-Auth-Token: t\r\n"
                             b"Content-Length: 99999999\r\n\r\n{}")
    assert code == 413 and "413" in json.dumps(body)
