"""Services: one row per (host, binary) that beats, so that operators see who is alive and can disable it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from strongroom import exceptions
from strongroom.db import core
from strongroom.db.models import ServiceModel
from strongroom.objects.records import Service

SERVICE_UPDATABLE = frozenset({"topic", "disabled", "disabled_reason", "last_heartbeat"})


class ServiceQueries(core.Core):
    """Heartbeats and the administrator's switches of every service."""

    def service_heartbeat(self, host: str, binary: str, topic: str = "") -> Service:
        """Record that ``binary`` on ``host`` is alive (creates its row on first call)."""

        def beat(s: orm.Session) -> Service:
            now = self.now()
            model = s.execute(sa.select(ServiceModel).where(
                ServiceModel.host == host, ServiceModel.binary == binary).with_for_update(),
            ).scalar_one_or_none()
            if model is None:
                model = ServiceModel(host=host, binary=binary, topic=topic or "", disabled=False,
                                     created_at=now, updated_at=now, last_heartbeat=now)
                s.add(model)
            else:
                model.last_heartbeat = model.updated_at = now
                if topic:
                    model.topic = topic
            s.flush()
            return core.to_record(Service, model)

        # IntegrityError: another thread inserted the same (host, binary) first: update it.
        return self.write(beat, retry_on=(sa.exc.IntegrityError,), exhausted=lambda: exceptions.Conflict(
            reason=f"service {binary} on {host} could not be recorded; try again"))

    def list_services(self, *, host: str | None = None, binary: str | None = None) -> list[Service]:
        """Every service row in id order, optionally only those of ``host`` and/or ``binary``."""
        stmt = sa.select(ServiceModel).order_by(ServiceModel.id)
        if host is not None:
            stmt = stmt.where(ServiceModel.host == host)
        if binary is not None:
            stmt = stmt.where(ServiceModel.binary == binary)
        with self.session() as s:
            return [core.to_record(Service, m) for m in s.execute(stmt).scalars().all()]

    def get_service(self, service_id: int) -> Service:
        with self.session() as s:
            return core.to_record(Service, core.load(s, ServiceModel, service_id, kind="Service"))

    def service_is_disabled(self, host: str, binary: str) -> bool:
        """True when an administrator disabled ``binary`` on ``host`` (False for a service never seen).

        A disabled worker keeps running and beating but takes no new work.
        """
        with self.session() as s:
            return bool(s.execute(sa.select(ServiceModel.disabled).where(
                ServiceModel.host == host, ServiceModel.binary == binary)).scalar_one_or_none())

    def update_service(self, service_id: int, values: Mapping[str, Any]) -> Service:
        """Change topic, disabled, disabled_reason or last_heartbeat of a service."""
        core.check_keys("service", values, SERVICE_UPDATABLE)
        with self.session(write=True) as s:
            model = core.load(s, ServiceModel, service_id, kind="Service", for_update=True)
            for key, value in values.items():
                if key == "last_heartbeat":
                    value = core.utc(value)
                elif key == "disabled":
                    value = bool(value)
                setattr(model, key, value)
            model.updated_at = self.now()
            s.flush()
            return core.to_record(Service, model)
