"""The data mover: chunking, hashing, compression, chunk store and manifests.

Layering: nothing in this package imports the service layers.  See
``doc/data-path.md`` for the object formats and invariants.
"""

from strongroom.datamover import incremental
from strongroom.datamover.audit import AuditResult, audit
from strongroom.datamover.chunkstore import ChunkStore
from strongroom.datamover.incremental import Parent
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
    "AuditResult",
    "BackupResult",
    "ChunkStore",
    "ManifestHeader",
    "ManifestIncomplete",
    "ManifestInfo",
    "Parent",
    "RestoreResult",
    "VerifyResult",
    "audit",
    "backup",
    "incremental",
    "manifest_digests",
    "read_manifest_header",
    "restore",
    "verify",
]
