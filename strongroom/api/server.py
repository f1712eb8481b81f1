"""The threaded WSGI server of the API (waitress), usable embedded and in tests.

``start()`` binds, serves in a background thread and returns once listening; ``port`` is the bound port
(0 asks for an ephemeral one); ``stop()`` stops accepting, finishes in-flight requests and joins.

Why waitress: one event loop reads every connection and buffers each request, line, headers and body,
until it is complete; only then does a worker thread run the application on it.  A client that trickles
its bytes therefore holds a few kilobytes of buffer, never a worker, so the bounded pool
(``[api] threads``) stays free for requests that have arrived.  A server whose workers read the request
themselves (cheroot, wsgiref, gunicorn's sync and gthread workers) is frozen by as many slow clients as it
has threads.  On top of waitress's idle timeout this module adds what it lacks: a total deadline for the
line and headers (from a request's first byte) and one for the body (from its last header), after which
the client gets ``408 Request Timeout`` and the connection is closed.  Open connections are bounded
(``max_connections``): past it, new ones wait in the kernel's listen queue until one closes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from oslo_config import cfg
from waitress import adjustments, channel, parser, task, wasyncore
from waitress import server as waitress_server

from strongroom.api import errors

LOG = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: Connections the kernel queues before they are accepted (also while ``max_connections`` are open).
LISTEN_BACKLOG = 1024
#: How often (seconds) the event loop looks for connections past a deadline.
SWEEP_INTERVAL = 1


@dataclasses.dataclass(frozen=True)
class ServerLimits:
    """How long a client may take and how much it may hold; the ``[api]`` options of the same names."""

    header_timeout: float = 20.0
    body_timeout: float = 60.0
    keepalive_timeout: int = 30
    max_connections: int = 256
    max_header_size: int = 64 * 1024
    max_body_size: int = 1024 * 1024

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> ServerLimits:
        api = conf.api
        return cls(header_timeout=api.header_timeout, body_timeout=api.body_timeout,
                   keepalive_timeout=api.keepalive_timeout, max_connections=api.max_connections,
                   max_header_size=api.max_header_size, max_body_size=api.max_request_body_size)


@functools.cache
def timeout_answer() -> bytes:
    """The 408 a late client gets before its connection is closed."""
    body = json.dumps(errors.error_body(408, "The request was not received in time; the connection is closed."))
    return (f"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n{body}").encode()

#: What the server itself refuses, before the application sees the request, in the API's own words.
_REFUSALS = {
    413: "The request body is larger than the {limit} bytes this API accepts.",
    431: "The request line and headers are larger than the {limit} bytes this API accepts.",
}


class _JsonErrorTask(task.ErrorTask):  # type: ignore[misc]
    """waitress's answer to a malformed or oversized request, as the API's JSON error (not plain text)."""

    def execute(self) -> None:
        error = self.request.error
        code = int(error.code)
        limits: ServerLimits = self.channel.server.limits
        limit = limits.max_body_size if code == 413 else limits.max_header_size
        message = _REFUSALS.get(code, "The request is malformed: {detail}.").format(limit=limit,
                                                                                  detail=error.body)
        body = json.dumps(errors.error_body(code, message)).encode()
        self.status = f"{code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _TimedParser(parser.HTTPRequestParser):  # type: ignore[misc]
    """A request being received, with when its first byte and its last header arrived."""

    def __init__(self, adj: adjustments.Adjustments) -> None:
        super().__init__(adj)
        self.first_byte_at = time.monotonic()
        self.headers_done_at: float | None = None

    def received(self, data: bytes) -> int:
        consumed: int = super().received(data)
        if self.headers_finished and self.headers_done_at is None:
            self.headers_done_at = time.monotonic()
        return consumed


class _Channel(channel.HTTPChannel):  # type: ignore[misc]
    parser_class = _TimedParser
    error_task_class = _JsonErrorTask


class _Server(waitress_server.TcpWSGIServer):  # type: ignore[misc]
    channel_class = _Channel

    def __init__(self, app: WSGIApp, limits: ServerLimits, **kw: Any) -> None:
        self.limits = limits
        self.timed_out = 0  # connections closed for a missed deadline (for tests and logs)
        super().__init__(app, **kw)

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle connections between requests: keepalive_timeout
        self.close_late(time.monotonic())

    def close_late(self, now: float) -> None:
        for chan in list(self.active_channels.values()):
            request = chan.request
            if request is None or chan.requests or chan.will_close or chan.close_when_flushed:
                continue  # between requests, or a worker is answering: not ours to judge
            if request.headers_done_at is None:
                late = now - request.first_byte_at > self.limits.header_timeout
                what = "headers"
            else:
                late = now - request.headers_done_at > self.limits.body_timeout
                what = "body"
            if late:
                LOG.warning("closing the connection of %s: its request's %s did not arrive in time",
                            chan.addr[0] if chan.addr else "?", what)
                chan.request = None
                chan.write_soon(timeout_answer())
                chan.close_when_flushed = True
                self.timed_out += 1


class APIServer:
    def __init__(self, app: WSGIApp, host: str = "127.0.0.1", port: int = 8799, threads: int = 16,
                 limits: ServerLimits | None = None, **overrides: Any) -> None:
        """``overrides`` replace single fields of ``limits`` (e.g. ``header_timeout=2.0``)."""
        self._app = app
        self._host = host
        self._requested_port = port
        self._threads = threads
        self.limits = dataclasses.replace(limits or ServerLimits(), **overrides)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._server is None:
            return self._requested_port
        return int(self._server.effective_port)

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def timed_out(self) -> int:
        """Connections closed so far because a request's headers or body were late."""
        return self._server.timed_out if self._server is not None else 0

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("APIServer already started")
        limits = self.limits
        adj = adjustments.Adjustments(
            host=self._host, port=self._requested_port, threads=self._threads, ident="strongroom-api",
            backlog=LISTEN_BACKLOG, connection_limit=limits.max_connections,
            channel_timeout=max(1, math.ceil(limits.keepalive_timeout)), cleanup_interval=SWEEP_INTERVAL,
            max_request_header_size=limits.max_header_size, max_request_body_size=limits.max_body_size,
            asyncore_use_poll=True, asyncore_loop_timeout=SWEEP_INTERVAL, expose_tracebacks=False,
            # X-Forwarded-* reach the application, whose http_proxy_to_wsgi trusts them or not
            # ([oslo_middleware] enable_proxy_headers_parsing), as under gunicorn; waitress applies none.
            clear_untrusted_proxy_headers=False)
        server = _Server(self._app, limits, map={}, adj=adj)  # binds and listens: connections queue from here
        self._server = server
        self._thread = threading.Thread(target=server.run, name="strongroom-api", daemon=True)
        self._thread.start()
        LOG.info("API listening on %s", self.url)

    def stop(self, timeout: float = 10.0) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = None
        self._thread = None
        server.trigger.pull_trigger(lambda: _stop_accepting(server))
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=timeout)  # in-flight requests finish
        # The loop may run this thunk before pull_trigger's own write to the pipe: the trigger's
        # descriptors must stay open until the loop has ended, or that write could land in whatever
        # file took their number meanwhile.  So the thunk only takes the trigger out of the loop.
        server.trigger.pull_trigger(lambda: _close_connections(server))
        if thread is not None:
            thread.join(timeout)
        if (thread is None or not thread.is_alive()) and not server.task_dispatcher.threads:
            server.trigger.close()  # nothing can pull it any more
        else:
            LOG.warning("the API server did not stop within %ss; its wake-up pipe is left open", timeout)

    def __enter__(self) -> APIServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stop_accepting(server: _Server) -> None:
    """In the event loop: close the listening socket; answers in progress are still sent."""
    server.accepting = False
    wasyncore.dispatcher.close(server)  # the listening socket only (the server's own close ends the trigger)


def _close_connections(server: _Server) -> None:
    """In the event loop: close every connection and take the trigger out of the map, which ends the loop
    (:meth:`APIServer.stop` closes the trigger once the loop has ended)."""
    for dispatcher in list(server._map.values()):
        if dispatcher is not server.trigger:
            dispatcher.close()
    server.trigger.del_channel()
