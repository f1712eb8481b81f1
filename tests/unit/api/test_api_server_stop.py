"""Stopping the API server: it ends its event loop and releases its descriptors without ever writing to one
it has closed (a closed descriptor's number is soon another file's).

The race this guards against: ``stop()`` hands its last thunk to the event loop through waitress's trigger,
which appends the thunk and then writes a byte to a pipe to wake the loop.  A loop already awake (a worker
answering, a previous thunk) can run the thunk between the two.  If that thunk closed the pipe, the write
went to a closed descriptor: ``EBADF`` out of ``stop()``, and the rest of the service never stopped.
"""

from __future__ import annotations

import os
import threading

import requests

from strongroom.api.server import APIServer


def _app(environ, start_response):  # noqa: ANN001, ANN202 - a WSGI callable
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def test_stop_survives_its_thunk_running_before_the_trigger_write() -> None:
    server = APIServer(_app, port=0, threads=2)
    server.start()
    assert requests.get(server.url, timeout=5).text == "ok"
    trigger = server._server.trigger
    loop = server._thread
    real_pull = trigger._physical_pull
    pulls = []

    def slow_pull() -> None:
        pulls.append(1)
        if len(pulls) == 2:  # stop()'s last pull: let the loop run the thunk first (woken by another pull)
            real_pull()
            loop.join(5)
            assert not loop.is_alive(), "the event loop did not end on the closing thunk"
        real_pull()

    trigger._physical_pull = slow_pull
    server.stop(timeout=5)  # raised OSError(EBADF) when the thunk closed the pipe
    assert len(pulls) == 2
    assert not loop.is_alive()
    assert trigger._closed and trigger._fds == []  # the pipe is released once the loop has ended


def test_repeated_start_and_stop_leave_no_descriptor_behind() -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    warm = APIServer(_app, port=0, threads=2)
    warm.start()
    warm.stop()
    before = open_fds()
    for _ in range(20):
        server = APIServer(_app, port=0, threads=2)
        server.start()
        done = threading.Event()

        def hit(url: str = server.url, done: threading.Event = done) -> None:
            requests.get(url, timeout=5)
            done.set()

        threading.Thread(target=hit).start()
        done.wait(5)
        server.stop(timeout=5)
    assert open_fds() <= before + 2  # (a descriptor or two of the test's own client may linger)
