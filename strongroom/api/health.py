"""Our oslo.middleware healthcheck backends (entry points of the ``oslo.middleware.healthcheck`` namespace),
for ``/healthcheck`` (:mod:`strongroom.api.pipeline`):

- ``strongroom_database``: the metadata store answers ``SELECT 1``;
- ``strongroom_rpc``: a ``strongroom-protection`` service of this API's topic beats in the services table
  (its heartbeat is younger than ``missed_heartbeats`` x ``heartbeat_interval``), so RPC calls have someone
  to answer them.

Each is built by oslo.middleware with ``(oslo_conf, conf)``; ``conf`` holds the build's
:class:`~strongroom.api.pipeline.Resources` (metadata store and options) under ``RESOURCES_KEY``.  A failure
is reported, never raised: its reason says what is wrong, its details (the administrator's view) say more,
without credentials (the store is named by its masked URL).
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from oslo_middleware.healthcheck import pluginbase

from strongroom import config, heartbeat

RESOURCES_KEY = "strongroom_resources"  # strongroom.api.pipeline.RESOURCES_KEY (no import: no cycle)
PROTECTION = "strongroom-protection"


class MetadataDatabase(pluginbase.HealthcheckResult):  # type: ignore[misc]
    """The database check's result (the detailed view names each result by its class)."""


class ProtectionRPC(pluginbase.HealthcheckResult):  # type: ignore[misc]
    """The RPC check's result."""


def _resources(conf: dict[str, Any]) -> Any:
    return conf.get(RESOURCES_KEY)


class DatabaseCheck(pluginbase.HealthcheckBaseExtension):  # type: ignore[misc]
    def healthcheck(self, server_port: int) -> pluginbase.HealthcheckResult:
        res = _resources(self.conf)
        if res is None:
            return MetadataDatabase(False, "strongroom_database: not built by the strongroom API")
        db = res.db
        started = time.monotonic()
        try:
            with db.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as err:  # noqa: BLE001 - any failure is the answer, not an error of the check
            return MetadataDatabase(
                False, "the metadata database is unreachable",
                details=f"metadata database {db.url_for_display}: SELECT 1 failed: {type(err).__name__}: "
                        f"{_first_line(err)}")
        took = (time.monotonic() - started) * 1000
        return MetadataDatabase(
            True, "OK", details=f"metadata database {db.url_for_display}: SELECT 1 answered in {took:.1f} ms")


class ProtectionCheck(pluginbase.HealthcheckBaseExtension):  # type: ignore[misc]
    def healthcheck(self, server_port: int) -> pluginbase.HealthcheckResult:
        res = _resources(self.conf)
        if res is None:
            return ProtectionRPC(False, "strongroom_rpc: not built by the strongroom API")
        conf, db = res.conf, res.db
        topic = str(conf.protection_topic)
        try:
            services = db.list_services(binary=PROTECTION)
        except Exception as err:  # noqa: BLE001 - reported, as the database check reports it
            return ProtectionRPC(
                False, "the protection services cannot be listed",
                details=f"services table: {type(err).__name__}: {_first_line(err)}")
        down_after, now = config.service_down_after(conf), db.now()
        mine = [s for s in services if not s.topic or s.topic == topic]
        up = [s.host for s in mine if heartbeat.is_up(s.last_heartbeat, down_after, now) and not s.disabled]
        if not up:
            return ProtectionRPC(
                False, f"no {PROTECTION} service answers RPC topic {topic}",
                details=f"{len(mine)} {PROTECTION} service(s) known, none enabled with a heartbeat in the last "
                        f"{down_after:g} s")
        return ProtectionRPC(
            True, "OK", details=f"RPC topic {topic}: {PROTECTION} up on {', '.join(sorted(up))}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else ""
