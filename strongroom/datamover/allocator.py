"""Keep glibc from mapping and unmapping every chunk-sized buffer.

glibc serves allocations above ``M_MMAP_THRESHOLD`` (dynamic, 128 KiB to 32 MiB)
with a fresh ``mmap`` and gives them back with ``munmap`` on free.  The data
mover allocates a few MiB per chunk (read buffer, compressed copy, bank value),
so each chunk costs ~1000 page faults and the kernel zeroing its pages: on a
VM this doubled restore time.  :func:`tune` raises the thresholds once per
process so these buffers are reused from the heap.  The memory kept is bounded
by the data mover's own peak (a few chunks per worker).

Called by ``backup``/``restore``/``verify`` (never at import time); a no-op
where ``mallopt`` is not available (non-glibc).
"""

from __future__ import annotations

import ctypes
import logging
import threading

LOG = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 * 1024 * 1024
TRIM_THRESHOLD = 256 * 1024 * 1024

_lock = threading.Lock()
_done = False


def tune() -> bool:
    """Raise glibc's mmap and trim thresholds once per process.  True if they are set."""
    global _done
    with _lock:
        if _done:
            return True
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            LOG.debug("mallopt is not available; leaving the allocator alone")
            return False
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        return _done
