"""oslo.messaging notifications of what Strongroom does, as Ceilometer and billing systems consume them.

Event types (``doc/operations.md``, "Notifications"), each ``.start``, then ``.end`` or ``.error``:

* ``checkpoint.create``, ``checkpoint.delete``, ``restore``, ``verification`` from the protection service;
* ``scheduled_operation.run`` from the operation engine.

They are sent with the ``[oslo_messaging_notifications]`` options (``driver = messagingv2``, ``topics``,
``transport_url``, else the RPC ``transport_url``); without a driver nothing is sent.  The publisher id is
``<program>.<host>`` (``strongroom-protection.node1``).  A payload carries ids, sizes (bytes read and stored,
logical size), durations and the reason of a failure, never a credential; the context is the request's
(user, project, request id), without its token.  A notification that cannot be sent is logged and
dropped: it never fails or holds up the run it describes beyond ``[notifications] send_retries``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oslo_config import cfg

LOG = logging.getLogger(__name__)

START, END, ERROR = "start", "end", "error"


class Notifications:
    """Sends ``<event>.start|end|error``; ``notifier`` None: sends nothing (no driver configured)."""

    def __init__(self, notifier: Any = None, transport: Any = None) -> None:
        self._notifier = notifier
        self._transport = transport

    @property
    def enabled(self) -> bool:
        return self._notifier is not None

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts, program: str, host: str) -> Notifications:
        import oslo_messaging as messaging

        from strongroom import rpc

        rpc._register_messaging_opts(conf)
        if not [d for d in conf.oslo_messaging_notifications.driver if d and d != "noop"]:
            return cls()
        transport = messaging.get_notification_transport(conf)
        notifier = messaging.Notifier(transport, publisher_id=f"{program}.{host}", serializer=_ContextSerializer(),
                                      retry=int(conf.notifications.send_retries))
        LOG.info("notifications: %s on topics %s as %s.%s", ", ".join(conf.oslo_messaging_notifications.driver),
                 ", ".join(conf.oslo_messaging_notifications.topics), program, host)
        return cls(notifier, transport)

    def send(self, ctxt: Any, event: str, phase: str, payload: dict[str, Any]) -> None:
        """``<event>.<phase>`` (``phase`` one of start, end, error: error at ERROR priority, the others at
        INFO) with ``payload``; ``ctxt`` a :class:`strongroom.context.RequestContext` (or None)."""
        if self._notifier is None:
            return
        event_type = f"{event}.{phase}"
        try:
            if phase == ERROR:
                self._notifier.error(ctxt, event_type, payload)
            else:
                self._notifier.info(ctxt, event_type, payload)
        except Exception as err:  # noqa: BLE001 - a lost notification never fails the run it describes
            LOG.warning("notification %s not sent: %s", event_type, type(err).__name__)

    def close(self) -> None:
        if self._transport is not None:
            try:
                self._transport.cleanup()
            except Exception:  # noqa: BLE001 - stopping: nothing more to do
                LOG.debug("closing the notification transport failed", exc_info=True)
            self._transport = None
            self._notifier = None


class _ContextSerializer:
    """The request context as RPC carries it (:meth:`strongroom.context.RequestContext.to_dict`: no token);
    none (a run of no request) is an empty context."""

    def serialize_entity(self, ctxt: Any, entity: Any) -> Any:
        return entity

    def deserialize_entity(self, ctxt: Any, entity: Any) -> Any:
        return entity

    def serialize_context(self, ctxt: Any) -> dict[str, Any]:
        return dict(ctxt.to_dict()) if ctxt is not None else {}

    def deserialize_context(self, ctxt: dict[str, Any]) -> Any:
        return ctxt


#: Sends nothing (tests, tools, a program without notifications).
DISABLED = Notifications()
