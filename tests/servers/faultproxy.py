"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, for tests that put a flaky network in front of Swift or S3.

The proxy listens on a loopback port and relays every connection to one real backend (plain TCP, no TLS).  Point
the client at ``proxy.url`` instead of the backend; the ``Host`` header and every other byte pass through
unchanged, so S3 signatures stay valid and tempauth hands out storage URLs that lead back to the proxy.  It runs
as threads inside the test process (one per client connection), while the clients under test are other
processes::

    with FaultProxy("127.0.0.1", swift_port, seed=1) as proxy:
        proxy.set_faults(rate=0.1, kinds=("5xx", "reset", "stall"), stall_seconds=20)
        ...  # start services whose bank endpoint is proxy.url, protect, restore
        assert proxy.stats().faulted > 0

The proxy understands just enough HTTP to know where each request and response ends on a keep-alive connection:
request line and headers, bodies framed by ``Content-Length`` or ``Transfer-Encoding: chunked``, responses
delimited by length, chunks or connection close, no body for ``HEAD``, 1xx, 204 and 304, interim responses
(``100 Continue``) relayed for clients that send ``Expect: 100-continue`` (botocore, python-swiftclient).  Bodies
are relayed in pieces of at most ``PIECE`` bytes and never buffered whole, so memory stays bounded for any size.
Each client connection has at most one backend connection, opened when first needed and reused while both ends
keep the connection alive.

Fault model
-----------
Faults are decided per **request**, when its head has been read.  A request that the policy applies to (all of
them, unless ``methods``, ``path`` or ``match`` narrow it) is faulted with probability ``rate``; the kind is then
drawn uniformly from ``kinds`` and the point uniformly from ``at``:

``5xx``
    The proxy answers itself with a status drawn from ``statuses`` (500, 502, 503) and a small S3-style XML
    body, and the request never reaches the backend.  A request body is read and discarded first (unless the
    client is waiting for ``100 Continue``, in which case it is never asked for); the connection is then kept
    alive or closed, at random.  ``at`` does not apply.
``reset``
    The client connection is aborted with a TCP RST (``SO_LINGER`` 0).  At point ``request`` this happens as
    soon as the request head is read, before anything is forwarded.  At point ``response`` the request is
    forwarded (the backend performs it!), then the response head and a random part of its body are relayed
    before the reset; a response without a body is reset before its head.  The client sees a connection reset
    or a truncated body.
``stall``
    Like ``reset``, but instead of the RST the proxy stops relaying for ``stall_seconds``, long enough to trip
    the client's read timeout, then closes the connection.  ``stop()`` ends a stall at once.

``rate=0`` (the default) forwards transparently; ``rate=1.0`` fails every request the policy applies to.  With a
``seed`` the decisions are a fixed sequence: the n-th request that the policy applies to always gets the same
verdict, so a single sequential client sees the same faults on every run (concurrent clients interleave, which
is the one source of variation).  Counters (``stats()``) and the list of injected faults (``events()``) let a
test check that faults happened and wait for traffic (``wait_for_requests``).

Run ``python -m tests.servers.faultproxy HOST:PORT --rate 0.1`` to put one in front of a server by hand.
"""

from __future__ import annotations

import argparse
import collections
import enum
import logging
import random
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from types import TracebackType
from typing import Self
from xml.sax.saxutils import escape

LOG = logging.getLogger(__name__)

KINDS = ("5xx", "reset", "stall")
"""Fault kinds, see the module docstring."""
POINTS = ("request", "response")
"""Where a ``reset`` or ``stall`` strikes: before forwarding the request, or while relaying the response."""
PIECE = 128 * 1024
"""Largest piece of a body held in memory at once (per connection)."""
MAX_HEAD = 64 * 1024
"""Largest request or response head accepted, and longest chunk-size line."""
MAX_EVENTS = 10_000
"""How many injected faults ``events()`` remembers."""
CUT_SPAN = 2 * PIECE
"""A ``response`` fault on a body of unknown length strikes within its first CUT_SPAN bytes."""


class _ProtocolError(Exception):
    """The peer sent something this proxy cannot frame; the connection is dropped."""


class _UpstreamGone(ConnectionError):
    """The backend closed its connection before answering (a keep-alive race that can be retried)."""


class _End(enum.Enum):
    """How a client connection continues after a request."""

    KEEP = "keep"  # wait for the next request
    CLOSE = "close"  # close normally
    LINGER = "linger"  # half-close, swallow what the client still sends, then close (its body was never read)
    RESET = "reset"  # abort with RST


# --------------------------------------------------------------------------------------------------------------
# Value objects


@dataclass(frozen=True)
class Request:
    """A request head as the client sent it (what ``match`` predicates receive)."""

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]
    raw: bytes = field(repr=False, compare=False)

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), repeated fields joined by commas; None if absent."""
        return _header(self.headers, name)

    @property
    def path(self) -> str:
        """The request target without its query string."""
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        return _keep_alive(self.version, self.headers)

    @property
    def expects_continue(self) -> bool:
        return self.version == "HTTP/1.1" and "100-continue" in _tokens(self.headers, "expect")


@dataclass(frozen=True)
class _Response:
    version: str
    status: int
    headers: tuple[tuple[str, str], ...]
    raw: bytes = field(repr=False)

    @property
    def keep_alive(self) -> bool:
        return _keep_alive(self.version, self.headers)


@dataclass(frozen=True)
class _Framing:
    """How a body ends: ``none``, ``length`` (``length`` bytes), ``chunked`` or ``close`` (at end of stream)."""

    kind: str
    length: int = 0


_NO_BODY = _Framing("none")


@dataclass(frozen=True)
class FaultPolicy:
    """Which requests fail and how; see the module docstring.  Immutable: ``set_faults`` swaps in a new one."""

    rate: float = 0.0
    kinds: tuple[str, ...] = KINDS
    at: tuple[str, ...] = POINTS
    stall_seconds: float = 30.0
    statuses: tuple[int, ...] = (500, 502, 503)
    methods: frozenset[str] | None = None
    path: re.Pattern[str] | None = None
    match: Callable[[Request], bool] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], not {self.rate}")
        if not self.kinds or set(self.kinds) - set(KINDS):
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, not {self.kinds}")
        if not self.at or set(self.at) - set(POINTS):
            raise ValueError(f"at must be a non-empty subset of {POINTS}, not {self.at}")
        if self.stall_seconds < 0:
            raise ValueError("stall_seconds must not be negative")
        if not self.statuses or any(not 500 <= s <= 599 for s in self.statuses):
            raise ValueError(f"statuses must be 5xx codes, not {self.statuses}")

    def applies(self, request: Request) -> bool:
        """Whether ``request`` may be faulted at all (the filters; ``rate`` decides whether it is)."""
        if self.methods is not None and request.method not in self.methods:
            return False
        if self.path is not None and not self.path.search(request.path):
            return False
        return self.match is None or self.match(request)


@dataclass(frozen=True)
class FaultEvent:
    """One injected fault: the proxy's request number (1-based, in arrival order), the request and the fault.

    ``at`` is always ``request`` for a ``5xx``; ``status`` is the injected status of a ``5xx``, else None.
    """

    number: int
    method: str
    target: str
    kind: str
    at: str
    status: int | None


@dataclass(frozen=True)
class ProxyStats:
    """A snapshot of the proxy's counters.

    ``requests`` counts request heads read; ``forwarded`` those the backend answered; ``completed`` those whose
    whole response reached the client; ``faults`` injected faults by kind; ``errors`` connections dropped
    because a peer misbehaved or the backend was unreachable (not injected faults).
    """

    connections: int
    requests: int
    forwarded: int
    completed: int
    faults: dict[str, int]
    errors: int

    @property
    def faulted(self) -> int:
        return sum(self.faults.values())


@dataclass(frozen=True)
class _Decision:
    kind: str
    at: str
    status: int
    cut: float  # fraction of the response body relayed before a ``response`` fault
    keep_alive: bool  # whether a ``5xx`` keeps the connection open
    stall_seconds: float


@dataclass
class _Counters:
    connections: int = 0
    requests: int = 0
    forwarded: int = 0
    completed: int = 0
    errors: int = 0
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    events: collections.deque[FaultEvent] = field(default_factory=lambda: collections.deque(maxlen=MAX_EVENTS))


# --------------------------------------------------------------------------------------------------------------
# The proxy


class FaultProxy:
    """A thread-based HTTP/1.1 proxy from ``listen_host:listen_port`` to ``target_host:target_port``.

    ``timeout`` bounds every wait on a socket while a request is in flight (an idle keep-alive client
    connection waits for its next request until the client closes it or the proxy stops).
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        seed: int | None = None,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        faults: FaultPolicy | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.target = (target_host, target_port)
        self.timeout = timeout
        self._listen = (listen_host, listen_port)
        self._policy = faults or FaultPolicy()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._counters = _Counters()
        self._connections: set[_Connection] = set()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._port: int | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._acceptor: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind the listening socket and start accepting; returns self.  A proxy starts once."""
        if self._listener is not None or self._stopping.is_set():
            raise RuntimeError("a FaultProxy starts only once")
        family = socket.AF_INET6 if ":" in self._listen[0] else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(self._listen)
            listener.listen(128)
        except OSError:
            listener.close()
            raise
        listener.setblocking(False)
        self._listener = listener
        self._port = int(listener.getsockname()[1])
        self._wake = socket.socketpair()
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"faultproxy-{self.port}", daemon=True)
        self._acceptor.start()
        LOG.debug("faultproxy %s -> %s:%s started", self.url, *self.target)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, abort every connection (ending stalls), join all threads and close the port."""
        if self._listener is None or self._stopping.is_set():
            self._stopping.set()
            return
        self._stopping.set()
        assert self._wake is not None and self._acceptor is not None
        self._wake[1].send(b"x")
        self._acceptor.join(timeout)
        self._listener.close()
        for sock in self._wake:
            sock.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.abort()
        deadline = time.monotonic() + timeout
        for connection in connections:
            connection.thread.join(max(0.0, deadline - time.monotonic()))
        LOG.debug("faultproxy %s stopped: %s", self.url, self.stats())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the proxy is not started")
        return self._port

    @property
    def url(self) -> str:
        host = self._listen[0]
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def __repr__(self) -> str:
        where = self.url if self._listener is not None else "not started"
        return f"<FaultProxy {where} -> {self.target[0]}:{self.target[1]} {self._policy}>"

    # -- faults -------------------------------------------------------------------------------------------------

    def set_faults(
        self,
        rate: float = 0.0,
        *,
        kinds: Iterable[str] = KINDS,
        at: Iterable[str] = POINTS,
        stall_seconds: float = 30.0,
        statuses: Iterable[int] = (500, 502, 503),
        methods: Iterable[str] | None = None,
        path: str | None = None,
        match: Callable[[Request], bool] | None = None,
    ) -> FaultPolicy:
        """Replace the whole fault policy (arguments left out take their defaults) and return it.

        ``methods`` (e.g. ``("PUT",)``), ``path`` (a regular expression searched in the request path) and
        ``match`` (a predicate on the ``Request``) narrow which requests may fail; requests in flight keep the
        policy they started with.
        """
        policy = FaultPolicy(
            rate=rate,
            kinds=tuple(kinds),
            at=tuple(at),
            stall_seconds=stall_seconds,
            statuses=tuple(statuses),
            methods=None if methods is None else frozenset(m.upper() for m in methods),
            path=None if path is None else re.compile(path),
            match=match,
        )
        self._policy = policy
        return policy

    @property
    def faults(self) -> FaultPolicy:
        """The fault policy in force."""
        return self._policy

    def _decide(self, request: Request) -> _Decision | None:
        policy = self._policy
        applies = policy.rate > 0 and policy.applies(request)
        with self._changed:
            self._counters.requests += 1
            number = self._counters.requests
            self._changed.notify_all()
            if not applies:
                return None
            # Always the same number of draws per request, so that the verdict sequence depends only on the seed.
            rng = self._rng
            hit = rng.random() < policy.rate
            decision = _Decision(
                kind=policy.kinds[rng.randrange(len(policy.kinds))],
                at=policy.at[rng.randrange(len(policy.at))],
                status=policy.statuses[rng.randrange(len(policy.statuses))],
                cut=rng.random(),
                keep_alive=rng.random() < 0.5,
                stall_seconds=policy.stall_seconds,
            )
            if not hit:
                return None
            at = "request" if decision.kind == "5xx" else decision.at
            status = decision.status if decision.kind == "5xx" else None
            self._counters.faults[decision.kind] += 1
            self._counters.events.append(FaultEvent(number, request.method, request.target, decision.kind, at, status))
        LOG.debug(
            "faultproxy: request %d %s %s gets %s at %s", number, request.method, request.target, decision.kind, at
        )
        return decision

    # -- counters -----------------------------------------------------------------------------------------------

    def stats(self) -> ProxyStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> ProxyStats:
        c = self._counters
        faults = {kind: c.faults[kind] for kind in KINDS}
        return ProxyStats(c.connections, c.requests, c.forwarded, c.completed, faults, c.errors)

    def events(self) -> list[FaultEvent]:
        """The injected faults, oldest first (the last ``MAX_EVENTS``)."""
        with self._lock:
            return list(self._counters.events)

    def reset_stats(self) -> None:
        """Zero the counters and forget the events (the random sequence continues)."""
        with self._lock:
            self._counters = _Counters()

    def wait_until(self, predicate: Callable[[ProxyStats], bool], timeout: float = 10.0) -> ProxyStats:
        """Block until ``predicate(stats)`` holds and return those stats; ``TimeoutError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(stats := self._snapshot()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"faultproxy: condition not met within {timeout}s: {stats}")
                self._changed.wait(remaining)
            return stats

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> ProxyStats:
        """Block until at least ``count`` requests have been seen (since the last ``reset_stats``)."""
        return self.wait_until(lambda stats: stats.requests >= count, timeout)

    def _count(self, name: str) -> None:
        with self._changed:
            setattr(self._counters, name, getattr(self._counters, name) + 1)
            self._changed.notify_all()

    # -- connections --------------------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wake is not None
        listener, wake = self._listener, self._wake[0]
        number = 0
        while not self._stopping.is_set():
            _wait_readable((listener, wake), None)
            if self._stopping.is_set():
                break
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as err:  # out of descriptors, say: do not spin
                LOG.warning("faultproxy: accept failed: %s", err)
                self._stopping.wait(0.1)
                continue
            number += 1
            connection = _Connection(self, sock, number)
            with self._changed:
                self._counters.connections += 1
                self._connections.add(connection)
                self._changed.notify_all()
            connection.thread.start()

    def _forget(self, connection: _Connection) -> None:
        with self._lock:
            self._connections.discard(connection)


class _Connection:
    """One client connection, served by its own thread, with at most one backend connection."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, number: int) -> None:
        self.proxy = proxy
        client.settimeout(proxy.timeout)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client = client
        self.creader = _Reader(client)
        self.up: socket.socket | None = None
        self.ureader: _Reader | None = None
        self._lock = threading.Lock()
        self._aborted = False
        self.thread = threading.Thread(target=self.run, name=f"faultproxy-{proxy.port}-{number}", daemon=True)

    def abort(self) -> None:
        """Wake the thread from any blocking call (called by ``FaultProxy.stop``)."""
        with self._lock:
            self._aborted = True
            for sock in (self.client, self.up):
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def run(self) -> None:
        end = _End.CLOSE
        try:
            while not self.proxy._stopping.is_set():
                request = self._read_request()
                if request is None:
                    break
                end = self._serve(request)
                if end is not _End.KEEP:
                    break
        except (OSError, _ProtocolError) as err:
            if not self.proxy._stopping.is_set():
                LOG.debug("faultproxy: dropping connection: %r", err)
                self.proxy._count("errors")
            end = _End.CLOSE
        finally:
            self._drop_upstream()
            _close(self.client, _End.CLOSE if end is _End.KEEP else end, self.proxy._stopping)
            self.proxy._forget(self)

    def _read_request(self) -> Request | None:
        self.client.settimeout(None)  # an idle keep-alive connection waits for as long as the client likes
        head = _read_head(self.creader)
        self.client.settimeout(self.proxy.timeout)
        if head is None:
            return None
        start, headers = _parse_head(head)
        parts = start.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _ProtocolError(f"bad request line {start!r}")
        return Request(parts[0].upper(), parts[1], parts[2], headers, head)

    def _serve(self, request: Request) -> _End:
        decision = self.proxy._decide(request)
        if decision is not None and decision.kind == "5xx":
            return self._answer(request, decision.status, decision.keep_alive, "injected by faultproxy")
        if decision is not None and decision.at == "request":
            return self._inflict(decision)
        try:
            reused = self._ensure_upstream()
        except OSError as err:
            LOG.warning("faultproxy: backend %s:%s unreachable: %s", *self.proxy.target, err)
            self.proxy._count("errors")
            return self._answer(request, 502, False, f"faultproxy: backend unreachable: {err}")
        return self._forward(request, decision, reused)

    def _answer(self, request: Request, status: int, keep_alive: bool, message: str) -> _End:
        """Answer ``request`` from the proxy itself, without forwarding it."""
        framing = _request_framing(request)
        body_unread = framing.kind != "none"
        if body_unread and not request.expects_continue:
            _relay_body(self.creader, None, framing)  # read and discard, so the connection can carry on
            body_unread = False
        keep_alive = keep_alive and request.keep_alive and not body_unread
        self.client.sendall(_error_response(status, keep_alive, message, head_only=request.method == "HEAD"))
        if keep_alive:
            return _End.KEEP
        return _End.LINGER if body_unread else _End.CLOSE

    def _inflict(self, decision: _Decision) -> _End:
        """Carry out a ``reset`` or ``stall`` now."""
        self._drop_upstream()
        if decision.kind == "reset":
            return _End.RESET
        self.proxy._stopping.wait(decision.stall_seconds)
        return _End.CLOSE

    def _forward(self, request: Request, decision: _Decision | None, reused: bool) -> _End:
        framing = _request_framing(request)
        try:
            response, early = self._exchange(request, framing)
        except _UpstreamGone:
            if not reused or framing.kind != "none":
                raise
            # The backend closed an idle keep-alive connection as we reused it; a bodyless request can be resent.
            self._drop_upstream()
            self._ensure_upstream()
            response, early = self._exchange(request, framing)
        self.proxy._count("forwarded")
        if early:  # the client will not send its body, or will send it to no one: it must not reuse the connection
            response = replace(response, raw=_closing(response.raw))
        body = _response_framing(request.method, response)
        budget: int | None = None
        if decision is not None:  # a reset or stall while relaying the response
            budget = _cut(decision.cut, body)
            if budget is None:
                return self._inflict(decision)
        self.client.sendall(response.raw)
        assert self.ureader is not None
        _relay_body(self.ureader, self.client, body, budget)
        if decision is not None:
            return self._inflict(decision)
        self.proxy._count("completed")
        both_alive = request.keep_alive and response.keep_alive and body.kind != "close"
        if early or not both_alive:
            self._drop_upstream()
        if early:
            return _End.LINGER  # the backend answered before the client sent its body
        return _End.KEEP if both_alive else _End.CLOSE

    def _exchange(self, request: Request, framing: _Framing) -> tuple[_Response, bool]:
        """Send the request upstream and return the backend's final response head, and whether it came before
        the client sent its body (interim 1xx responses are relayed to the client on the way)."""
        assert self.up is not None
        try:
            self.up.sendall(request.raw)
        except (BrokenPipeError, ConnectionResetError) as err:
            raise _UpstreamGone(str(err)) from err
        if framing.kind != "none":
            if request.expects_continue:
                early = self._await_continue()
                if early is not None:
                    return early, True
            _relay_body(self.creader, self.up, framing)
        return self._read_final_response(first=True), False

    def _await_continue(self) -> _Response | None:
        """With ``Expect: 100-continue``: wait for the backend's ``100 Continue`` (relayed to the client) or for
        the client to send its body anyway; a final response that comes first is returned instead."""
        assert self.up is not None and self.ureader is not None
        deadline = time.monotonic() + self.proxy.timeout
        while True:
            if not self.ureader.pending():
                if self.creader.pending():
                    return None
                ready = _wait_readable((self.up, self.client), deadline - time.monotonic())
                if not ready:
                    raise TimeoutError("neither backend nor client moved after Expect: 100-continue")
                if self.up not in ready:
                    return None  # the client did not wait
            response = self._read_response_head(first=False)
            if response.status == 100:
                self.client.sendall(response.raw)
                return None
            if 100 < response.status < 200:
                self._relay_interim(response)
                continue
            return response

    def _read_final_response(self, first: bool) -> _Response:
        while True:
            response = self._read_response_head(first)
            if not 100 <= response.status < 200:
                return response
            self._relay_interim(response)
            first = False

    def _relay_interim(self, response: _Response) -> None:
        if response.status == 101:
            raise _ProtocolError("protocol upgrades are not supported")
        self.client.sendall(response.raw)

    def _read_response_head(self, first: bool) -> _Response:
        assert self.ureader is not None
        try:
            head = _read_head(self.ureader)
        except ConnectionResetError as err:
            if first:
                raise _UpstreamGone(str(err)) from err
            raise
        if head is None:
            if first:
                raise _UpstreamGone("backend closed the connection before answering")
            raise _ProtocolError("backend closed the connection before answering")
        start, headers = _parse_head(head)
        parts = start.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise _ProtocolError(f"bad status line {start!r}")
        return _Response(parts[0], int(parts[1]), headers, head)

    def _ensure_upstream(self) -> bool:
        """Make sure a backend connection is open; True if an existing one is reused."""
        if self.up is not None and self.ureader is not None:
            if not self.ureader.pending() and not _wait_readable((self.up,), 0.0):
                return True
            self._drop_upstream()  # closed by the backend (or sending unsolicited bytes): start afresh
        sock = socket.create_connection(self.proxy.target, timeout=self.proxy.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self._aborted:
                sock.close()
                raise ConnectionAbortedError("the proxy is stopping")
            self.up = sock
        self.ureader = _Reader(sock)
        return False

    def _drop_upstream(self) -> None:
        with self._lock:
            sock, self.up, self.ureader = self.up, None, None
        if sock is not None:
            sock.close()


# --------------------------------------------------------------------------------------------------------------
# HTTP/1.1 framing


class _Reader:
    """Buffered reads from a socket: whole lines for heads and chunk sizes, pieces for bodies."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._scratch: memoryview | None = None

    def pending(self) -> int:
        """Bytes already received but not yet consumed."""
        return len(self._buf)

    def readline(self) -> bytes:
        """One line including its LF; b"" at end of stream before any byte of it."""
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end >= 0:
                line = bytes(self._buf[: end + 1])
                del self._buf[: end + 1]
                return line
            if len(self._buf) > MAX_HEAD:
                raise _ProtocolError("line too long")
            start = len(self._buf)
            data = self._sock.recv(PIECE)
            if not data:
                if self._buf:
                    raise _ProtocolError("connection closed in the middle of a line")
                return b""
            self._buf += data

    def read_some(self, size: int) -> bytes | memoryview:
        """Up to ``size`` (at most PIECE) bytes, b"" at end of stream; a view is valid until the next call."""
        if self._buf:
            piece = bytes(self._buf[:size])
            del self._buf[:size]
            return piece
        if self._scratch is None:
            self._scratch = memoryview(bytearray(PIECE))
        received = self._sock.recv_into(self._scratch[: min(size, PIECE)])
        return self._scratch[:received]


def _read_head(reader: _Reader) -> bytes | None:
    """The raw head (start line to blank line) of the next message; None at a clean end of stream."""
    lines: list[bytes] = []
    size = 0
    while True:
        line = reader.readline()
        if not line:
            if lines:
                raise _ProtocolError("connection closed in the middle of a head")
            return None
        if line in (b"\r\n", b"\n"):
            if lines:
                lines.append(line)
                return b"".join(lines)
            continue  # tolerated blank lines between messages
        size += len(line)
        if size > MAX_HEAD:
            raise _ProtocolError("head too large")
        lines.append(line)


def _parse_head(head: bytes) -> tuple[str, tuple[tuple[str, str], ...]]:
    lines = head.decode("latin-1").split("\n")
    headers = []
    for line in lines[1:]:
        line = line.rstrip("\r")
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name[0] in " \t" or name != name.rstrip():
            raise _ProtocolError(f"bad header line {line!r}")
        headers.append((name, value.strip()))
    return lines[0].rstrip("\r"), tuple(headers)


def _header(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    values = [value for key, value in headers if key.lower() == name]
    return ", ".join(values) if values else None


def _tokens(headers: tuple[tuple[str, str], ...], name: str) -> set[str]:
    value = _header(headers, name) or ""
    return {token.strip().lower() for token in value.split(",") if token.strip()}


def _keep_alive(version: str, headers: tuple[tuple[str, str], ...]) -> bool:
    tokens = _tokens(headers, "connection")
    if version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def _content_length(headers: tuple[tuple[str, str], ...]) -> int | None:
    value = _header(headers, "content-length")
    if value is None:
        return None
    lengths = {v.strip() for v in value.split(",")}
    if len(lengths) != 1 or not (length := lengths.pop()).isdigit():
        raise _ProtocolError(f"bad Content-Length {value!r}")
    return int(length)


def _request_framing(request: Request) -> _Framing:
    codings = _header(request.headers, "transfer-encoding")
    if codings is not None:
        if codings.split(",")[-1].strip().lower() != "chunked":
            raise _ProtocolError(f"cannot frame a request with Transfer-Encoding {codings!r}")
        return _Framing("chunked")
    length = _content_length(request.headers)
    return _Framing("length", length) if length else _NO_BODY


def _response_framing(method: str, response: _Response) -> _Framing:
    if method == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200:
        return _NO_BODY
    codings = _header(response.headers, "transfer-encoding")
    if codings is not None:
        chunked = codings.split(",")[-1].strip().lower() == "chunked"
        return _Framing("chunked") if chunked else _Framing("close")
    length = _content_length(response.headers)
    if length is not None:
        return _Framing("length", length) if length else _NO_BODY
    return _Framing("close")


def _closing(head: bytes) -> bytes:
    """A response ``head`` whose Connection header says ``close``."""
    lines = [line for line in head.rstrip(b"\r\n").split(b"\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([line.rstrip(b"\r") for line in lines] + [b"Connection: close", b"", b""])


def _cut(fraction: float, body: _Framing) -> int | None:
    """How many body bytes a ``response`` fault lets through; None if there is no body to cut into."""
    if body.kind == "none":
        return None
    if body.kind == "length":
        return int(fraction * body.length)  # strictly less than the whole body
    return int(fraction * CUT_SPAN)


def _relay_body(src: _Reader, dst: socket.socket | None, body: _Framing, budget: int | None = None) -> bool:
    """Relay one body from ``src`` to ``dst`` (None discards it), at most ``budget`` bytes of it on the wire.

    Returns whether the whole body went through.  Stops before the last chunk of a chunked body when the budget
    runs out, so that a cut body is always visibly incomplete.
    """
    if body.kind == "none":
        return True
    if body.kind == "length":
        return _relay_length(src, dst, body.length, budget)
    if body.kind == "chunked":
        return _relay_chunked(src, dst, budget)
    return _relay_until_close(src, dst, budget)


def _send(dst: socket.socket | None, data: bytes | memoryview) -> None:
    if dst is not None:
        dst.sendall(data)


def _relay_length(src: _Reader, dst: socket.socket | None, length: int, budget: int | None) -> bool:
    remaining = length if budget is None else min(length, budget)
    while remaining:
        piece = src.read_some(min(remaining, PIECE))
        if not piece:
            raise _ProtocolError(f"connection closed {remaining} bytes before the end of a body")
        _send(dst, piece)
        remaining -= len(piece)
    return budget is None or budget >= length


def _relay_chunked(src: _Reader, dst: socket.socket | None, budget: int | None) -> bool:
    sent = 0
    while True:
        line = src.readline()
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _ProtocolError(f"bad chunk size line {line!r}") from None
        if size == 0:
            if budget is not None:
                return False
            _send(dst, line)
            while (trailer := src.readline()) not in (b"\r\n", b"\n"):
                if not trailer:
                    raise _ProtocolError("connection closed in the trailers of a chunked body")
                _send(dst, trailer)
            _send(dst, trailer)
            return True
        if budget is not None and sent + len(line) > budget:
            return False
        _send(dst, line)
        sent += len(line)
        remaining = size + 2  # the data and its CRLF
        while remaining:
            want = min(remaining, PIECE) if budget is None else min(remaining, PIECE, budget - sent)
            if want == 0:
                return False
            piece = src.read_some(want)
            if not piece:
                raise _ProtocolError("connection closed in the middle of a chunk")
            _send(dst, piece)
            sent += len(piece)
            remaining -= len(piece)


def _relay_until_close(src: _Reader, dst: socket.socket | None, budget: int | None) -> bool:
    sent = 0
    while True:
        want = PIECE if budget is None else min(PIECE, budget - sent)
        if want == 0:
            return False
        piece = src.read_some(want)
        if not piece:
            return True
        _send(dst, piece)
        sent += len(piece)


_PHRASES = {status.value: status.phrase for status in HTTPStatus}


def _error_response(status: int, keep_alive: bool, message: str, *, head_only: bool) -> bytes:
    code = {500: "InternalError", 502: "BadGateway", 503: "ServiceUnavailable"}.get(status, "InternalError")
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{escape(message)}</Message>'
        "</Error>\n"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {_PHRASES.get(status, 'Server Error')}\r\n"
        "Content-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n"
        "X-Faultproxy: injected\r\n\r\n"
    ).encode()
    return head if head_only else head + body


# --------------------------------------------------------------------------------------------------------------
# Sockets


def _wait_readable(socks: tuple[socket.socket, ...], timeout: float | None) -> list[socket.socket]:
    """The sockets among ``socks`` with data or an end of stream to read, after at most ``timeout`` (None: no
    limit)."""
    poller = select.poll()
    by_fd = {sock.fileno(): sock for sock in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    return [by_fd[fd] for fd, _ in poller.poll(None if timeout is None else max(0.0, timeout) * 1000)]


def _close(sock: socket.socket, end: _End, stopping: threading.Event) -> None:
    """Close a client socket the way ``end`` says."""
    try:
        if end is _End.RESET:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif end is _End.LINGER:
            # The client may still be sending a body nobody will read: closing now would answer it with an RST
            # that can destroy our response before the client reads it.  Half-close and swallow it for a while.
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(0.2)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and not stopping.is_set():
                try:
                    if not sock.recv(PIECE):
                        break
                except TimeoutError:
                    continue
    except OSError:
        pass
    finally:
        sock.close()


# --------------------------------------------------------------------------------------------------------------
# By hand


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.servers.faultproxy", description=__doc__.split("\n")[0])
    parser.add_argument("target", help="HOST:PORT of the backend")
    parser.add_argument("--listen-port", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--at", default=",".join(POINTS))
    parser.add_argument("--stall-seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    with FaultProxy(host or "127.0.0.1", int(port), seed=args.seed, listen_port=args.listen_port) as proxy:
        proxy.set_faults(
            args.rate, kinds=args.kinds.split(","), at=args.at.split(","), stall_seconds=args.stall_seconds
        )
        print(f"{proxy.url} -> {args.target}, {proxy.faults}", flush=True)
        try:
            while True:
                time.sleep(10)
                print(proxy.stats(), flush=True)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
