"""The metadata store: plans, the checkpoint catalogue, restores, operation logs, services.

One :class:`Database` is shared by every thread of a process; each call runs in
its own session and transaction.  Callers get typed records
(:mod:`strongroom.objects.records`), never ORM objects.  Status changes are
judged by :func:`strongroom.objects.status.check_transition`.

:class:`Database` is the one facade callers use; each aggregate's queries live in
a module of their own (:mod:`~strongroom.db.plans`, :mod:`~strongroom.db.checkpoints`,
:mod:`~strongroom.db.runs`, :mod:`~strongroom.db.services`) over the engine and
session helpers of :mod:`strongroom.db.core`; quotas (:mod:`~strongroom.db.quotas`) are enforced by
the creates of plans and checkpoints in their own transactions; :mod:`~strongroom.db.stats` reads the
figures the metrics show.
"""

from __future__ import annotations

from collections.abc import Mapping

from strongroom.clock import Clock
from strongroom.db.checkpoints import CheckpointQueries
from strongroom.db.core import DEFAULT_SORT, DBDeadlock, mask_url
from strongroom.db.plans import PlanQueries
from strongroom.db.quotas import QuotaQueries
from strongroom.db.runs import RESTORE_KINDS, RunQueries
from strongroom.db.services import ServiceQueries
from strongroom.db.stats import StatsQueries

__all__ = ["DEFAULT_SORT", "RESTORE_KINDS", "DBDeadlock", "Database", "mask_url"]


class Database(PlanQueries, CheckpointQueries, RunQueries, ServiceQueries, QuotaQueries, StatsQueries):
    """The metadata store behind one SQLAlchemy URL.

    No connection is made until the first call.  Thread-safe: every method
    runs in a session and transaction of its own.
    """

    def __init__(self, url: str, *, echo: bool = False, clock: Clock | None = None,
                 quota_defaults: Mapping[str, int] | None = None) -> None:
        super().__init__(url, echo=echo, clock=clock)
        if quota_defaults is not None:
            self.quota_defaults = dict(quota_defaults)
