"""The resource classes Strongroom declares and their alert conditions.

What affects what (a fault on the left puts the right at risk)::

    Bank ──> Provider ──> Plan <── ScheduledOperation
    BlockBackend ──> Pool ──> Volume ──> Plan <── Checkpoint
    BlockBackend ──────────> Volume   (its pools are unknown while it cannot answer)

Each condition is a few declarative lines (:func:`strongroom.alerts.model.condition`); ``doc/alerts.md``
lists them with their messages.
"""

from __future__ import annotations

from strongroom.alerts.model import Resource, ResourceClass, Settings, Severity, condition


class Bank(ResourceClass):
    kind = "bank"
    infrastructure = True


class Provider(ResourceClass):
    kind = "provider"
    infrastructure = True


class BlockBackend(ResourceClass):
    kind = "block_backend"
    infrastructure = True


class Pool(ResourceClass):
    kind = "pool"
    infrastructure = True


class Volume(ResourceClass):
    kind = "volume"


class Plan(ResourceClass):
    kind = "plan"


class ScheduledOperation(ResourceClass):
    kind = "scheduled_operation"


class Checkpoint(ResourceClass):
    kind = "checkpoint"


ALL: tuple[type[ResourceClass], ...] = (Bank, Provider, BlockBackend, Pool, Volume, Plan, ScheduledOperation,
                                        Checkpoint)
BY_KIND = {cls.kind: cls for cls in ALL}


# -- banks -------------------------------------------------------------------------------------------------

@condition(Bank, "bank_unreachable", Severity.ERROR, "{name} is unreachable: {error}")
def _bank_unreachable(bank: Resource, s: Settings) -> bool:
    return bank.statistics.get("error") is not None


@condition(Bank, "lease_renewals_failing", Severity.WARNING,
           "renewals of this service's lease in {name} are failing: {lease_error}")
def _lease_failing(bank: Resource, s: Settings) -> bool:
    return bank.statistics.get("lease_error") is not None


# -- block storage ----------------------------------------------------------------------------------------

@condition(BlockBackend, "block_backend_unreachable", Severity.ERROR,
           "{name} cannot report its capacity: {error}")
def _backend_unreachable(backend: Resource, s: Settings) -> bool:
    return backend.statistics.get("error") is not None


@condition(Pool, "pool_free_capacity_low", Severity.WARNING,
           "{name} has {free_percent:.1f}% free ({free_bytes} of {total_bytes} bytes), under {pool_free_percent}%",
           clears=lambda pool, s: pool.statistics["free_percent"] >= s.pool_free_percent + s.pool_hysteresis)
def _pool_low(pool: Resource, s: Settings) -> bool:
    return bool(pool.statistics["free_percent"] < s.pool_free_percent)


# -- plans, their runs and checkpoints ------------------------------------------------------------------

@condition(Plan, "recovery_point_missed", Severity.ERROR,
           "{name} has no available checkpoint since {last_available_at}: a scheduled run was due at "
           "{due_at} (every {interval}s), and the {recovery_point_grace:.0f}s grace is over")
def _recovery_point(plan: Resource, s: Settings) -> bool:
    deadline = plan.statistics.get("deadline")
    now = plan.statistics.get("now")
    return deadline is not None and now is not None and now > deadline


@condition(ScheduledOperation, "last_run_failed", Severity.ERROR,
           "the last run of {name} (due {fire_time}) ended {state}: {error_info}")
def _last_run_failed(op: Resource, s: Settings) -> bool:
    return op.statistics.get("state") in ("failed", "dropped_out_of_window")


@condition(Checkpoint, "verification_failed", Severity.ERROR,
           "the last verification of checkpoint {checkpoint_id} (at {verified_at}) failed: {reason}")
def _verification_failed(cp: Resource, s: Settings) -> bool:
    return cp.statistics.get("verification") == "fail"


@condition(Checkpoint, "checkpoint_stuck", Severity.WARNING,
           "checkpoint {checkpoint_id} has been {status} since {since}, longer than {checkpoint_stuck_after:.0f}s")
def _stuck(cp: Resource, s: Settings) -> bool:
    idle = cp.statistics.get("idle_seconds")
    return cp.attributes.get("status") in ("protecting", "deleting", "copying") and idle is not None \
        and idle > s.checkpoint_stuck_after
