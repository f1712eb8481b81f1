"""``/v1/{project_id}/restores`` (and, through :class:`RunKind`, ``/verifications``).

Create checks the checkpoint (404 when unknown, 409 unless ``available``), records the run
``in_progress`` and hands it to the protection service; if protection refuses it (400/409) the record
is removed again.  ``restore_auth`` is accepted; its password is neither stored nor echoed.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from typing import Any

from strongroom import exceptions
from strongroom.api import common, schemas
from strongroom.api.common import ApiRequest, Result
from strongroom.objects.records import CheckpointRecord, Restore, iso_time

SORT_KEYS = ("created_at", "updated_at", "status", "id")
FILTERS = ("status", "checkpoint_id", "provider_id")


@dataclasses.dataclass(frozen=True)
class RunKind:
    kind: str  # "restore" | "verification"
    key: str  # JSON wrapper key
    collection: str
    schema: dict[str, Any]
    has_target: bool


RESTORE = RunKind("restore", "restore", "restores", schemas.RESTORE_CREATE, True)
VERIFICATION = RunKind("verification", "verification", "verifications", schemas.VERIFICATION_CREATE, False)


def view(run: Restore, kind: RunKind) -> dict[str, Any]:
    out = {
        "id": run.id,
        "project_id": run.project_id,
        "provider_id": run.provider_id,
        "checkpoint_id": run.checkpoint_id,
        "parameters": run.parameters or {},
        "status": run.status,
        "resources_status": run.resources_status or {},
        "resources_reason": run.resources_reason or {},
        # Karbor's shape: the run's progress is shown inside extra_info (the record keeps it apart).
        "extra_info": {**(run.extra_info or {}), **({"progress": run.progress} if run.progress else {})},
        "created_at": iso_time(run.created_at),  # not to_dict(): it copies every field
    }
    if kind.has_target:
        out["restore_target"] = run.restore_target
    return out


def _start(req: ApiRequest, kind: RunKind) -> Result:
    req.authorize(f"{kind.kind}:create")
    body = req.validated_body(kind.schema)[kind.key]
    cp: CheckpointRecord = req.db.get_checkpoint(body["checkpoint_id"], req.owner_scope(),
                                                 body["provider_id"])
    if cp.status != "available":
        raise exceptions.Conflict(reason=f"Checkpoint {cp.id} is not available (status: {cp.status}); "
                                         f"only available checkpoints can be used for a {kind.kind}.")
    extra_info: dict[str, Any] = {}
    auth = body.get("restore_auth")
    if auth:  # kept without its password: the password is never stored or echoed
        extra_info["restore_auth"] = {k: v for k, v in auth.items() if k != "password"}
    run = Restore(id=str(uuid.uuid4()), project_id=req.project_id, provider_id=body["provider_id"],
                  checkpoint_id=cp.id, kind=kind.kind, restore_target=body.get("restore_target"),
                  parameters=body.get("parameters") or {}, status="in_progress", extra_info=extra_info)
    req.db.create_restore(run)
    start = req.protection.restore if kind.kind == "restore" else req.protection.verify
    try:
        start(req.ctx, run.id)
    except (exceptions.InvalidInput, exceptions.Conflict, exceptions.NotFound):
        req.db.delete_restore(run.id)
        raise
    except Exception:
        # The service may or may not have accepted it; never leave a run that nobody will finish.
        try:
            req.db.update_restore(run.id, {"status": "fail"})
        except exceptions.StrongroomError:
            pass
        raise
    return 200, {kind.key: view(req.db.get_restore(run.id, kind=kind.kind), kind)}


def _index(req: ApiRequest, kind: RunKind) -> Result:
    req.authorize(f"{kind.kind}:get_all")
    return common.db_list(req, kind.collection, functools.partial(req.db.list_restores, kind=kind.kind),
                          lambda r: view(r, kind), project=req.list_scope(),
                          filters=common.filter_params(req, FILTERS), sort_keys=SORT_KEYS)


def _show(req: ApiRequest, kind: RunKind, run_id: str) -> Result:
    run: Restore = req.db.get_restore(run_id, req.owner_scope(), kind=kind.kind)
    req.authorize(f"{kind.kind}:get", {"project_id": run.project_id})
    return 200, {kind.key: view(run, kind)}


def create(req: ApiRequest) -> Result:
    return _start(req, RESTORE)


def index(req: ApiRequest) -> Result:
    return _index(req, RESTORE)


def show(req: ApiRequest, restore_id: str) -> Result:
    return _show(req, RESTORE, restore_id)
