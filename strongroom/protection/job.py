"""One accepted run, as the driver, its run classes and the job tracker pass it around."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from strongroom.context import RequestContext
from strongroom.objects.kinds import OperationKind
from strongroom.objects.records import CheckpointRecord, OperationLog, Restore
from strongroom.protection.leases import Fence
from strongroom.protection.providers import Provider

if TYPE_CHECKING:
    from strongroom.protection.conductor import Claim


@dataclasses.dataclass
class Job:
    """One accepted run.  Runs that write the bank (protect, delete) carry the ``fence`` of their lease epoch."""

    kind: OperationKind
    context: RequestContext
    provider: Provider
    checkpoint: CheckpointRecord
    log: OperationLog
    restore: Restore | None = None
    fence: Fence | None = None
    #: The jobboard claim of a run a conductor claimed (deployed mode).
    claim: Claim | None = None
    #: An earlier attempt of this job ran some hooks (a worker died): hooks may find a resume state.
    resumed: bool = False
    #: Lets go of the checkpoint in this process's active set (runs that write it): called once the end
    #: is recorded, before the after-publish hooks and notifications, so that a user who sees the checkpoint
    #: available and copies or deletes it at once is not told it is still being worked on.
    release: Callable[[], None] | None = None

    def may_write(self) -> bool:
        return (self.fence is None or self.fence.valid()) and not self.lost_claim()

    def lost_claim(self) -> bool:
        """True once another worker owns this run's job (this process was paused past its claim)."""
        return self.claim is not None and not self.claim.valid()
