"""The API as an importable WSGI application, for gunicorn, uwsgi or mod_wsgi::

    STRONGROOM_CONFIG_FILE=/etc/strongroom/strongroom.conf \\
        gunicorn --workers 4 --threads 8 --bind 0.0.0.0:8799 strongroom.api.wsgi:application

Importing this module only selects oslo.service's threading backend (see below); the application is built
on its first request, in the worker that serves it (after the server forked), from the files named by
``STRONGROOM_CONFIG_FILE`` (several separated by ``os.pathsep``) or else oslo.config's default locations
(``/etc/strongroom/strongroom.conf``, ...).  It uses the configured ``transport_url`` and
``[database] connection``, and beats in the services table as ``strongroom-api``.

The schema is not migrated here: when the database is not at this version's revision, every request
answers 503 naming ``strongroom-manage db sync``, and the build is tried again on the next request, so the
API recovers once the operator has synced.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from strongroom import backend

LOG = logging.getLogger(__name__)

# Here, not at the first request: choosing the backend imports eventlet, which re-imports a private copy of
# ``threading`` that takes over the calling thread's exit lock.  Done in a WSGI server's request thread, that
# thread can then never be joined and the worker hangs at exit until it is killed; done here, in the thread
# that imports the application, it is harmless.  It opens nothing and starts no thread.
backend.init()

CONFIG_ENV = "STRONGROOM_CONFIG_FILE"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def config_files(environ: dict[str, str] | None = None) -> list[str] | None:
    """The files named by ``STRONGROOM_CONFIG_FILE``, or None for oslo.config's default locations."""
    value = (os.environ if environ is None else environ).get(CONFIG_ENV, "")
    files = [f for f in value.split(os.pathsep) if f.strip()]
    return files or None


class LazyApplication:
    """A WSGI callable that builds the real application on first use (thread-safe, retried on failure)."""

    def __init__(self, files: list[str] | None = None) -> None:
        self._files = files  # None: STRONGROOM_CONFIG_FILE, read when the application is built
        self._lock = threading.Lock()
        self._app: WSGIApp | None = None
        self._closers: list[Callable[[], None]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        app = self._app
        if app is None:
            try:
                app = self._build()
            except Exception as err:  # noqa: BLE001 - answered as a JSON 503 naming the reason, then retried
                return self._unavailable(err, environ, start_response)
        return app(environ, start_response)

    def _build(self) -> WSGIApp:
        with self._lock:
            if self._app is None:
                self._app = build(self._files if self._files is not None else config_files(), self)
            return self._app

    def close(self) -> None:
        """Stop the heartbeat, close the RPC transport and the database pool (at interpreter exit)."""
        closers, self._closers = self._closers, []
        for close in reversed(closers):
            try:
                close()
            except Exception:  # noqa: BLE001 - best effort while the process exits
                LOG.debug("error while closing the API", exc_info=True)

    @staticmethod
    def _unavailable(err: BaseException, environ: dict[str, Any],
                     start_response: Callable[..., Any]) -> Iterable[bytes]:
        from strongroom import exceptions
        from strongroom.api import errors

        if isinstance(err, exceptions.StrongroomError):
            message = f"The API cannot start: {err.message}"
            LOG.error("%s", message)
        else:
            message = "The API cannot start: an unexpected error occurred (see the server's log)."
            LOG.error("The API cannot start", exc_info=err)
        return errors.error_response(503, message)(environ, start_response)  # type: ignore[no-any-return]


def build(files: list[str] | None, owner: LazyApplication | None = None) -> WSGIApp:
    """The configured application: options, logging (oslo.log), metadata store, RPC transport, heartbeat."""
    backend.init()  # before oslo.messaging is imported (a no-op when the module's import did it)
    from oslo_config import cfg

    from strongroom import config, exceptions, heartbeat, rpc
    from strongroom.api.app import make_app
    from strongroom.cmd import common
    from strongroom.db import migration
    from strongroom.db.api import Database
    from strongroom.protection.rpcapi import ProtectionAPI

    conf = config.register_opts(cfg.ConfigOpts())
    configured = bool(logging.getLogger().handlers)  # the WSGI server may have configured logging already
    common.register_logging_opts(conf)
    rpc._register_messaging_opts(conf)
    defaults = files if files is not None else cfg.find_config_files(project="strongroom")
    try:
        conf([], project="strongroom", prog="strongroom-api", default_config_files=defaults)
    except (cfg.Error, OSError) as err:
        raise exceptions.ConfigError(reason=str(err)) from err
    # oslo.log's, as every program's; a root logger the WSGI server configured is kept unless the
    # configuration says where the lines go.
    if not configured or conf.log_file or conf.use_journal or conf.use_json or conf.log_config_append:
        common.setup_logging(conf)
    db = Database(config.database_url(conf), quota_defaults=config.quota_defaults(conf))
    revision, head = db.version(), migration.head()
    if revision != head:
        db.dispose()
        raise exceptions.ConfigError(
            reason=f"the metadata store {db.url_for_display} is at schema revision {revision or 'none'} but this "
                   f"API needs {head}: run 'strongroom-manage db sync'")
    token = None
    if conf.auth_strategy == "noauth":
        from strongroom import admin_token

        try:
            token = admin_token.resolve(conf.admin_token, conf.state_dir)[0]
        except exceptions.ConfigError:
            db.dispose()
            raise
    transport = rpc.get_transport(conf, url=conf.transport_url)
    app = make_app(conf, db, ProtectionAPI(transport, conf.protection_topic), admin_token=token)
    beat = heartbeat.Heartbeat(db, conf.host, ["strongroom-api"], conf.protection_topic,
                               float(conf.heartbeat_interval))
    beat.start()
    if owner is not None:
        owner._closers += [db.dispose, transport.cleanup, beat.stop]
        _at_exit(owner.close)
    LOG.info("strongroom-api WSGI application ready (pid %d, metadata %s)", os.getpid(), db.url_for_display)
    return app


def _at_exit(callback: Callable[[], None]) -> None:
    """Run ``callback`` when the interpreter exits, before it waits for non-daemon threads.

    oslo.messaging's drivers keep non-daemon threads: without closing the transport first, a worker that
    its WSGI server asked to stop would hang until it is killed.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(callback)
    else:  # pragma: no cover - every supported Python has it
        import atexit

        atexit.register(callback)


#: What WSGI servers import: ``strongroom.api.wsgi:application``.
application = LazyApplication()
