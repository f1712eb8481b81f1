"""swiftclient connections, lent one call at a time (they are not thread-safe).

Every connection of a bank shares one Keystone session (``auth_version`` 3),
whose token is renewed before it expires; the pool remembers the tokens and the
storage host its connections used, so that error messages can name the host
and never show a token.

Each connection sees the shared session through a :class:`ConnectionSession`:
swiftclient answers a ``401`` by invalidating its session and authenticating
again only if ``invalidate()`` says it did something, which keystoneauth's
plugin says only to the first of several connections refused the same revoked
or expired token at once (the others then failed for good).  The view drops the
shared token only if it is still the one this connection was refused, and
always lets swiftclient try once more.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from strongroom.bank_plugins.swift.errors import is_http_error
from strongroom.bank_plugins.swift.options import connection_kwargs, host_of

LOG = logging.getLogger(__package__)

#: Idle connections kept for reuse (more may exist while busy).
MAX_IDLE_CONNECTIONS = 16
#: Recent tokens kept to scrub from messages.
REMEMBERED_TOKENS = 32


class ConnectionPool:
    """Connections made by ``connection_factory`` from ``options`` (and a session from ``session_factory``)."""

    def __init__(self, options: Mapping[str, Any], connection_factory: Callable[..., Any],
                 session_factory: Callable[[Mapping[str, Any]], Any]) -> None:
        self._options = options
        self._keystone = str(options.get("auth_version", "1")) == "3"
        self._connection_factory = connection_factory
        self._session_factory = session_factory
        self._session: Any = None
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._closed = False
        self._storage_host: str | None = None
        self._tokens: deque[str] = deque(maxlen=REMEMBERED_TOKENS)
        self._auth_lock = threading.Lock()

    @property
    def storage_host(self) -> str | None:
        """``host:port`` of the storage URL the last connection used (None before the first)."""
        return self._storage_host

    def tokens(self) -> list[str]:
        """The tokens connections recently held (to scrub from messages)."""
        with self._lock:
            return list(self._tokens)

    def _new(self) -> Any:
        session = None
        if self._keystone:
            with self._lock:
                if self._session is None:
                    self._session = self._session_factory(self._options)
                session = ConnectionSession(self._session, self._auth_lock)
        return self._connection_factory(**connection_kwargs(self._options, session))

    def acquire(self) -> Any:
        """An idle connection, or a new one; the caller gives it back with :meth:`release`."""
        conn = None
        with self._lock:
            if self._idle:
                conn = self._idle.pop()
        if conn is None:
            return self._new()
        if self._session is not None and getattr(conn, "url", None):
            # swiftclient keeps the token it first got until Swift refuses it; the
            # session's is renewed before it expires, so an upload never meets a 401.
            view = getattr(conn, "session", None)
            conn.token = (view if isinstance(view, ConnectionSession) else self._session).get_token()
        return conn

    def release(self, conn: Any, broken: bool) -> None:
        """Take ``conn`` back: kept for reuse unless ``broken``, the pool is closed or full."""
        token = getattr(conn, "token", None)
        url = getattr(conn, "url", None)
        with self._lock:
            if isinstance(token, str) and token and token not in self._tokens:
                self._tokens.append(token)
            if isinstance(url, str) and url:
                self._storage_host = host_of(url)
            if not broken and not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        close_quietly(conn)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A connection for one call; a transport failure (not an HTTP answer) discards it."""
        conn = self.acquire()
        broken = True
        try:
            yield conn
            broken = False
        except Exception as err:
            broken = not is_http_error(err)
            raise
        finally:
            self.release(conn, broken)

    def close(self) -> None:
        """Close the idle connections, and the others as they come back.  Idempotent."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            close_quietly(conn)


class ConnectionSession:
    """One connection's view of the bank's shared keystoneauth session (see the module docstring)."""

    def __init__(self, shared: Any, lock: threading.Lock) -> None:
        self.shared = shared
        self._lock = lock
        self._token: str | None = None

    def get_token(self) -> Any:
        """The shared session's token (fetched or renewed if need be), remembered as this connection's."""
        token = self.shared.get_token()
        self._token = token
        return token

    def get_endpoint(self, **kwargs: Any) -> Any:
        return self.shared.get_endpoint(**kwargs)

    def invalidate(self) -> bool:
        """Swift refused this connection's token: drop it from the shared session unless another connection
        already did (its replacement is then kept), and have swiftclient authenticate again (it does so
        once per call: a second 401 is final)."""
        with self._lock:
            auth_ref = getattr(getattr(self.shared, "auth", None), "auth_ref", None)
            current = getattr(auth_ref, "auth_token", None)
            if current is not None and current == self._token:
                self.shared.invalidate()
            self._token = None
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.shared, name)


def close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - a connection that cannot close is gone anyway
        LOG.debug("closing a swift connection failed", exc_info=True)
