"""Keep glibc from mapping and unmapping every chunk-sized buffer, and from hoarding them.

glibc serves allocations above ``M_MMAP_THRESHOLD`` (dynamic, 128 KiB to 32 MiB)
with a fresh ``mmap`` and gives them back with ``munmap`` on free.  The data
mover allocates a few MiB per chunk (read buffer, compressed copy, bank value),
so each chunk costs ~1000 page faults and the kernel zeroing its pages: on a
VM this doubled restore time.  :func:`tune` raises the mmap threshold once per
process so these buffers are reused from the heap.

Reused from which heap matters.  glibc gives threads their own arenas (up to 8
per core), and a thread arena gives memory back only when the free space at its
top exceeds ``M_TRIM_THRESHOLD`` (``malloc_trim`` does not shrink it).  A
service runs each protect on one of its long-lived threads, with new worker
threads each time: once 16 arenas existed, new threads were handed them in
turn, each arena kept its ~16 MiB high-water mark of chunk buffers, and the
service's RSS grew by 20-45 MiB per protect (123 to 391 MiB over ten;
``doc/data-path.md``), the 256 MiB trim threshold set here keeping every arena
from ever shrinking.  So:

* :data:`TRIM_THRESHOLD` is 16 MiB, the smallest that costs a restore no page
  faults (8 MiB took a 1 GiB restore from 15,000 minor faults to 490,000);
* :func:`tune` gives the free chunks of every arena back with ``malloc_trim(0)``
  at every call (the start of each backup, restore or verify), and :func:`release`
  at the end of each (a restore's threads left ~25-40 MiB in the service until its next
  run);
* :func:`cap_arenas` caps the arenas at :data:`ARENA_MAX`.  glibc fixes the cap
  when its ninth arena is made, so a service calls it first thing, before its
  threads start (``MALLOC_ARENA_MAX=2`` in the environment does the same);
  :func:`tune` calls it too, which is enough for a command-line process.
  Python's small objects do not use malloc's arenas, so two are plenty.

Called by ``backup``/``restore``/``verify`` (never at import time); a no-op
where ``mallopt`` is not available (non-glibc).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import Any

LOG = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 64 * 1024 * 1024
TRIM_THRESHOLD = 16 * 1024 * 1024
ARENA_MAX = 2

_lock = threading.Lock()
_libc: Any = None
_done = False


def _load() -> Any:
    global _libc
    if _libc is None:
        libc: Any
        try:
            libc = ctypes.CDLL(None)
            libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            libc.mallopt.restype = ctypes.c_int
            libc.malloc_trim.argtypes = [ctypes.c_size_t]
            libc.malloc_trim.restype = ctypes.c_int
        except (OSError, AttributeError):
            LOG.debug("mallopt is not available; leaving the allocator alone")
            libc = False
        _libc = libc
    return _libc


def cap_arenas() -> bool:
    """Cap glibc's arenas at :data:`ARENA_MAX` (effective if fewer than nine exist yet).  True if set."""
    with _lock:
        libc = _load()
        return bool(libc) and bool(libc.mallopt(M_ARENA_MAX, ARENA_MAX))


def tune() -> bool:
    """Set glibc's thresholds once per process, and give back the free memory earlier runs left.
    True if the thresholds are set."""
    global _done
    if not _done:
        cap_arenas()
    with _lock:
        libc = _load()
        if not libc:
            return False
        if not _done:
            _done = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        done = _done
    release()
    return done


def release() -> None:
    """Give the free memory of every arena back now (``malloc_trim(0)``): what a run leaves when it ends."""
    with _lock:
        libc = _load()
        if libc:
            libc.malloc_trim(0)
