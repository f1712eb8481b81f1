"""What every program does first: threading backend, options, logging, signals.

Logging is oslo.log's, set up here for every program (and by :mod:`strongroom.api.wsgi` through
:func:`setup_logging`): its options (``debug``, ``log_file``, ``use_json``, ``use_journal``,
``default_log_levels``, ...) in ``[DEFAULT]``, and its context formatter, which puts the current request
context's request id, global request id, user and project on every line (``doc/operations.md``, Logs).
"""

from __future__ import annotations

import faulthandler
import signal
import sys
import threading
from collections.abc import Callable

from oslo_config import cfg

from strongroom import backend, config


def setup(argv: list[str] | None, prog: str, default_config_files: list[str] | None = None,
          description: str | None = None, epilog: str | None = None) -> cfg.ConfigOpts:
    from strongroom.datamover import allocator

    allocator.cap_arenas()  # before any thread: glibc fixes the cap once its ninth arena exists
    backend.init()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>` dumps every thread's stack
    conf = config.register_opts(cfg.ConfigOpts())
    register_logging_opts(conf)
    from strongroom import rpc

    rpc._register_messaging_opts(conf)
    conf(argv if argv is not None else sys.argv[1:], project="strongroom", prog=prog,
         default_config_files=default_config_files, description=description, epilog=epilog)
    setup_logging(conf)
    return conf


#: Loggers kept at WARNING (oslo.log's ``default_log_levels``): the libraries that log every call or
#: connection at INFO.  A configuration file's ``default_log_levels`` replaces the whole list.
QUIET_LIBRARIES = ("oslo_messaging", "oslo.messaging", "stevedore", "taskflow", "waitress", "alembic", "urllib3",
                   "swiftclient", "botocore", "boto3", "s3transfer", "amqp", "kombu", "sqlalchemy",
                   "keystonemiddleware", "keystoneauth", "routes.middleware", "iso8601", "requests")

#: The user part of each line: user and project ids (oslo.log's default also has four domain fields that
#: this service never sets, each printed as ``-``).
USER_IDENTITY_FORMAT = "%(user)s %(project)s"


def register_logging_opts(conf: cfg.ConfigOpts) -> None:
    """oslo.log's options on ``conf`` (before it parses its command line), with Strongroom's defaults.

    ``debug`` is oslo.log's (``--debug``/``-d`` and ``[DEFAULT] debug``): it replaces the flag of the same
    name and meaning that the programs registered before oslo.log, so both spellings keep working."""
    from oslo_log import log as oslo_logging

    _log_defaults()
    oslo_logging.register_options(conf)


def _log_defaults() -> None:
    from oslo_log import _options
    from oslo_log import log as oslo_logging

    oslo_logging.set_defaults(default_log_levels=[f"{name}=WARN" for name in QUIET_LIBRARIES]
                              + ["oslo_policy=INFO", "oslo.cache=INFO", "dogpile.core.dogpile=INFO"])
    cfg.set_defaults(_options.log_opts, logging_user_identity_format=USER_IDENTITY_FORMAT)


def list_log_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    """oslo.log's options with Strongroom's defaults (the ``strongroom.log`` namespace of the sample
    configuration)."""
    from oslo_log import _options

    _log_defaults()
    return list(_options.list_opts())


def setup_logging(conf: cfg.ConfigOpts) -> None:
    """Configure the root logger from ``conf``'s oslo.log options (replacing any handler it had).

    Without ``log_file``, ``use_journal``, ``use_syslog`` or ``use_stderr``, lines go to standard output."""
    from oslo_log import log as oslo_logging

    oslo_logging.setup(conf, "strongroom", fix_eventlet=False)


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
