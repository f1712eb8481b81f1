"""oslo.messaging plumbing shared by every service: transports, clients, servers.

The embedded service uses the in-process ``fake://`` transport; deployed
services use ``rabbit://``.  The same rpcapi/manager code runs on both.
"""

from __future__ import annotations

from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

from strongroom import context as sr_context
from strongroom import exceptions

# Our exceptions cross RPC and are rebuilt on the caller's side.
ALLOWED_EXMODS = [exceptions.__name__]


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
    """Carries :class:`strongroom.context.RequestContext` across RPC (never the token)."""

    def serialize_entity(self, ctxt: Any, entity: Any) -> Any:
        return entity

    def deserialize_entity(self, ctxt: Any, entity: Any) -> Any:
        return entity

    def serialize_context(self, ctxt: Any) -> dict[str, Any]:
        return dict(ctxt.to_dict())

    def deserialize_context(self, ctxt: dict[str, Any]) -> sr_context.RequestContext:
        return sr_context.RequestContext.from_dict(ctxt)


def get_client(transport: messaging.Transport, topic: str, version: str = "1.0",
               timeout: int | None = None) -> messaging.RPCClient:
    target = messaging.Target(topic=topic, version=version)
    return messaging.get_rpc_client(transport, target, serializer=ContextSerializer(), timeout=timeout)


def get_server(transport: messaging.Transport, topic: str, host: str,
               endpoints: list[Any]) -> messaging.RPCServer:
    target = messaging.Target(topic=topic, server=host)
    return messaging.get_rpc_server(transport, target, endpoints, executor="threading",
                                    serializer=ContextSerializer(),
                                    access_policy=messaging.DefaultRPCAccessPolicy)
