"""One run of one claimed fire: protect the plan, wait for the checkpoint, apply retention, log the outcome.

Every step that has an effect outside the fire row is preceded by a write guarded by the claim token
(:meth:`SchedulingStore.update_run`), so an engine that lost its claim stops before it acts, and the
engine that took the fire over resumes from what the row says:

- no ``checkpoint_id`` yet: look for a checkpoint whose ``extra_info.scheduled_fire_id`` is this fire (the
  previous owner may have died between protection accepting the run and recording it); if none, protect
  (only while the window is open, else the fire is ``dropped_out_of_window``);
- a ``checkpoint_id``: wait for it, then retention, then ``success`` or ``failed``.

Each run that reaches its operation sends ``scheduled_operation.run.start``, and every recorded end
``.end`` (success) or ``.error`` with the checkpoint's sizes and the run's duration
(:mod:`strongroom.notifications`), and counts the fire by outcome (:mod:`strongroom.metrics`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import threading
from typing import Any, Protocol

from strongroom import exceptions, metrics
from strongroom.clock import Clock
from strongroom.context import RequestContext
from strongroom.db.api import Database
from strongroom.db.scheduling import SchedulingStore
from strongroom.notifications import DISABLED, END, ERROR, START, Notifications
from strongroom.objects.kinds import FIRE_KEY
from strongroom.objects.locks import LOCK_DAYS
from strongroom.objects.records import CheckpointRecord
from strongroom.objects.scheduling import FireState, OperationType, ScheduledFire, ScheduledOperation
from strongroom.operationengine import retention
from strongroom.operationengine.identity import RunIdentity, TrustRefused

LOG = logging.getLogger(__name__)

CREATED_BY = "operation-engine"
CHECKPOINT_DONE = frozenset({"available", "error", "deleting", "deleted", "error-deleting"})
#: ``extra_info`` key of a fire that failed because Keystone refused the operation's trust.
TRUST_REFUSED = "trust_refused"
#: The event type of a run's notifications.
EVENT = "scheduled_operation.run"


class ProtectionClient(Protocol):
    """What the engine needs of :class:`strongroom.protection.rpcapi.ProtectionAPI`."""

    def protect(self, ctxt: RequestContext, plan: dict[str, Any], provider_id: str,
                extra_info: dict[str, Any] | None = None,
                scheduled_operation_id: str | None = None,
                retention_lock_days: int | None = None) -> dict[str, Any]: ...

    def delete_checkpoint(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str) -> None: ...

    def copy_checkpoint(self, ctxt: RequestContext, provider_id: str, checkpoint_id: str,
                        target_provider_id: str, scheduled_operation_id: str | None = None,
                        retention_lock_days: int | None = None) -> dict[str, Any]: ...


class ClaimLost(Exception):
    """Another engine holds this fire now; this run stops without touching it."""


class Stopping(Exception):
    """The engine is stopping: the run leaves the fire as it is; its claim expires and an engine takes it
    over (the one restarted, or another)."""


@dataclasses.dataclass
class RunContext:
    """What every run of one engine shares."""

    store: SchedulingStore
    db: Database
    protection: ProtectionClient
    identity: RunIdentity
    clock: Clock
    owner: str
    claim_timeout: float
    poll_interval: float
    checkpoint_timeout: float
    #: Suspend an operation after this many fires in a row whose trust Keystone refused (0: never).
    suspend_after: int = 0
    stopping: threading.Event = dataclasses.field(default_factory=threading.Event)
    notifications: Notifications = DISABLED


class FireRun:
    def __init__(self, env: RunContext, fire: ScheduledFire) -> None:
        assert fire.claim_token is not None
        self.env = env
        self.fire = fire
        self._started = env.clock.monotonic()
        self._op: ScheduledOperation | None = None
        self._ctx: RequestContext | None = None
        self._checkpoint: CheckpointRecord | None = None

    # -- guarded writes -------------------------------------------------------------

    def _update(self, **values: Any) -> ScheduledFire:
        fire = self.env.store.update_run(self.fire, values)
        if fire is None:
            raise ClaimLost(self.fire.id)
        self.fire = fire
        return fire

    def _confirm(self) -> None:
        """Make sure the claim is still ours and renew it unless it is fresh: the side effect that follows
        starts with most of a claim period ahead of it."""
        now = self.env.clock.now()
        expires = self.fire.claim_expires_at
        if expires is not None and (expires - now).total_seconds() > self.env.claim_timeout * 0.8:
            return
        self._update(claim_expires_at=now + _dt.timedelta(seconds=self.env.claim_timeout))

    def _finish(self, state: FireState, error: str | None = None, **values: Any) -> None:
        self._update(state=state.value, ended_at=self.env.clock.now(), error_info=error, **values)
        LOG.info("scheduled fire %s of operation %s at %s: %s%s", self.fire.id, self.fire.operation_id,
                 self.fire.fire_time.isoformat(), state.value, f" ({error})" if error else "")
        metrics.scheduled_fire(state.value)
        payload = self._payload()
        payload.update(state=state.value, reason=error,
                       duration_seconds=round(self.env.clock.monotonic() - self._started, 3))
        self.env.notifications.send(self._ctx, EVENT, END if state is FireState.SUCCESS else ERROR, payload)

    def _payload(self) -> dict[str, Any]:
        """Ids and, once its checkpoint ended, its sizes (never the operation's trust or definition)."""
        fire, op, cp = self.fire, self._op, self._checkpoint
        payload: dict[str, Any] = {
            "scheduled_operation_id": fire.operation_id, "fire_id": fire.id, "project_id": fire.project_id,
            "fire_time": fire.fire_time.isoformat(), "attempt": fire.attempts, "engine": self.env.owner,
            "operation_type": op.operation_type if op is not None else None,
            "plan_id": op.plan_id if op is not None else None,
            "provider_id": op.provider_id if op is not None else None,
            "checkpoint_id": fire.checkpoint_id,
        }
        if cp is not None:
            read, stored = metrics.protected_sizes(cp.extra_info or {})
            payload.update(checkpoint_status=cp.status, logical_size=cp.bytes_total, bytes_read=read,
                           bytes_stored=stored)
        return payload

    # -- the run ------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except ClaimLost:
            LOG.warning("scheduled fire %s was taken over by another engine; %s stops", self.fire.id,
                        self.env.owner)
        except Stopping:
            LOG.info("scheduled fire %s left to the next engine: %s is stopping", self.fire.id, self.env.owner)
        except Exception as err:  # noqa: BLE001 - every failure ends in the fire's log
            if not isinstance(err, exceptions.StrongroomError):
                LOG.exception("scheduled fire %s failed", self.fire.id)
            message = err.message if isinstance(err, exceptions.StrongroomError) else f"{type(err).__name__}: {err}"
            try:
                self._finish(FireState.FAILED, message)
            except ClaimLost:
                pass
            except Exception:  # noqa: BLE001 - the claim expires and another engine finishes it
                LOG.exception("could not record the failure of scheduled fire %s", self.fire.id)

    def _run(self) -> None:
        env = self.env
        try:
            op = env.store.get_operation(self.fire.operation_id)
        except exceptions.NotFound:
            return  # deleted with its fires meanwhile
        self._op = op
        try:
            ctx = env.identity.context_for(op)
        except TrustRefused as err:
            self._trust_refused(op, err)  # its .error notification, without the context it could not have
            return
        self._ctx = ctx
        env.notifications.send(ctx, EVENT, START, self._payload())
        if op.operation_type == OperationType.COPY:
            self._run_copy(ctx, op)
            return
        checkpoint_id = self.fire.checkpoint_id
        if checkpoint_id is None and self.fire.attempts > 1:  # an earlier owner may have started it
            checkpoint_id = self._adopt(op)
        if checkpoint_id is None:
            if env.clock.now() > self.fire.window_end:
                note = f" (engine {self.fire.owner} claimed it)" if self.fire.attempts > 1 else ""
                self._finish(FireState.DROPPED_OUT_OF_WINDOW, f"its window closed before a run started{note}")
                return
            checkpoint_id = self._protect(ctx, op)
        elif self.fire.checkpoint_id is None:
            self._update(checkpoint_id=checkpoint_id, started_at=env.clock.now())
        checkpoint = self._wait(checkpoint_id, op.provider_id)
        if checkpoint.status != "available":
            reason = f": {checkpoint.status_reason}" if checkpoint.status_reason else ""
            self._finish(FireState.FAILED, f"checkpoint {checkpoint_id} ended {checkpoint.status}{reason}")
            return
        extra: dict[str, Any] = {}
        if op.operation_type == OperationType.RETENTION_PROTECT:
            self._confirm()
            extra["retention"] = self._retain(ctx, op)
        self._finish(FireState.SUCCESS, None, extra_info=extra)

    def _trust_refused(self, op: ScheduledOperation, err: TrustRefused) -> None:
        """This fire fails once (no retry: Keystone would refuse again); after ``suspend_after`` such fires
        in a row the operation is suspended, so that nobody's Keystone is asked again until it is resumed."""
        env = self.env
        message = err.message
        refused = 1 + self._refused_before(op)
        if env.suspend_after and refused >= env.suspend_after:
            try:
                env.store.set_enabled(op.id, False, op.project_id)
            except exceptions.NotFound:
                pass  # deleted meanwhile
            message = (f"{message}; scheduled operation {op.id} suspended after {refused} fires in a row "
                       f"refused by Keystone (resume it once it may act again)")
            LOG.warning("scheduled operation %s suspended: %d fires in a row refused by Keystone", op.id, refused)
        self._finish(FireState.FAILED, message, extra_info={TRUST_REFUSED: True})

    def _refused_before(self, op: ScheduledOperation) -> int:
        """How many of the operation's fires just before this one failed on a refused trust, in a row."""
        count = 0
        for fire in self.env.store.list_fires(op.id, limit=max(self.env.suspend_after, 1) + 3):
            if fire.id == self.fire.id or fire.fire_time >= self.fire.fire_time:
                continue
            if not (fire.extra_info or {}).get(TRUST_REFUSED):
                break
            count += 1
        return count

    def _adopt(self, op: ScheduledOperation) -> str | None:
        """A checkpoint a previous owner of this fire already started, if any."""
        day = self.fire.fire_time.date()
        for cp in self.env.db.list_checkpoints(op.provider_id, op.project_id,
                                               filters={"plan_id": op.plan_id, "start_date": day}):
            if (cp.extra_info or {}).get(FIRE_KEY) == self.fire.id:
                return cp.id
        return None

    def _protect(self, ctx: RequestContext, op: ScheduledOperation) -> str:
        env = self.env
        plan = env.db.get_plan(op.plan_id, op.project_id)
        if plan.provider_id != op.provider_id:
            raise exceptions.InvalidInput(
                reason=f"plan {plan.id} now uses provider {plan.provider_id}, not {op.provider_id}")
        extra_info = {"created_by": CREATED_BY, "scheduled_operation_id": op.id, "trigger_id": op.trigger_id,
                      FIRE_KEY: self.fire.id, "fire_time": self.fire.fire_time.isoformat()}
        lock = op.operation_definition.get(LOCK_DAYS)
        self._confirm()
        try:
            record = env.protection.protect(ctx, plan.to_dict(), op.provider_id, extra_info=extra_info,
                                            scheduled_operation_id=op.id,
                                            **({"retention_lock_days": lock} if lock is not None else {}))
            checkpoint_id = str(record["id"])
        except Exception:
            # It may have been accepted all the same (e.g. the answer timed out): never start a second one.
            adopted = self._adopt(op)
            if adopted is None:
                raise
            checkpoint_id = adopted
        self._update(checkpoint_id=checkpoint_id, started_at=env.clock.now())
        return checkpoint_id

    def _wait(self, checkpoint_id: str, provider_id: str | None = None) -> CheckpointRecord:
        env = self.env
        deadline = env.clock.monotonic() + env.checkpoint_timeout
        while True:
            checkpoint = env.db.get_checkpoint(checkpoint_id, provider_id=provider_id)
            if checkpoint.status in CHECKPOINT_DONE:
                self._checkpoint = checkpoint
                return checkpoint
            if env.stopping.is_set():
                raise Stopping(self.fire.id)
            if env.clock.monotonic() > deadline:
                raise exceptions.ProtectionError(
                    reason=f"checkpoint {checkpoint_id} is still {checkpoint.status} after "
                           f"{env.checkpoint_timeout:g} seconds")
            env.clock.sleep(env.poll_interval)

    def _retain(self, ctx: RequestContext, op: ScheduledOperation, provider_id: str | None = None) -> dict[str, Any]:
        env = self.env
        provider_id = provider_id or op.provider_id
        policy = retention.Policy.from_definition(op.operation_definition)
        checkpoints = env.db.list_checkpoints(provider_id, op.project_id, filters={"plan_id": op.plan_id})
        decision = retention.decide(policy, checkpoints, env.clock.now())
        deleted: list[str] = []
        skipped: dict[str, str] = {}
        for checkpoint_id in decision.delete:
            try:
                env.protection.delete_checkpoint(ctx, provider_id, checkpoint_id)
                deleted.append(checkpoint_id)
            except (exceptions.Conflict, exceptions.NotFound) as err:  # changed meanwhile: next run decides
                skipped[checkpoint_id] = err.message
        out: dict[str, Any] = {"deleted": deleted, "kept": sorted(decision.keep)}
        if skipped:
            out["skipped"] = skipped
        if decision.due:  # due, but locked: no delete is tried before the date; a later run deletes them
            out["due_locked"] = decision.due
        return out

    # -- copy ---------------------------------------------------------------------

    def _run_copy(self, ctx: RequestContext, op: ScheduledOperation) -> None:
        """The plan's newest available checkpoint the target lacks, copied there; then retention of the plan's
        copies in the target, when the definition has retention options.  Nothing new: a success saying so."""
        env = self.env
        target = str(op.operation_definition["target_provider_id"])
        checkpoint_id = self.fire.checkpoint_id
        if checkpoint_id is None:
            if env.clock.now() > self.fire.window_end:
                self._finish(FireState.DROPPED_OUT_OF_WINDOW, "its window closed before a run started")
                return
            checkpoint_id = self._start_copy(ctx, op, target)
            if checkpoint_id is None:
                self._finish(FireState.SUCCESS, None, extra_info={"copy": {
                    "target_provider_id": target, "checkpoint_id": None,
                    "reason": "the target holds every available checkpoint of the plan already"}})
                return
        checkpoint = self._wait(checkpoint_id, provider_id=target)
        if checkpoint.status != "available":
            reason = f": {checkpoint.status_reason}" if checkpoint.status_reason else ""
            self._finish(FireState.FAILED, f"copy of checkpoint {checkpoint_id} to provider {target} ended "
                                           f"{checkpoint.status}{reason}")
            return
        extra: dict[str, Any] = {"copy": {"target_provider_id": target, "checkpoint_id": checkpoint_id}}
        if not retention.Policy.from_definition(op.operation_definition).empty:
            self._confirm()
            extra["retention"] = self._retain(ctx, op, provider_id=target)
        self._finish(FireState.SUCCESS, None, extra_info=extra)

    def _start_copy(self, ctx: RequestContext, op: ScheduledOperation, target: str) -> str | None:
        env = self.env
        held = {cp.id for cp in env.db.list_checkpoints(target, op.project_id, filters={"plan_id": op.plan_id})
                if cp.status != "deleted"}
        candidates = [cp for cp in env.db.list_checkpoints(op.provider_id, op.project_id, filters={
            "plan_id": op.plan_id, "status": "available"}) if cp.id not in held]  # newest first
        if not candidates:
            return None
        checkpoint_id = candidates[0].id
        lock = op.operation_definition.get(LOCK_DAYS)
        self._confirm()
        try:
            env.protection.copy_checkpoint(ctx, op.provider_id, checkpoint_id, target, scheduled_operation_id=op.id,
                                           **({"retention_lock_days": lock} if lock is not None else {}))
        except exceptions.Conflict:
            # Begun meanwhile (an earlier attempt of this fire whose answer was lost): follow that copy.
            if not env.db.list_checkpoints(target, op.project_id, filters={"plan_id": op.plan_id,
                                                                            "status": "copying"}):
                raise
        self._update(checkpoint_id=checkpoint_id, started_at=env.clock.now())
        return checkpoint_id

