"""Select oslo.service's threading backend, and keep eventlet out of the process.

Every program's ``main`` calls :func:`init` first.  Importing this module does nothing.

eventlet is installed because oslo.service depends on it, and futurist (under oslo.messaging and taskflow)
imports it whenever it is installed; eventlet then imports a patched copy of dnspython beside the real one.
On the threading backend nothing ever uses it: it was 300 modules and 19 MiB of every service's memory
(an embedded service with a loopback provider started at 120 MiB, 101 MiB without it).  So :func:`init`
makes ``import eventlet`` fail as if it were not installed (unless something imported it already), which
every library here handles: futurist, oslo.utils, kombu and oslo.messaging's threading executor test for it.
"""

from __future__ import annotations

import sys
import threading
import warnings

_lock = threading.Lock()
_done = False


def init() -> None:
    global _done
    with _lock:
        if _done:
            return
        if "eventlet" not in sys.modules:
            sys.modules["eventlet"] = None  # type: ignore[assignment]  # Python's "not importable" marker
        # Should eventlet have been imported already, its warning still stays out of the logs.
        warnings.filterwarnings("ignore", message="\\s*Eventlet is deprecated", category=Warning)
        from oslo_service import backend

        try:
            backend.init_backend(backend.BackendType.THREADING)
        except Exception:  # noqa: BLE001 - already initialised by an embedding program
            if backend.get_backend_type() != backend.BackendType.THREADING:
                raise
        _done = True
