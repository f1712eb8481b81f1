"""The v1 route table: for every endpoint its method, path, handler and its OpenAPI facts.

The application routes by it (:mod:`strongroom.api.app`) and the OpenAPI document (:mod:`strongroom.api.openapi`)
is built from it; it imports neither of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from strongroom.api import schemas
from strongroom.api.common import Result
from strongroom.api.v1 import (
    checkpoints,
    operation_logs,
    plans,
    protectables,
    providers,
    restores,
    scheduled_operations,
    services,
    triggers,
    verifications,
)

V1 = "/v1/{project_id}"

Handler = Callable[..., Result]


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    path: str  # below V1
    handler: Handler
    summary: str
    request_schema: str | None = None  # a key of schemas.ALL
    response_key: str | None = None
    status: int = 200
    query: tuple[str, ...] | None = None  # the query parameters a list takes, when not marker/limit/sort

    def __post_init__(self) -> None:
        if self.request_schema is not None and self.request_schema not in schemas.ALL:
            raise ValueError(f"{self.method} {self.path}: no request schema {self.request_schema!r}")

    @property
    def full_path(self) -> str:
        return V1 + self.path


_CP = "/providers/{provider_id}/checkpoints"
_SO = "/scheduled_operations"

ROUTES: tuple[Route, ...] = (
    Route("GET", "/providers", providers.index, "List providers", response_key="providers"),
    Route("GET", "/providers/{provider_id}", providers.show, "Show a provider", response_key="provider"),
    Route("GET", "/protectables", protectables.index, "List protectable types",
          response_key="protectable_type"),
    Route("GET", "/protectables/{protectable_type}", protectables.show, "Show a protectable type",
          response_key="protectable_type"),
    Route("GET", "/protectables/{protectable_type}/instances", protectables.instances,
          "List instances of a protectable type", response_key="instances"),
    Route("GET", "/protectables/{protectable_type}/instances/{instance_id}", protectables.instance,
          "Show a protectable instance", response_key="instance"),
    Route("POST", "/plans", plans.create, "Create a plan", "PlanCreate", "plan"),
    Route("GET", "/plans", plans.index, "List plans", response_key="plans"),
    Route("GET", "/plans/{plan_id}", plans.show, "Show a plan", response_key="plan"),
    Route("PUT", "/plans/{plan_id}", plans.update, "Update a plan", "PlanUpdate", "plan"),
    Route("DELETE", "/plans/{plan_id}", plans.delete, "Delete a plan", status=202),
    Route("POST", _CP + "/action", checkpoints.action, "Act on checkpoints (copy)", "CheckpointAction"),
    Route("POST", _CP, checkpoints.create, "Protect a plan: create a checkpoint", "CheckpointCreate",
          "checkpoint"),
    Route("GET", _CP, checkpoints.index, "List checkpoints", response_key="checkpoints"),
    Route("GET", _CP + "/{checkpoint_id}", checkpoints.show, "Show a checkpoint", response_key="checkpoint"),
    Route("PUT", _CP + "/{checkpoint_id}", checkpoints.reset_state, "Reset a checkpoint's state (admin)",
          "CheckpointResetState", status=202),
    Route("DELETE", _CP + "/{checkpoint_id}", checkpoints.delete, "Delete a checkpoint", status=202),
    Route("POST", "/restores", restores.create, "Restore a checkpoint", "RestoreCreate", "restore"),
    Route("GET", "/restores", restores.index, "List restores", response_key="restores"),
    Route("GET", "/restores/{restore_id}", restores.show, "Show a restore", response_key="restore"),
    Route("POST", "/verifications", verifications.create, "Verify a checkpoint", "VerificationCreate",
          "verification"),
    Route("GET", "/verifications", verifications.index, "List verifications", response_key="verifications"),
    Route("GET", "/verifications/{verification_id}", verifications.show, "Show a verification",
          response_key="verification"),
    Route("GET", "/operation_logs", operation_logs.index, "List operation logs",
          response_key="operation_logs"),
    Route("GET", "/operation_logs/{operation_log_id}", operation_logs.show, "Show an operation log",
          response_key="operation_log"),
    Route("POST", "/triggers", triggers.create, "Create a time trigger", "TriggerCreate", "trigger_info"),
    Route("GET", "/triggers", triggers.index, "List triggers", response_key="triggers"),
    Route("GET", "/triggers/{trigger_id}", triggers.show, "Show a trigger", response_key="trigger_info"),
    Route("PUT", "/triggers/{trigger_id}", triggers.update, "Update a trigger (re-plans its future fires)",
          "TriggerUpdate", "trigger_info"),
    Route("DELETE", "/triggers/{trigger_id}", triggers.delete, "Delete an unused trigger", status=204),
    Route("POST", _SO, scheduled_operations.create, "Create a scheduled operation", "ScheduledOperationCreate",
          "scheduled_operation"),
    Route("GET", _SO, scheduled_operations.index, "List scheduled operations", response_key="operations"),
    Route("GET", _SO + "/{scheduled_operation_id}", scheduled_operations.show, "Show a scheduled operation",
          response_key="scheduled_operation"),
    Route("POST", _SO + "/{scheduled_operation_id}/action", scheduled_operations.action,
          "Suspend ({\"suspend\": {}}) or resume ({\"resume\": {}}) a scheduled operation",
          "ScheduledOperationAction", "scheduled_operation"),
    Route("DELETE", _SO + "/{scheduled_operation_id}", scheduled_operations.delete,
          "Delete a scheduled operation (and its logs)", status=204),
    Route("GET", _SO + "/{scheduled_operation_id}/logs", scheduled_operations.logs,
          "List the runs of a scheduled operation", response_key="scheduled_operation_logs"),
    Route("GET", "/os-services", services.index, "List services, up or down (admin)", response_key="services",
          query=services.FILTERS),
    Route("PUT", "/os-services/{service_id}", services.update, "Enable or disable a service (admin)",
          "ServiceUpdate", "service"),
)
