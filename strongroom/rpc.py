"""oslo.messaging plumbing shared by every service: transports, clients, servers.

The embedded service uses the in-process ``fake://`` transport; deployed
services use ``rabbit://``.  The same rpcapi/manager code runs on both.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg
from oslo_messaging.rpc import dispatcher

from strongroom import context as sr_context
from strongroom import exceptions

# Our exceptions cross RPC and are rebuilt on the caller's side.
ALLOWED_EXMODS = [exceptions.__name__]

#: What an endpoint raises as an answer, not as a failure (the API turns them into 4xx and 503): the
#: server returns them to the caller and logs them at DEBUG, never at ERROR with a traceback.
EXPECTED: tuple[type[BaseException], ...] = (
    exceptions.NotFound, exceptions.InvalidInput, exceptions.Conflict, exceptions.Forbidden,
    exceptions.ServiceUnavailable, exceptions.QuotaExceeded,
)

LOG = logging.getLogger(__name__)


#: Threads of an RPC server's pool (oslo.messaging's ``executor_thread_pool_size``, 64 by default).  Its pool
#: starts a new thread for each call until it holds that many, and keeps them: the embedded service had two
#: more threads after every protect.  Calls are short (a run goes to the job tracker's own pool), and the API
#: waits on them with at most ``[api] threads`` (16) workers, so 16 serve it; a configuration file may raise it.
RPC_SERVER_THREADS = 16


def _register_messaging_opts(conf: cfg.ConfigOpts) -> None:
    """oslo.messaging with a private ConfigOpts needs its extra groups registered."""
    from oslo_messaging import opts as msg_opts

    for group, opts in msg_opts.list_opts():
        group_name = None if group in (None, "DEFAULT") else getattr(group, "name", group)
        for opt in opts:
            try:
                conf.register_opt(opt, group=group_name)
            except cfg.DuplicateOptError:
                pass
    conf.set_default("executor_thread_pool_size", RPC_SERVER_THREADS)
    # Registered on cfg.CONF by these modules at import, but needed on our private ConfigOpts too.
    from oslo_messaging._metrics import client as metrics_client
    from oslo_messaging._tracing import client as tracing_client

    for group, opts in (("oslo_messaging_metrics", metrics_client.oslo_messaging_metrics),
                        ("oslo_messaging_tracing", tracing_client.oslo_messaging_tracing)):
        for opt in opts:
            try:
                conf.register_opt(opt, group=group)
            except cfg.DuplicateOptError:
                pass


def get_transport(conf: cfg.ConfigOpts, url: str | None = None) -> messaging.Transport:
    _register_messaging_opts(conf)
    return messaging.get_rpc_transport(conf, url=url, allowed_remote_exmods=ALLOWED_EXMODS)


class ContextSerializer(messaging.Serializer):
    """Carries :class:`strongroom.context.RequestContext` across RPC, with the caller's Keystone token when
    it has one (``auth_token``: the API's under keystonemiddleware, a scheduled run's trust token), so that a
    block backend can act as that user (Cinder's ``act_as_user``).  The token is added here only:
    ``RequestContext.to_dict`` (logs, job boards, the database) never holds it."""

    def serialize_entity(self, ctxt: Any, entity: Any) -> Any:
        return entity

    def deserialize_entity(self, ctxt: Any, entity: Any) -> Any:
        return entity

    def serialize_context(self, ctxt: Any) -> dict[str, Any]:
        values = dict(ctxt.to_dict())
        token = getattr(ctxt, "auth_token", None)
        if token:
            values["auth_token"] = token
        return values

    def deserialize_context(self, ctxt: dict[str, Any]) -> sr_context.RequestContext:
        return sr_context.RequestContext.from_dict(ctxt)


def get_client(transport: messaging.Transport, topic: str, version: str = "1.0",
               timeout: int | None = None) -> messaging.RPCClient:
    target = messaging.Target(topic=topic, version=version)
    return messaging.get_rpc_client(transport, target, serializer=ContextSerializer(), timeout=timeout)


class ExpectedErrors:
    """An endpoint whose public methods raise :data:`EXPECTED` errors as oslo.messaging's expected ones.

    oslo.messaging logs every other exception an endpoint raises at ERROR with its traceback; a 404
    is an answer, not a fault of the service.  The caller still receives the original exception.
    """

    def __init__(self, endpoint: Any) -> None:
        self._endpoint = endpoint

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._endpoint, name)
        if name.startswith("_") or not inspect.isroutine(value):  # e.g. ``target``, a callable Target
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except EXPECTED as err:
                LOG.debug("RPC %s answered %s: %s", name, type(err).__name__, err)
                raise dispatcher.ExpectedException() from err
            except exceptions.KeyUnavailable as err:  # the operator's to mend: said once, without a traceback
                LOG.warning("RPC %s: %s", name, err)
                raise dispatcher.ExpectedException() from err

        return call

    def __repr__(self) -> str:
        return f"ExpectedErrors({self._endpoint!r})"


def get_server(transport: messaging.Transport, topic: str, host: str,
               endpoints: list[Any]) -> messaging.RPCServer:
    """An RPC server of ``endpoints``; their :data:`EXPECTED` errors are not logged as failures."""
    target = messaging.Target(topic=topic, server=host)
    return messaging.get_rpc_server(transport, target, [ExpectedErrors(e) for e in endpoints],
                                    executor="threading", serializer=ContextSerializer(),
                                    access_policy=messaging.DefaultRPCAccessPolicy)
