"""Domain types and their statuses."""

from strongroom.objects.status import (
    CheckpointStatus,
    PlanStatus,
    ResourceStatus,
    RestoreStatus,
    VerificationStatus,
    check_transition,
)

__all__ = [
    "CheckpointStatus",
    "PlanStatus",
    "ResourceStatus",
    "RestoreStatus",
    "VerificationStatus",
    "check_transition",
]
