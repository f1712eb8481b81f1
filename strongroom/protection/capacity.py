"""What an administrator sees of a provider's block backends: the driver, its pools and their capacity.

A service may run several backends side by side (a loopback directory, two pools of one Ceph cluster,
a qcow2 directory, each in its own provider); each provider's show answers, to administrators only,
what :meth:`BlockBackend.stats` reports for the backends its plugins name.  One backend that cannot
answer (a cluster down) never hides the others nor fails the show: its entry carries the error, which
names the backend and never holds one of its secret options.
"""

from __future__ import annotations

import logging
from typing import Any

from strongroom import exceptions
from strongroom.block import BlockBackend
from strongroom.block.base import BackendStats
from strongroom.protection.providers import Provider
from strongroom.redaction import scrub

LOG = logging.getLogger(__name__)


def stats_view(name: str, stats: BackendStats) -> dict[str, Any]:
    """``{"name", "driver", "pools": [{"name", "total_bytes", "free_bytes", "allocated_bytes"}]}``."""
    return {"name": name, "driver": stats.backend, "pools": [
        {"name": pool.name, "total_bytes": pool.total_capacity, "free_bytes": pool.free_capacity,
         "allocated_bytes": pool.allocated_capacity} for pool in stats.pools]}


def _secrets(backend: BlockBackend) -> list[str]:
    return [str(value) for key, value in backend.options.items() if key in backend.secret_options and value]


def backend_view(name: str, backend: BlockBackend) -> dict[str, Any]:
    """The view of one backend; on failure ``pools`` is empty and ``error`` says why (secrets masked)."""
    try:
        return stats_view(name, backend.stats())
    except (exceptions.StrongroomError, OSError) as err:
        reason = scrub(str(err), _secrets(backend))
        LOG.warning("block backend %s could not report its capacity: %s", name, reason)
        return {"name": name, "driver": name, "pools": [], "error": reason}


def provider_backends(provider: Provider) -> list[dict[str, Any]]:
    """Every block backend the provider's plugins name, sorted by name."""
    return [backend_view(name, backend) for name, backend in sorted(provider.block_backends().items())]
