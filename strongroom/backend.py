"""Select oslo.service's threading backend before anything imports eventlet.

Every program's ``main`` calls :func:`init` first.  Importing this module does nothing.
"""

from __future__ import annotations

import threading
import warnings

_lock = threading.Lock()
_done = False


def init() -> None:
    global _done
    with _lock:
        if _done:
            return
        # futurist imports eventlet when it is installed (oslo.service depends on it); we never use it.
        warnings.filterwarnings("ignore", message="\\s*Eventlet is deprecated", category=Warning)
        from oslo_service import backend

        try:
            backend.init_backend(backend.BackendType.THREADING)
        except Exception:  # noqa: BLE001 - already initialised by an embedding program
            if backend.get_backend_type() != backend.BackendType.THREADING:
                raise
        _done = True
