"""The data mover: chunking, hashing, compression, chunk store and manifests.

Layering: nothing in this package imports the service layers.  See
``doc/data-path.md`` for the object formats and invariants.
"""

from strongroom.datamover.chunkstore import ChunkStore
from strongroom.datamover.manifest import (
    ManifestHeader,
    ManifestIncomplete,
    ManifestInfo,
    manifest_digests,
    read_manifest_header,
)
from strongroom.datamover.mover import (
    BackupResult,
    RestoreResult,
    VerifyResult,
    backup,
    restore,
    verify,
)

__all__ = [
    "BackupResult",
    "ChunkStore",
    "ManifestHeader",
    "ManifestIncomplete",
    "ManifestInfo",
    "RestoreResult",
    "VerifyResult",
    "backup",
    "manifest_digests",
    "read_manifest_header",
    "restore",
    "verify",
]
