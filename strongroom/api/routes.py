"""The v1 route table: for every endpoint its method, path, handler, the policy rule it names and its OpenAPI facts.

The application routes by it (:mod:`strongroom.api.app`); the OpenAPI document (:mod:`strongroom.api.openapi`)
and the policy defaults (:mod:`strongroom.api.policy`) are built from it, so none of them restates a path.
It imports neither of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from strongroom.api import response_schemas, schemas
from strongroom.api.common import Answer, Download
from strongroom.api.rules import Rule
from strongroom.api.v1 import (
    alerts,
    checkpoints,
    files,
    operation_logs,
    plans,
    protectables,
    providers,
    quotas,
    restores,
    scheduled_operations,
    services,
    triggers,
    usage,
    verifications,
    volume_data,
)

V1 = "/v1/{project_id}"

Handler = Callable[..., Answer | Download]


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    path: str  # below V1
    handler: Handler
    rule: Rule  # the policy rule the handler checks; the policy defaults document this route under it
    summary: str
    request_schema: str | None = None  # a key of schemas.ALL
    response_key: str | None = None
    status: int = 200
    response_schema: str | None = None  # a key of response_schemas.ALL: the object under response_key
    listing: bool = False  # response_key holds a list of response_schema objects
    query: tuple[str, ...] = ()  # every query parameter the handler reads
    sort_keys: tuple[str, ...] = ()  # what ``sort``/``sort_key`` may name, when the list takes them
    naming: tuple[str, ...] = ()  # query parameters that name an object (an unknown one answers 404)
    binary: bool = False  # answers application/octet-stream bytes (200 whole, 206 for a Range), not JSON
    produces: str | None = None  # the media type of a streamed (non-JSON) answer: the handler's Download

    def __post_init__(self) -> None:
        if self.request_schema is not None and self.request_schema not in schemas.ALL:
            raise ValueError(f"{self.method} {self.path}: no request schema {self.request_schema!r}")
        if self.response_schema is not None and self.response_schema not in response_schemas.ALL:
            raise ValueError(f"{self.method} {self.path}: no response schema {self.response_schema!r}")
        if self.produces is not None and self.response_key is not None:
            raise ValueError(f"{self.method} {self.path}: a streamed answer has no JSON response key")
        if (self.response_key is None) != (self.response_schema is None):
            raise ValueError(f"{self.method} {self.path}: a response key needs a response schema")
        if not set(self.naming) <= set(self.query):
            raise ValueError(f"{self.method} {self.path}: a naming parameter is one of its query parameters")
        if ("sort" in self.query) != bool(self.sort_keys):
            raise ValueError(f"{self.method} {self.path}: a list that takes sort names its sort keys")

    @property
    def paged(self) -> bool:
        """Whether the list answers ``<response_key>_links`` (it takes ``limit``)."""
        return self.listing and "limit" in self.query

    @property
    def full_path(self) -> str:
        return V1 + self.path


_CP = "/providers/{provider_id}/checkpoints"
_RES = _CP + "/{checkpoint_id}/resources/{resource_key}"
_SO = "/scheduled_operations"
_QUOTA = "/quotas/{quota_project_id}"

#: What every paged list reads: ``marker`` and ``limit``, and the sort of a database listing.
PAGE = ("marker", "limit")
SORT = ("sort", "sort_key", "sort_dir")
#: ``all_tenants=1``: every project's rows (administrators).
SCOPE = ("all_tenants",)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/providers", providers.index, Rule.PROVIDER_GET_ALL, "List providers", response_key="providers",
          response_schema="Provider", listing=True, query=(*PAGE, "name")),
    Route("GET", "/providers/{provider_id}", providers.show, Rule.PROVIDER_GET, "Show a provider",
          response_key="provider", response_schema="Provider"),
    Route("GET", "/protectables", protectables.index, Rule.PROTECTABLE_GET_ALL, "List protectable types",
          response_key="protectable_type", response_schema="ProtectableTypeName", listing=True),
    Route("GET", "/protectables/{protectable_type}", protectables.show, Rule.PROTECTABLE_GET,
          "Show a protectable type", response_key="protectable_type", response_schema="ProtectableType"),
    Route("GET", "/protectables/{protectable_type}/instances", protectables.instances, Rule.PROTECTABLE_GET,
          "List instances of a protectable type", response_key="instances", response_schema="ProtectableInstance",
          listing=True, query=(*PAGE, "parameters")),
    Route("GET", "/protectables/{protectable_type}/instances/{instance_id}", protectables.instance,
          Rule.PROTECTABLE_GET, "Show a protectable instance", response_key="instance",
          response_schema="ProtectableInstanceWithDependents", query=("parameters",)),
    Route("POST", "/plans", plans.create, Rule.PLAN_CREATE, "Create a plan", "PlanCreate", "plan",
          response_schema="Plan"),
    Route("GET", "/plans", plans.index, Rule.PLAN_GET_ALL, "List plans", response_key="plans",
          response_schema="Plan", listing=True, query=(*PAGE, *SORT, *SCOPE, *plans.FILTERS),
          sort_keys=plans.SORT_KEYS),
    Route("GET", "/plans/{plan_id}", plans.show, Rule.PLAN_GET, "Show a plan", response_key="plan",
          response_schema="Plan"),
    Route("PUT", "/plans/{plan_id}", plans.update, Rule.PLAN_UPDATE, "Update a plan", "PlanUpdate", "plan",
          response_schema="Plan"),
    Route("DELETE", "/plans/{plan_id}", plans.delete, Rule.PLAN_DELETE, "Delete a plan", status=202),
    Route("POST", _CP + "/action", checkpoints.action, Rule.CHECKPOINT_COPY,
          "Act on checkpoints: copy a plan's checkpoints to another provider's bank", "CheckpointAction", "copy",
          response_schema="CheckpointCopy"),
    Route("POST", _CP, checkpoints.create, Rule.CHECKPOINT_CREATE, "Protect a plan: create a checkpoint",
          "CheckpointCreate", "checkpoint", response_schema="Checkpoint"),
    Route("GET", _CP, checkpoints.index, Rule.CHECKPOINT_GET_ALL, "List checkpoints", response_key="checkpoints",
          response_schema="Checkpoint", listing=True,
          query=(*PAGE, *SORT, *SCOPE, "project_id", *checkpoints.FILTERS, "start_date", "end_date"),
          sort_keys=checkpoints.SORT_KEYS),
    Route("GET", _CP + "/{checkpoint_id}", checkpoints.show, Rule.CHECKPOINT_GET, "Show a checkpoint",
          response_key="checkpoint", response_schema="Checkpoint"),
    Route("PUT", _CP + "/{checkpoint_id}", checkpoints.reset_state, Rule.CHECKPOINT_RESET_STATE,
          "Reset a checkpoint's state (admin)", "CheckpointResetState", status=202),
    Route("DELETE", _CP + "/{checkpoint_id}", checkpoints.delete, Rule.CHECKPOINT_DELETE, "Delete a checkpoint",
          status=202),
    Route("GET", _RES + "/data", volume_data.show, Rule.CHECKPOINT_GET,
          "Read a protected volume of an available checkpoint (Range: bytes=START-END answers 206)", binary=True),
    Route("GET", _RES + "/volume", files.volume, Rule.CHECKPOINT_GET,
          "Show a checkpoint's volume: its partition table and each partition's filesystem",
          response_key="volume", response_schema="VolumeLayout"),
    Route("GET", _RES + "/files", files.index, Rule.CHECKPOINT_GET,
          "List a directory inside a checkpoint's volume, without restoring it", response_key="directory",
          response_schema="Directory", query=("path", "partition")),
    Route("GET", _RES + "/files/stat", files.stat, Rule.CHECKPOINT_GET,
          "Show one file inside a checkpoint's volume (a symlink itself)", response_key="stat",
          response_schema="FileStat", query=("path", "partition")),
    Route("GET", _RES + "/files/content", files.content, Rule.CHECKPOINT_GET,
          "Download a regular file from inside a checkpoint's volume (streamed; symlinks followed)",
          query=("path", "partition"), produces="application/octet-stream"),
    Route("GET", _RES + "/files/archive", files.archive, Rule.CHECKPOINT_GET,
          "Restore files: a tar stream of each path (repeatable) with everything under it",
          query=("path", "partition"), produces="application/x-tar"),
    Route("GET", _RES + "/diff", files.diff, Rule.CHECKPOINT_GET,
          "Compare with a later checkpoint of the same volume: changed byte ranges, and changed files under "
          "path", response_key="diff", response_schema="CheckpointDiff", query=("to", "path", "partition"),
          naming=("to",)),
    Route("POST", "/restores", restores.create, Rule.RESTORE_CREATE, "Restore a checkpoint", "RestoreCreate",
          "restore", response_schema="Restore"),
    Route("GET", "/restores", restores.index, Rule.RESTORE_GET_ALL, "List restores", response_key="restores",
          response_schema="Restore", listing=True, query=(*PAGE, *SORT, *SCOPE, *restores.FILTERS),
          sort_keys=restores.SORT_KEYS),
    Route("GET", "/restores/{restore_id}", restores.show, Rule.RESTORE_GET, "Show a restore",
          response_key="restore", response_schema="Restore"),
    Route("POST", "/verifications", verifications.create, Rule.VERIFICATION_CREATE, "Verify a checkpoint",
          "VerificationCreate", "verification", response_schema="Verification"),
    Route("GET", "/verifications", verifications.index, Rule.VERIFICATION_GET_ALL, "List verifications",
          response_key="verifications", response_schema="Verification", listing=True,
          query=(*PAGE, *SORT, *SCOPE, *restores.FILTERS), sort_keys=restores.SORT_KEYS),
    Route("GET", "/verifications/{verification_id}", verifications.show, Rule.VERIFICATION_GET,
          "Show a verification", response_key="verification", response_schema="Verification"),
    Route("GET", "/operation_logs", operation_logs.index, Rule.OPERATION_LOG_GET_ALL, "List operation logs",
          response_key="operation_logs", response_schema="OperationLog", listing=True,
          query=(*PAGE, *SORT, *SCOPE, *operation_logs.FILTERS), sort_keys=operation_logs.SORT_KEYS),
    Route("GET", "/operation_logs/{operation_log_id}", operation_logs.show, Rule.OPERATION_LOG_GET,
          "Show an operation log", response_key="operation_log", response_schema="OperationLog"),
    Route("POST", "/triggers", triggers.create, Rule.TRIGGER_CREATE, "Create a time trigger", "TriggerCreate",
          "trigger_info", response_schema="Trigger"),
    Route("GET", "/triggers", triggers.index, Rule.TRIGGER_LIST, "List triggers", response_key="triggers",
          response_schema="Trigger", listing=True, query=(*PAGE, *SORT, *SCOPE, *triggers.FILTERS),
          sort_keys=triggers.SORT_KEYS),
    Route("GET", "/triggers/{trigger_id}", triggers.show, Rule.TRIGGER_GET, "Show a trigger",
          response_key="trigger_info", response_schema="Trigger"),
    Route("PUT", "/triggers/{trigger_id}", triggers.update, Rule.TRIGGER_UPDATE,
          "Update a trigger (re-plans its future fires)", "TriggerUpdate", "trigger_info", response_schema="Trigger"),
    Route("DELETE", "/triggers/{trigger_id}", triggers.delete, Rule.TRIGGER_DELETE, "Delete an unused trigger",
          status=204),
    Route("POST", _SO, scheduled_operations.create, Rule.SCHEDULED_OPERATION_CREATE,
          "Create a scheduled operation", "ScheduledOperationCreate", "scheduled_operation",
          response_schema="ScheduledOperation"),
    Route("GET", _SO, scheduled_operations.index, Rule.SCHEDULED_OPERATION_LIST, "List scheduled operations",
          response_key="operations", response_schema="ScheduledOperation", listing=True,
          query=(*PAGE, *SORT, *SCOPE, *scheduled_operations.FILTERS), sort_keys=scheduled_operations.SORT_KEYS),
    Route("GET", _SO + "/{scheduled_operation_id}", scheduled_operations.show, Rule.SCHEDULED_OPERATION_GET,
          "Show a scheduled operation", response_key="scheduled_operation", response_schema="ScheduledOperation"),
    Route("POST", _SO + "/{scheduled_operation_id}/action", scheduled_operations.action,
          Rule.SCHEDULED_OPERATION_UPDATE,
          "Suspend ({\"suspend\": {}}) or resume ({\"resume\": {}}) a scheduled operation",
          "ScheduledOperationAction", "scheduled_operation", response_schema="ScheduledOperation"),
    Route("DELETE", _SO + "/{scheduled_operation_id}", scheduled_operations.delete, Rule.SCHEDULED_OPERATION_DELETE,
          "Delete a scheduled operation (and its logs)", status=204),
    Route("GET", _SO + "/{scheduled_operation_id}/logs", scheduled_operations.logs, Rule.SCHEDULED_OPERATION_GET,
          "List the runs of a scheduled operation", response_key="scheduled_operation_logs",
          response_schema="ScheduledOperationLog", listing=True,
          query=(*PAGE, *SORT, *scheduled_operations.LOG_FILTERS), sort_keys=scheduled_operations.LOG_SORT_KEYS),
    Route("GET", "/alerts", alerts.index, Rule.ALERT_GET_ALL,
          "List alerts: the project's, and the infrastructure alerts that put its plans at risk",
          response_key="alerts", response_schema="Alert", listing=True, query=(*SCOPE, "active", "severity")),
    Route("GET", "/os-services", services.index, Rule.SERVICE_GET_ALL, "List services, up or down (admin)",
          response_key="services", response_schema="Service", listing=True, query=services.FILTERS),
    Route("PUT", "/os-services/{service_id}", services.update, Rule.SERVICE_UPDATE,
          "Enable or disable a service (admin)", "ServiceUpdate", "service", response_schema="Service"),
    Route("GET", "/usage", usage.index, Rule.USAGE_GET,
          "Show what the project's checkpoints hold in each provider's bank (all_tenants: every project's)",
          response_key="usage", response_schema="Usage", listing=True, query=(*SCOPE, "provider_id"),
          naming=("provider_id",)),
    Route("GET", "/pools", usage.pools, Rule.POOL_GET_ALL,
          "List every provider's block backend pools and their capacity (admin)", response_key="pools",
          response_schema="Pool", listing=True),
    Route("GET", _QUOTA, quotas.show, Rule.QUOTA_GET, "Show a project's quotas", response_key="quota",
          response_schema="Quota"),
    Route("PUT", _QUOTA, quotas.update, Rule.QUOTA_UPDATE, "Set a project's quotas (admin; -1: unlimited)",
          "QuotaUpdate", "quota", response_schema="Quota"),
    Route("GET", _QUOTA + "/detail", quotas.detail, Rule.QUOTA_GET,
          "Show a project's quotas with what is in use", response_key="quota", response_schema="QuotaDetail"),
    Route("GET", _QUOTA + "/defaults", quotas.defaults, Rule.QUOTA_DEFAULTS, "Show the default quotas",
          response_key="quota", response_schema="Quota"),
    Route("GET", "/quota_classes/{quota_class_name}", quotas.class_show, Rule.QUOTA_CLASS_GET,
          "Show a quota class (admin)", response_key="quota_class", response_schema="QuotaClass"),
    Route("PUT", "/quota_classes/{quota_class_name}", quotas.class_update, Rule.QUOTA_CLASS_UPDATE,
          "Set a quota class's limits (admin; the class 'default' gives every project's defaults)",
          "QuotaClassUpdate", "quota_class", response_schema="QuotaClass"),
)
