"""Concurrency for tests: run callables in threads released together."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def race(n: int, work: Callable[[int], Any], timeout: float = 60.0) -> tuple[list[Any], list[BaseException]]:
    """Run ``work(i)`` for ``i`` in ``range(n)`` in ``n`` threads released together by a barrier; return what
    they returned and what they raised (each in completion order).  Fails if a thread is still running after
    ``timeout`` seconds."""
    barrier = threading.Barrier(n)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait(timeout=10)
        try:
            out = work(i)
        except BaseException as err:
            with lock:
                errors.append(err)
        else:
            with lock:
                results.append(out)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads)
    return results, errors
