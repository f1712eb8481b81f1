"""A real threaded WSGI server (cheroot) for the API, usable embedded and in tests.

``start()`` binds, serves in a background thread and returns once listening; ``port`` is the bound port
(0 asks for an ephemeral one); ``stop()`` stops accepting, finishes in-flight requests and joins.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from cheroot import wsgi

LOG = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: Connections the kernel queues before they are accepted.  cheroot's default (5) overflows as soon as a few
#: dozen clients connect at once: their SYNs are dropped and retried after 1 s, 3 s, ..., and some
#: connections are reset (seen with 50 clients in benchmarks/bench_api_load.py).
LISTEN_BACKLOG = 128


class APIServer:
    def __init__(self, app: WSGIApp, host: str = "127.0.0.1", port: int = 8799, threads: int = 16) -> None:
        self._app = app
        self._host = host
        self._requested_port = port
        self._threads = threads
        self._server: wsgi.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._server is None:
            return self._requested_port
        return int(self._server.bind_addr[1])

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("APIServer already started")
        server = wsgi.Server((self._host, self._requested_port), self._app, numthreads=self._threads,
                             server_name="strongroom-api", request_queue_size=LISTEN_BACKLOG)
        server.prepare()  # binds and listens: the port is known and connections queue from here on
        self._server = server
        self._thread = threading.Thread(target=server.serve, name="strongroom-api", daemon=True)
        self._thread.start()
        LOG.info("API listening on %s", self.url)

    def stop(self, timeout: float = 10.0) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.stop()
        if thread is not None:
            thread.join(timeout)
        self._server = None
        self._thread = None

    def __enter__(self) -> APIServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
