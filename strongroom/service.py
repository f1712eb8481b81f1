"""Assembling the services: metadata store, providers, RPC, the protection manager and the API.

The all-in-one runs all of it in one process on the in-process transport; the
deployed programs each run their part.  Every piece is started here and
stopped in reverse order by :meth:`Services.stop`.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
from typing import IO, Any

from oslo_config import cfg
from oslo_service import service as oslo_service

from strongroom import config, exceptions, heartbeat, keys, metrics, notifications, rpc
from strongroom.clock import Clock

LOG = logging.getLogger(__name__)


def resolve_providers_dir(conf: cfg.ConfigOpts) -> str:
    """``providers_dir`` as given, else relative to the source tree (a checkout's ``providers.d``), else the
    installed samples (``<sys.prefix>/share/strongroom/providers.d``, :mod:`strongroom.paths`)."""
    from strongroom import paths

    path = str(conf.providers_dir)
    if os.path.isabs(path) or os.path.isdir(path):
        return os.path.abspath(path)
    shipped = paths.data_path(path)
    return shipped if os.path.isdir(shipped) else os.path.abspath(path)


def embedded_owner_id(host: str, state_dir: str) -> str:
    """The all-in-one's owner id: stable across restarts of the same state directory, so that a
    restarted all-in-one reclaims its predecessor's unfinished checkpoints at once."""
    digest = hashlib.sha256(os.path.abspath(state_dir).encode()).hexdigest()[:8]
    return f"{host}-aio-{digest}"


def lock_state_dir(state_dir: str) -> IO[bytes]:
    """Hold an exclusive lock on ``<state_dir>/.lock`` for the life of the process.

    It proves that no other all-in-one uses the directory, which is what lets a
    restarted all-in-one take its predecessor's lease over.
    """
    path = os.path.join(state_dir, ".lock")
    handle = open(path, "a+b")  # noqa: SIM115 - held until the process stops
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise exceptions.ConfigError(
            reason=f"state directory {os.path.abspath(state_dir)} is in use by another strongroom-all-in-one "
                   f"(lock {path})") from None
    return handle


class Services(oslo_service.ServiceBase):  # type: ignore[misc]
    """Everything one process runs, built from its configuration."""

    def __init__(self, conf: cfg.ConfigOpts, *, run_api: bool = True, run_protection: bool = True,
                 transport_url: str | None = None, embedded: bool = False, clock: Clock | None = None,
                 run_operationengine: bool | None = None) -> None:
        self.conf = conf
        self.run_api = run_api
        self.run_protection = run_protection
        self.run_operationengine = embedded if run_operationengine is None else run_operationengine
        self.operationengine: Any = None
        self.transport_url = transport_url
        self.embedded = embedded
        self.clock = clock or Clock()
        self.db: Any = None
        self.registry: Any = None
        self.manager: Any = None
        self.api_server: Any = None
        self.admin_token_file: str | None = None  # where noauth's generated administrator token is kept
        self._rpc_server: Any = None
        self._transport: Any = None
        self._persistence: Any = None
        self._stop = threading.Event()
        self._heartbeat: heartbeat.Heartbeat | None = None
        self._state_lock: IO[bytes] | None = None
        self._board: Any = None
        self._conductor: Any = None
        self._metrics_server: metrics.Server | None = None
        self._board_metrics: metrics.JobBoardCollector | None = None
        self._alert_metrics: metrics.AlertCollector | None = None
        self._notifications: list[notifications.Notifications] = []

    # -- oslo.service ServiceBase ----------------------------------------------

    def start(self) -> None:
        from strongroom.db.api import Database

        conf = self.conf
        os.makedirs(conf.state_dir, exist_ok=True)
        if self.embedded:
            self._state_lock = lock_state_dir(conf.state_dir)
        self.db = Database(config.database_url(conf), quota_defaults=config.quota_defaults(conf))
        if self.embedded:
            self.db.sync()
        else:
            # Deployed services never migrate (several starting at once would race): the operator does.
            from strongroom.db import migration

            current, head = self.db.version(), migration.head()
            if current != head:
                raise exceptions.ConfigError(
                    reason=f"metadata store {self.db.url_for_display} is at schema revision {current or 'none'}, "
                           f"not {head}: run 'strongroom-manage db sync'")
        self._transport = rpc.get_transport(conf, url=self.transport_url)
        self._metrics_server = metrics.serve(conf)
        if self.run_protection:
            self._start_protection()
        if self.run_api:
            from strongroom.api.app import make_app
            from strongroom.api.server import APIServer, ServerLimits
            from strongroom.protection.rpcapi import ProtectionAPI

            protection = ProtectionAPI(self._transport, conf.protection_topic)
            app = make_app(conf, self.db, protection, admin_token=self._admin_token())
            self.api_server = APIServer(app, conf.api.bind_host, conf.api.bind_port, conf.api.threads,
                                        ServerLimits.from_conf(conf))
            self.api_server.start()
        if self.run_operationengine:
            self._start_operationengine()
        binaries = [name for name, runs in (("strongroom-api", self.run_api),
                                            ("strongroom-protection", self.run_protection),
                                            ("strongroom-operationengine", self.run_operationengine)) if runs]
        self._heartbeat = heartbeat.Heartbeat(self.db, self.conf.host, binaries, self.conf.protection_topic,
                                              float(self.conf.heartbeat_interval))
        self._heartbeat.start()

    def _notifier(self, program: str) -> notifications.Notifications:
        """``program``'s notifications (publisher ``<program>.<host>``), closed by :meth:`stop`."""
        notifier = notifications.Notifications.from_conf(self.conf, program, self.conf.host)
        self._notifications.append(notifier)
        return notifier

    def _admin_token(self) -> str | None:
        """noauth's administrator token: configured, or generated once into the state directory."""
        if self.conf.auth_strategy != "noauth":
            return None
        from strongroom import admin_token

        token, self.admin_token_file = admin_token.resolve(self.conf.admin_token, self.conf.state_dir)
        return token

    def _start_protection(self) -> None:
        from strongroom.alerts.model import Settings as AlertSettings
        from strongroom.protection.flows import FlowPersistence
        from strongroom.protection.providers import ProviderRegistry
        from strongroom.protection.wiring import protection_manager

        conf = self.conf
        self.registry = ProviderRegistry.load(resolve_providers_dir(conf), conf.state_dir,
                                              bank_retry=config.bank_retry(conf), kek=keys.kek_source(conf))
        keys.announce(conf)
        if conf.database.taskflow_persistence:
            # Its tables: created by the all-in-one, by 'strongroom-manage db sync' for deployed services.
            self._persistence = FlowPersistence(config.database_url(conf), upgrade=self.embedded)
        owner_id = conf.protection.owner_id
        if self.embedded and not owner_id:
            owner_id = embedded_owner_id(conf.host, conf.state_dir)
        board = None
        if conf.coordination.jobboard_url:
            from strongroom.protection.conductor import JobBoard

            if self._persistence is None:
                raise exceptions.ConfigError(reason="[coordination] jobboard_url needs [database] "
                                                    "taskflow_persistence = true (jobs resume from saved flows)")
            board = JobBoard(conf.coordination.jobboard_url, conf.coordination.jobboard_namespace,
                             self._persistence)
            self._board = board
            self._board_metrics = metrics.JobBoardCollector(board.backlog)
            metrics.get().add_collector(self._board_metrics)
        self.manager = protection_manager(
            self.db, self.registry, host=conf.host, owner_id=owner_id,
            max_concurrent=conf.protection.max_concurrent_operations,
            flow_workers=conf.protection.flow_workers, persistence=self._persistence, clock=self.clock,
            gc_interval=conf.protection.gc_interval, chunk_grace=conf.protection.gc_chunk_grace_period,
            takeover=self.embedded, board=board, notifications=self._notifier("strongroom-protection"),
            alert_settings=AlertSettings.from_conf(conf), alert_interval=conf.alerts.evaluation_interval,
            usage_cache=conf.protection.usage_cache_seconds)
        if self.manager.alerts is not None:
            self._alert_metrics = metrics.AlertCollector(self.manager.alerts.active_alerts)
            metrics.get().add_collector(self._alert_metrics)
        self.manager.start()
        if self.embedded:
            self.manager.recovery.recover_interrupted()
        if board is not None:
            self._start_conductor(board)
        self._rpc_server = rpc.get_server(self._transport, conf.protection_topic, conf.host, [self.manager])
        self._rpc_server.start()

    def _start_conductor(self, board: Any) -> None:
        from strongroom.protection.conductor import Conductor

        conf = self.conf
        manager = self.manager
        db = self.db

        def may_claim() -> bool:
            try:
                return not db.service_is_disabled(conf.host, "strongroom-protection")
            except Exception:  # noqa: BLE001 - the database is down: claim nothing until it is back
                LOG.warning("cannot tell whether this service is disabled; not claiming jobs", exc_info=True)
                return False

        self._conductor = Conductor(board, manager.jobs.run_claimed, who=manager.owner_id,
                                    capacity=conf.protection.max_concurrent_operations,
                                    claim_expiry=conf.coordination.claim_expiry,
                                    poll_interval=conf.coordination.poll_interval, may_claim=may_claim)
        self._conductor.start()
        LOG.info("conductor %s claims jobs from %s", manager.owner_id, board.url_for_display)

    def _start_operationengine(self) -> None:
        from strongroom.operationengine import identity
        from strongroom.operationengine.engine import EngineSettings, OperationEngine
        from strongroom.protection.rpcapi import ProtectionAPI

        settings = EngineSettings.from_conf(self.conf)
        # Claims are renewed by the engine's own thread, not by the run waiting for this answer.
        protection = ProtectionAPI(self._transport, self.conf.protection_topic)
        self.operationengine = OperationEngine(self.db, protection, identity.from_conf(self.conf),
                                               host=self.conf.host, settings=settings, clock=self.clock,
                                               notifications=self._notifier("strongroom-operationengine"))
        if self.embedded:
            self.operationengine.release_stale_claims()
        self.operationengine.start()

    def stop(self, graceful: bool = True, timeout: float = 30.0) -> None:
        """Stop every part, in order; a part that fails to stop does not keep the others running (the
        first such error is raised once all have been asked)."""
        self._stop.set()
        errors: list[BaseException] = []

        def step(what: str, stop: Any, *args: Any, **kwargs: Any) -> None:
            try:
                stop(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - logged here, the first one re-raised below
                LOG.exception("stopping %s failed", what)
                errors.append(err)

        if self._heartbeat is not None:
            step("the heartbeat", self._heartbeat.stop)
        if self._state_lock is not None:
            step("the state directory lock", self._state_lock.close)
            self._state_lock = None
        if self.operationengine is not None:
            step("the operation engine", self.operationengine.stop, wait=graceful, timeout=timeout)
        if self.api_server is not None:
            step("the API server", self.api_server.stop)
        if self._rpc_server is not None:
            step("the RPC server", self._rpc_server.stop)
            step("the RPC server", self._rpc_server.wait)
        if self._conductor is not None:
            # Runs not done in time are abandoned: another worker resumes them.
            step("the conductor", self._conductor.stop, wait=timeout if graceful else 0.0)
        if self.manager is not None:
            if graceful:
                step("the protection runs", self.manager.wait_idle, timeout)
            step("the protection manager", self.manager.stop, wait=False)
        if self._board_metrics is not None:
            metrics.get().remove_collector(self._board_metrics)
            self._board_metrics = None
        if self._alert_metrics is not None:
            metrics.get().remove_collector(self._alert_metrics)
            self._alert_metrics = None
        if self._metrics_server is not None:
            step("the metrics port", self._metrics_server.stop)
            self._metrics_server = None
        for notifier in self._notifications:
            step("the notifications", notifier.close)
        self._notifications = []
        for what, part in (("the jobboard", self._board), ("the flow persistence", self._persistence),
                           ("the providers", self.registry), ("the RPC transport", self._transport)):
            if part is not None:
                step(what, part.cleanup if part is self._transport else part.close)
        if self.db is not None:
            step("the metadata store", self.db.dispose)
        if errors:
            raise errors[0]

    def wait(self) -> None:
        self._stop.wait()

    def reset(self) -> None:
        """Nothing to reload."""

    @property
    def metrics_port(self) -> int | None:
        """The port of ``[metrics] bind_port`` (the actual one when it asked for any free port), or None."""
        return self._metrics_server.port if self._metrics_server is not None else None

    @property
    def url(self) -> str:
        assert self.api_server is not None
        return f"http://{self.conf.api.bind_host}:{self.api_server.port}"
