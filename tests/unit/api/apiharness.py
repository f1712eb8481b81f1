"""A running API for tests: the real app on APIServer (port 0), a real Database on a tmp sqlite file, and
a FAKE protection service (``FakeProtectionEndpoint``) served over the real in-process ``fake://`` RPC
transport.  Shared by ``tests/unit/api`` and ``tests/unit/client``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from strongroom import backend

backend.init()  # threading backend for oslo.service before oslo.messaging is imported (test harness only)

from strongroom import exceptions, rpc  # noqa: E402
from strongroom.api.app import make_app  # noqa: E402
from strongroom.api.server import APIServer  # noqa: E402
from strongroom.config import new_conf  # noqa: E402
from strongroom.objects.records import CheckpointRecord, Plan, Resource  # noqa: E402
from strongroom.protection.rpcapi import ProtectionAPI  # noqa: E402

PROVIDER_ID = "cf56bd3e-97a7-4078-b6d5-f36246333fd9"
OTHER_PROVIDER_ID = "e4008868-be97-492c-be41-44e50ef2e16f"
VOLUME = "OS::Cinder::Volume"
PROJECT_TYPE = "OS::Keystone::Project"
ADMIN_TOKEN = "sekrit-admin-token"
MAX_BODY = 4096
MAX_LIMIT = 20

PROVIDERS = [
    {"id": PROVIDER_ID, "name": "OS Infra Provider", "description": "fs bank, volumes",
     "extended_info_schema": {
         "options_schema": {VOLUME: {"type": "object", "properties": {"backup_mode": {"type": "string"}}}},
         "restore_schema": {VOLUME: {"type": "object", "properties": {"restore_name": {"type": "string"}}}},
         "saved_info_schema": {VOLUME: {}},
         "verify_schema": {VOLUME: {}},
     }},
    {"id": OTHER_PROVIDER_ID, "name": "Second Provider", "description": "",
     "extended_info_schema": {"options_schema": {}, "restore_schema": {}, "saved_info_schema": {},
                              "verify_schema": {}}},
]

INSTANCES = [{"id": f"vol-{i:02d}", "type": VOLUME, "name": f"volume {i}", "extra_info": {"size_gb": i}}
             for i in range(1, 8)]


class FakeProtectionEndpoint:
    """A FAKE protection service: enough behaviour for the API's contract, writing to the real DB."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.calls: list[str] = []
        #: What an alert evaluation found (tests set it: ``strongroom.alerts.model.Alert``s); listed and scoped
        #: as the real manager lists them.
        self.alerts: list[Any] = []
        self.request_ids: list[str] = []

    # -- providers and protectables
    def list_providers(self, ctxt: Any) -> list[dict[str, Any]]:
        return sorted(PROVIDERS, key=lambda p: p["name"])

    def show_provider(self, ctxt: Any, provider_id: str) -> dict[str, Any]:
        for provider in PROVIDERS:
            if provider["id"] == provider_id:
                return provider
        raise exceptions.NotFound(kind="Provider", id=provider_id)

    def list_alerts(self, ctxt: Any, all_tenants: bool = False) -> list[dict[str, Any]]:
        from strongroom.alerts.engine import visible_to

        if all_tenants and not ctxt.is_admin:
            raise exceptions.Forbidden(reason="all_tenants is not allowed for this user")
        return [a.to_dict() for a in visible_to(self.alerts, None if all_tenants else ctxt.project_id)]

    def show_provider_backends(self, ctxt: Any, provider_id: str) -> list[dict[str, Any]]:
        self.show_provider(ctxt, provider_id)
        if not ctxt.is_admin:
            raise exceptions.Forbidden(reason="a provider's block backends are shown to administrators only")
        return [{"name": "loopback", "driver": "loopback", "pools": [
            {"name": "/srv/volumes", "total_bytes": 10 << 30, "free_bytes": 6 << 30, "allocated_bytes": 3 << 30}]}]

    def list_pools(self, ctxt: Any) -> list[dict[str, Any]]:
        if not ctxt.is_admin:
            raise exceptions.Forbidden(reason="block backend pools are shown to administrators only")
        return [{"provider_id": PROVIDER_ID, "provider_name": "Local", "block_backends": [
            *self.show_provider_backends(ctxt, PROVIDER_ID),
            {"name": "rbd-a", "driver": "rbd-a", "pools": [], "error": "cluster ceph-a is unreachable"}]}]

    def usage(self, ctxt: Any, project_id: str | None, provider_id: str | None = None) -> list[dict[str, Any]]:
        if provider_id is not None:
            self.show_provider(ctxt, provider_id)
        if project_id is None and not ctxt.is_admin:
            raise exceptions.Forbidden(reason="every project's usage is shown to administrators only")
        figures = {"checkpoints": {"available": 2}, "logical_bytes": 48, "referenced_bytes": 40,
                   "unique_bytes": 20, "chunk_bytes": 10, "checkpoint_bytes": 5, "stored_bytes": 15,
                   "unreferenced_chunk_bytes": 0, "unreadable_checkpoints": 0, "dedup_ratio": 2.0,
                   "compression_ratio": 2.0}
        return [{"provider_id": PROVIDER_ID, "project_id": project, **figures}
                for project in ([project_id] if project_id else ["proj-a", "proj-b"])]

    def list_protectable_types(self, ctxt: Any) -> list[str]:
        return [PROJECT_TYPE, VOLUME]

    def show_protectable_type(self, ctxt: Any, protectable_type: str) -> dict[str, Any]:
        if protectable_type == PROJECT_TYPE:
            return {"name": PROJECT_TYPE, "dependent_types": [VOLUME]}
        if protectable_type == VOLUME:
            return {"name": VOLUME, "dependent_types": []}
        raise exceptions.NotFound(kind="Protectable type", id=protectable_type)

    def list_protectable_instances(self, ctxt: Any, protectable_type: str,
                                   parameters: dict[str, Any]) -> list[dict[str, Any]]:
        self.show_protectable_type(ctxt, protectable_type)
        if protectable_type != VOLUME:
            return [{"id": ctxt.project_id, "type": PROJECT_TYPE, "name": ctxt.project_id, "extra_info": {}}]
        if parameters.get("name"):
            return [i for i in INSTANCES if i["name"] == parameters["name"]]
        return INSTANCES

    def show_protectable_instance(self, ctxt: Any, protectable_type: str, instance_id: str,
                                  parameters: dict[str, Any]) -> dict[str, Any]:
        for inst in self.list_protectable_instances(ctxt, protectable_type, parameters):
            if inst["id"] == instance_id:
                return {**inst, "dependent_resources": []}
        raise exceptions.NotFound(kind=protectable_type, id=instance_id)

    def show_plan_resources(self, ctxt: Any, provider_id: str,
                            resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """As the manager: each instance as the provider finds it, or what is missing, naming the resource, its
        type and the provider; every provider here sees the same instances."""
        provider = self.show_provider(ctxt, provider_id)
        out: list[dict[str, Any]] = []
        for item in resources:
            try:
                found = self.show_protectable_instance(ctxt, item["type"], item["id"], {})
            except exceptions.NotFound:
                out.append({"missing": f"{item['type']} {item['id']!r} could not be found by provider "
                                       f"{provider['name']!r} ({provider_id})"})
                continue
            out.append({"instance": {k: v for k, v in found.items() if k != "dependent_resources"}})
        return out

    def validate_plan_parameters(self, ctxt: Any, provider_id: str, parameters: dict[str, Any]) -> None:
        for key, options in parameters.items():
            for option in options:
                if option != "backup_mode":
                    raise exceptions.InvalidInput(reason=f"parameters.{key}.{option}: unknown option")

    # -- long operations
    def protect(self, ctxt: Any, plan: dict[str, Any], provider_id: str, extra_info: dict[str, Any],
                scheduled_operation_id: str | None) -> dict[str, Any]:
        self.calls.append("protect")
        self.request_ids.append(ctxt.request_id)
        p = Plan.from_dict(plan)
        graph = [{"type": r.type, "id": r.id, "name": r.name, "children": []} for r in p.resources]
        record = CheckpointRecord(
            id=str(uuid.uuid4()), provider_id=provider_id, project_id=ctxt.project_id, status="protecting",
            plan_id=p.id, owner_id="fake-owner",
            protection_plan={"id": p.id, "name": p.name, "provider_id": provider_id,
                             "resources": [r.to_dict() for r in p.resources]},
            resource_graph=json.dumps(graph), extra_info=extra_info, bytes_total=4 * 1024 * 1024)
        return self.db.create_checkpoint(record, enforce_quota=True).to_dict()  # type: ignore[no-any-return]

    def delete_checkpoint(self, ctxt: Any, provider_id: str, checkpoint_id: str) -> None:
        self.calls.append("delete_checkpoint")
        self.db.update_checkpoint(checkpoint_id, {"status": "deleting"})

    def reset_checkpoint_state(self, ctxt: Any, provider_id: str, checkpoint_id: str, state: str) -> None:
        self.calls.append("reset_checkpoint_state")
        self.db.update_checkpoint(checkpoint_id, {"status": state}, check=False)

    def read_resource_data(self, ctxt: Any, provider_id: str, checkpoint_id: str, resource_key: str,
                           offset: int, length: int) -> dict[str, Any]:
        """Refuses as the manager does (unknown provider or checkpoint); no checkpoint here holds volume data."""
        self.calls.append("read_resource_data")
        self.show_provider(ctxt, provider_id)
        project = None if ctxt.is_admin else ctxt.project_id
        self.db.get_checkpoint(checkpoint_id, project_id=project, provider_id=provider_id)
        raise exceptions.NotFound(kind="Resource", id=f"{resource_key} of checkpoint {checkpoint_id}")

    def restore(self, ctxt: Any, restore_id: str) -> None:
        self.calls.append("restore")
        run = self.db.get_restore(restore_id)
        if run.restore_target:
            raise exceptions.InvalidInput(reason=f"restore_target: {run.restore_target} is not supported "
                                                 f"by the volume plugin")
        self.db.update_restore(restore_id, {"resources_status": {f"{VOLUME}#vol-01": "restoring"}})

    def verify(self, ctxt: Any, verification_id: str) -> None:
        self.calls.append("verify")
        self.db.update_restore(verification_id, {"resources_status": {f"{VOLUME}#vol-01": "verifying"}})

    def copy_checkpoint(self, ctxt: Any, provider_id: str, checkpoint_id: str, target_provider_id: str,
                        scheduled_operation_id: str | None = None,
                        retention_lock_days: int | None = None) -> dict[str, Any]:
        """The catalogue side of a copy: a row of the checkpoint in the target, ``copying``."""
        self.calls.append("copy_checkpoint")
        source = self.db.get_checkpoint(checkpoint_id, provider_id=provider_id)
        if source.status != "available":
            raise exceptions.Conflict(reason=f"copy.checkpoint_id: checkpoint {checkpoint_id} is {source.status}, "
                                             f"not available")
        copied = dataclasses.replace(source, provider_id=target_provider_id, status="copying", updated_at=None)
        try:
            return self.db.create_checkpoint(copied).to_dict()  # type: ignore[no-any-return]
        except exceptions.Conflict:
            raise exceptions.Conflict(reason=f"copy.checkpoint_id: provider {target_provider_id} already holds "
                                             f"checkpoint {checkpoint_id}") from None


@dataclasses.dataclass
class Stack:
    url: str
    db: Any
    endpoint: FakeProtectionEndpoint
    server: APIServer

    def call(self, method: str, path: str, project: str = "proj-a", token: str = "user-token",
             body: Any = None, raw: bytes | None = None, **kwargs: Any) -> requests.Response:
        headers = {"X-Auth-Token": token, **kwargs.pop("headers", {})}
        if body is not None:
            raw = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        if path.startswith("http"):
            target = path
        elif path == "/" or path.startswith("/v1/"):
            target = self.url + path
        else:
            target = f"{self.url}/v1/{project}{path}"
        return requests.request(method, target, data=raw, headers=headers, timeout=30, **kwargs)

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.call(method, path, token=ADMIN_TOKEN, **kwargs)

    # direct DB helpers: fast fixtures that do not go through RPC
    def add_plan(self, project: str = "proj-a", name: str = "plan", status: str = "suspended") -> Plan:
        plan = Plan(id=str(uuid.uuid4()), name=name, provider_id=PROVIDER_ID, project_id=project,
                    status=status, resources=[Resource(id="vol-01", type=VOLUME, name="volume 1")])
        return self.db.create_plan(plan)  # type: ignore[no-any-return]

    def add_checkpoint(self, project: str = "proj-a", status: str = "available", plan_id: str | None = None,
                       created_at: _dt.datetime | None = None, provider_id: str = PROVIDER_ID,
                       **values: Any) -> CheckpointRecord:
        cp = CheckpointRecord(id=str(uuid.uuid4()), provider_id=provider_id, project_id=project,
                              status=status, plan_id=plan_id,
                              protection_plan={"id": plan_id, "name": "p", "provider_id": provider_id,
                                               "resources": [{"id": "vol-01", "type": VOLUME,
                                                              "name": "volume 1", "extra_info": {}}]},
                              created_at=created_at, **{"resource_graph": "[]", **values})
        return self.db.create_checkpoint(cp)  # type: ignore[no-any-return]


def register_tracing_opts(conf: Any) -> None:
    """Work around strongroom.rpc not registering oslo.messaging's tracing group on private ConfigOpts."""
    from oslo_config import cfg

    try:
        from oslo_messaging._tracing import client as tracing_client
    except ImportError:
        return
    try:
        conf.register_opts(tracing_client.oslo_messaging_tracing, group="oslo_messaging_tracing")
    except cfg.DuplicateOptError:
        pass


@contextlib.contextmanager
def running_stack(tmp: Path, db_url: str | None = None, defaults: dict[str, Any] | None = None,
                  **server_options: Any) -> Iterator[Stack]:
    """The stack on a sqlite file under ``tmp``, or on the metadata store at ``db_url``; ``defaults`` are
    more ``[DEFAULT]`` options; ``server_options`` go to :class:`APIServer` (its timeouts and limits)."""
    from strongroom.db.api import Database

    conf = new_conf(overrides={
        "DEFAULT": {"admin_token": ADMIN_TOKEN, "osapi_max_limit": MAX_LIMIT, "auth_strategy": "noauth",
                    **(defaults or {})},
        "api": {"max_request_body_size": MAX_BODY},
    })
    db = Database(db_url or f"sqlite:///{tmp / 'api.sqlite'}")
    db.sync()
    register_tracing_opts(conf)
    transport = rpc.get_transport(conf, "fake://")
    endpoint = FakeProtectionEndpoint(db)
    rpc_server = rpc.get_server(transport, "strongroom-protection", "fake-host", [endpoint])
    rpc_server.start()
    server = APIServer(make_app(conf, db, ProtectionAPI(transport, timeout=20)), "127.0.0.1", 0, threads=8,
                       **server_options)
    server.start()
    try:
        yield Stack(url=server.url, db=db, endpoint=endpoint, server=server)
    finally:
        server.stop()
        rpc_server.stop()
        rpc_server.wait()
        transport.cleanup()
        db.dispose()
