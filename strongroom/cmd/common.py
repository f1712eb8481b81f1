"""What every program does first: threading backend, options, logging, signals."""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
import threading
from collections.abc import Callable

from oslo_config import cfg

from strongroom import backend, config


def setup(argv: list[str] | None, prog: str, default_config_files: list[str] | None = None) -> cfg.ConfigOpts:
    from strongroom.datamover import allocator

    allocator.cap_arenas()  # before any thread: glibc fixes the cap once its ninth arena exists
    backend.init()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>` dumps every thread's stack
    conf = config.register_opts(cfg.ConfigOpts())
    conf.register_cli_opt(debug_opt())
    from strongroom import rpc

    rpc._register_messaging_opts(conf)
    conf(argv if argv is not None else sys.argv[1:], project="strongroom", prog=prog,
         default_config_files=default_config_files)
    logging.basicConfig(level=logging.DEBUG if conf.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("oslo_messaging", "stevedore", "taskflow", "waitress", "alembic", "urllib3", "swiftclient",
                  "botocore", "boto3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return conf


def debug_opt() -> cfg.BoolOpt:
    return cfg.BoolOpt("debug", default=False, help="Log at DEBUG level.")


def wait_for_signal(on_stop: Callable[[int], None]) -> None:
    """Block until SIGINT or SIGTERM, then call ``on_stop`` once (a second signal exits at once)."""
    stopping = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if stopping.is_set():
            raise SystemExit(130)
        stopping.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stopping.wait(0.5):
        pass
    on_stop(0)
