"""One accepted run, as the driver, its run classes and the job tracker pass it around."""

from __future__ import annotations

import dataclasses
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

    def may_write(self) -> bool:
        return (self.fence is None or self.fence.valid()) and not self.lost_claim()

    def lost_claim(self) -> bool:
        """True once another worker owns this run's job (this process was paused past its claim)."""
        return self.claim is not None and not self.claim.valid()
