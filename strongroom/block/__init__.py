"""Block backends: volumes and snapshots that protection plugins read and write.

Layering: nothing in this package imports the service layers.
"""

from strongroom.block.base import (
    BackendStats,
    BlockBackend,
    BlockReader,
    BlockWriter,
    Extent,
    PoolStats,
    Snapshot,
    Volume,
)

__all__ = [
    "BackendStats",
    "BlockBackend",
    "BlockReader",
    "BlockWriter",
    "Extent",
    "PoolStats",
    "Snapshot",
    "Volume",
]
