"""The fault proxy against a tiny real HTTP/1.1 backend: transparent when told to, failing visibly when told to."""

from __future__ import annotations

import hashlib
import http.client
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.servers.faultproxy import FaultProxy

MiB = 1024 * 1024
PATTERN = bytes(range(256)) * 4096  # 1 MiB


def blob(size: int) -> Iterator[bytes]:
    """The deterministic content the backend serves for /blob/<size>, in pieces."""
    while size > 0:
        yield PATTERN[: min(size, len(PATTERN))]
        size -= len(PATTERN)


def digest(pieces: Iterator[bytes] | list[bytes]) -> str:
    sha = hashlib.sha256()
    for piece in pieces:
        sha.update(piece)
    return sha.hexdigest()


class Backend(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = 0

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # connections the proxy drops mid-response are expected here


class Handler(BaseHTTPRequestHandler):
    """PUT /anything -> 201 "<size> <sha256>"; GET|HEAD /blob/<size>[?mode=chunked|close] -> that many bytes."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body go out in separate writes
    server: Backend

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle_expect_100(self) -> bool:
        if not self.path.startswith("/reject"):
            return super().handle_expect_100()
        self.send_response(401)  # a final answer instead of 100 Continue, on a connection said to stay open
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def _count(self) -> None:
        with self.server.lock:
            self.server.requests += 1

    def _body(self) -> Iterator[bytes]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while size := int(self.rfile.readline().split(b";")[0], 16):
                yield self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            return
        remaining = int(self.headers.get("Content-Length", 0))
        while remaining:
            piece = self.rfile.read(min(remaining, MiB))
            remaining -= len(piece)
            yield piece

    def do_PUT(self) -> None:
        self._count()
        size = 0
        sha = hashlib.sha256()
        for piece in self._body():
            size += len(piece)
            sha.update(piece)
        reply = f"{size} {sha.hexdigest()}".encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        self._count()
        match = re.fullmatch(r"/blob/(\d+)(?:\?mode=(\w+))?", self.path)
        if match is None:
            self.send_error(404)
            return
        size, mode = int(match[1]), match[2] or "length"
        self.send_response(200)
        if mode == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        elif mode == "close":
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(size))
        self.end_headers()
        if head:
            return
        for piece in blob(size):
            self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece) if mode == "chunked" else piece)
        if mode == "chunked":
            self.wfile.write(b"0\r\n\r\n")


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    server = Backend()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("faultproxy")]


@pytest.fixture
def proxy(backend: Backend) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", backend.port, seed=1234) as running:
        yield running
    assert proxy_threads() == []


def test_transparent_mode_round_trips_large_bodies_on_one_keep_alive_connection(
    backend: Backend, proxy: FaultProxy
) -> None:
    connections_before = backend.connections
    payload = b"".join(blob(20 * MiB))
    with requests.Session() as session:
        put = session.put(f"{proxy.url}/objects/big", data=payload, timeout=30)
        assert put.status_code == 201
        assert put.text == f"{len(payload)} {digest([payload])}"

        with session.get(f"{proxy.url}/blob/{20 * MiB}", stream=True, timeout=30) as get:
            assert get.status_code == 200
            assert digest(get.iter_content(MiB)) == digest([payload])

        head = session.head(f"{proxy.url}/blob/{20 * MiB}", timeout=5)
        assert head.status_code == 200
        assert head.headers["Content-Length"] == str(20 * MiB)
        assert session.get(f"{proxy.url}/blob/3", timeout=5).content == PATTERN[:3]

    stats = proxy.wait_until(lambda stats: stats.completed == 4)  # counted just after the last byte is relayed
    assert (stats.connections, stats.requests, stats.forwarded) == (1, 4, 4)
    assert stats.faulted == 0 and stats.errors == 0
    assert backend.connections == connections_before + 1  # the backend connection was kept alive too


def test_chunked_request_and_response_bodies_and_close_delimited_responses(proxy: FaultProxy) -> None:
    with requests.Session() as session:
        put = session.put(f"{proxy.url}/objects/chunked", data=blob(5 * MiB + 7), timeout=30)
        assert put.status_code == 201
        assert put.request.headers["Transfer-Encoding"] == "chunked"
        assert put.text == f"{5 * MiB + 7} {digest(blob(5 * MiB + 7))}"

        chunked = session.get(f"{proxy.url}/blob/{3 * MiB}?mode=chunked", timeout=30)
        assert chunked.headers["Transfer-Encoding"] == "chunked"
        assert digest([chunked.content]) == digest(blob(3 * MiB))

        closing = session.get(f"{proxy.url}/blob/{2 * MiB}?mode=close", timeout=30)
        assert digest([closing.content]) == digest(blob(2 * MiB))
        assert session.get(f"{proxy.url}/blob/10", timeout=5).content == PATTERN[:10]  # on a new connection
    proxy.wait_until(lambda stats: stats.completed == 4)


def send_expecting_continue(
    port: int, body: bytes, path: str = "/objects/expect"
) -> tuple[bytes, http.client.HTTPResponse | None]:
    """PUT with ``Expect: 100-continue``: what came back before the body, and the final response if it was sent."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("PUT", path)
    conn.putheader("Content-Length", str(len(body)))
    conn.putheader("Expect", "100-continue")
    conn.endheaders()
    assert conn.sock is not None
    interim = conn.sock.recv(64 * 1024)
    if not interim.startswith(b"HTTP/1.1 100 "):
        conn.close()
        return interim, None
    conn.send(body)
    return interim, conn.getresponse()


def test_expect_100_continue_is_relayed(proxy: FaultProxy) -> None:
    interim, response = send_expecting_continue(proxy.port, PATTERN)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert response is not None and response.status == 201
    assert response.read() == f"{MiB} {digest([PATTERN])}".encode()

    interim, response = send_expecting_continue(proxy.port, PATTERN, "/reject")
    assert response is None  # the backend refused the body: the client is told not to reuse the connection
    assert interim.startswith(b"HTTP/1.1 401 ") and b"\r\nConnection: close\r\n" in interim

    proxy.set_faults(1.0, kinds=["5xx"], statuses=[503])
    interim, response = send_expecting_continue(proxy.port, PATTERN)
    assert response is None  # answered at once, without asking for the body, and the connection closes
    assert interim.startswith(b"HTTP/1.1 503 ") and b"\r\nConnection: close\r\n" in interim


def test_5xx_faults_answer_without_forwarding(backend: Backend, proxy: FaultProxy) -> None:
    proxy.set_faults(1.0, kinds=["5xx"], statuses=[503])
    before = backend.requests
    with requests.Session() as session:
        get = session.get(f"{proxy.url}/blob/100", timeout=5)
        put = session.put(f"{proxy.url}/objects/x", data=PATTERN, timeout=5)
        head = session.head(f"{proxy.url}/blob/100", timeout=5)
    assert [r.status_code for r in (get, put, head)] == [503, 503, 503]
    assert get.headers["X-Faultproxy"] == "injected" and b"ServiceUnavailable" in get.content
    assert head.content == b""
    assert backend.requests == before
    stats = proxy.stats()
    assert stats.faults == {"5xx": 3, "reset": 0, "stall": 0} and stats.forwarded == 0


def test_reset_before_forwarding_is_a_connection_reset(backend: Backend, proxy: FaultProxy) -> None:
    proxy.set_faults(1.0, kinds=["reset"], at=["request"])
    before = backend.requests
    with pytest.raises(requests.ConnectionError, match="reset|aborted|Broken pipe"):
        requests.get(f"{proxy.url}/blob/100", timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.put(f"{proxy.url}/objects/x", data=b"".join(blob(4 * MiB)), timeout=5)
    assert backend.requests == before
    assert proxy.stats().faults["reset"] == 2


def test_reset_while_relaying_the_response_truncates_it(backend: Backend, proxy: FaultProxy) -> None:
    proxy.set_faults(1.0, kinds=["reset"], at=["response"])
    for mode in ("length", "chunked", "close"):
        with pytest.raises(requests.exceptions.ChunkedEncodingError, match="reset"):
            with requests.get(f"{proxy.url}/blob/{2 * MiB}?mode={mode}", stream=True, timeout=5) as response:
                assert response.status_code == 200
                for _ in response.iter_content(MiB):
                    pass
    before = backend.requests
    with pytest.raises(requests.ConnectionError):  # no body to cut into: reset before the head
        requests.head(f"{proxy.url}/blob/{MiB}", timeout=5)
    assert backend.requests == before + 1  # the backend did serve it
    assert proxy.stats().faults["reset"] == 4


def test_stall_trips_the_client_read_timeout_and_stop_ends_it(proxy: FaultProxy) -> None:
    proxy.set_faults(1.0, kinds=["stall"], at=["request"], stall_seconds=30)
    with pytest.raises(requests.ReadTimeout):
        requests.get(f"{proxy.url}/blob/100", timeout=(5, 0.3))

    proxy.set_faults(1.0, kinds=["stall"], at=["response"], stall_seconds=30)
    with requests.get(f"{proxy.url}/blob/{4 * MiB}", stream=True, timeout=(5, 0.3)) as response:
        assert response.status_code == 200
        with pytest.raises(requests.ConnectionError, match="timed out"):
            for _ in response.iter_content(MiB):
                pass
    assert proxy.stats().faults["stall"] == 2
    started = time.monotonic()
    proxy.stop()
    assert time.monotonic() - started < 2
    assert proxy_threads() == []


def run_requests(proxy: FaultProxy, count: int) -> int:
    """Alternate small GETs and PUTs through one session; return how many failed visibly."""
    failures = 0
    with requests.Session() as session:
        for number in range(count):
            try:
                if number % 2:
                    response = session.put(f"{proxy.url}/objects/{number}", data=PATTERN[:4096], timeout=5)
                else:
                    response = session.get(f"{proxy.url}/blob/4096", timeout=5)
                    assert response.status_code >= 500 or response.content == PATTERN[:4096]
                failures += response.status_code >= 500
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                failures += 1
    return failures


def test_ten_percent_of_requests_fail_visibly_and_deterministically(backend: Backend, proxy: FaultProxy) -> None:
    proxy.set_faults(0.1, stall_seconds=0.02)
    failures = run_requests(proxy, 200)
    stats = proxy.wait_until(lambda stats: stats.completed + stats.faulted == 200)
    assert stats.requests == 200
    assert 10 <= stats.faulted <= 35, stats
    assert all(stats.faults[kind] > 0 for kind in ("5xx", "reset", "stall")), stats
    assert failures == stats.faulted  # every injected fault is seen by the client, nothing else fails

    with FaultProxy("127.0.0.1", backend.port, seed=1234) as again:
        again.set_faults(0.1, stall_seconds=0.02)
        run_requests(again, 200)
        assert again.events() == proxy.events()


def test_filters_choose_which_requests_fail(proxy: FaultProxy) -> None:
    proxy.set_faults(1.0, kinds=["5xx"], methods=["put"], path=r"^/objects/")
    with requests.Session() as session:
        assert session.get(f"{proxy.url}/blob/10", timeout=5).status_code == 200
        assert session.put(f"{proxy.url}/other", data=b"x", timeout=5).status_code == 201
        assert session.put(f"{proxy.url}/objects/1", data=b"x", timeout=5).status_code >= 500
    proxy.set_faults(1.0, kinds=["5xx"], match=lambda request: request.header("x-fail") == "yes")
    assert requests.get(f"{proxy.url}/blob/10", timeout=5).status_code == 200
    assert requests.get(f"{proxy.url}/blob/10", headers={"X-Fail": "yes"}, timeout=5).status_code >= 500
    assert [(e.method, e.target) for e in proxy.events()] == [("PUT", "/objects/1"), ("GET", "/blob/10")]


def test_many_concurrent_keep_alive_clients(proxy: FaultProxy) -> None:
    def client(number: int) -> None:
        with requests.Session() as session:
            for _ in range(3):
                put = session.put(f"{proxy.url}/objects/{number}", data=PATTERN[: 256 * 1024], timeout=30)
                assert put.status_code == 201
                assert session.get(f"{proxy.url}/blob/{256 * 1024}", timeout=30).content == PATTERN[: 256 * 1024]

    with ThreadPoolExecutor(24) as pool:
        list(pool.map(client, range(24)))
    assert proxy.wait_for_requests(144, timeout=5).requests == 144
    stats = proxy.wait_until(lambda stats: stats.completed == 144)
    assert (stats.connections, stats.errors) == (24, 0)
    with pytest.raises(TimeoutError):
        proxy.wait_for_requests(145, timeout=0.05)


def test_unreachable_backend_gives_502() -> None:
    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()
    with FaultProxy("127.0.0.1", port) as proxy:
        response = requests.get(f"{proxy.url}/x", timeout=5)
    assert response.status_code == 502 and b"unreachable" in response.content


def test_stop_closes_the_port_and_leaves_no_threads(proxy: FaultProxy) -> None:
    idle = socket.create_connection(("127.0.0.1", proxy.port))
    proxy.wait_until(lambda stats: stats.connections == 1, timeout=5)
    port = proxy.port
    proxy.stop()
    assert proxy_threads() == []
    assert idle.recv(1) == b""  # the idle keep-alive connection was closed
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
