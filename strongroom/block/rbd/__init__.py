"""The rbd block backend: volumes are the RBD images of one Ceph pool, read and written with librbd.

Snapshots are RBD snapshots named ``strongroom-<uuid>`` whose tags live in an image metadata record
beside them; any other snapshot of an image (the user's, OpenStack's) is never listed, read or deleted.
A staged volume (what a restore writes into) is the image ``.strongroom-staged-<name>``, renamed to
``<name>`` when published, and kept open by its maker until then: the open image's watch is what tells
``reclaim_leftovers`` in any process whether the maker is alive.  The names are spelled out, and owned,
in :mod:`strongroom.block.rbd.layout`.

Reads come from the snapshot, several in flight at once (``read_workers``), and only where librbd's diff
from the beginning of the image says data was written; restores write only what is not zero, so a
restored image stays as thin as the original.

The package: ``options`` (schema and librados settings), ``connection`` (one lazily opened connection per
backend, with timeouts, and the translation of Ceph's errors into ones naming the backend and pool),
``layout`` (names), ``handles`` (readers and writers over an image or snapshot, reusable by any backend
that reaches RBD images) and ``backend`` (the :class:`RbdBackend` plugin).  librados and librbd are
Debian's ``python3-rados`` and ``python3-rbd``, imported on first use only.  ``doc/block-rbd.md`` says how
to point it at a cluster and which caps its Ceph user needs.
"""

from strongroom.block.rbd.backend import RbdBackend
from strongroom.block.rbd.connection import RbdConnection
from strongroom.block.rbd.handles import RbdReader, RbdWriter
from strongroom.block.rbd.layout import SNAPSHOT_PREFIX, STAGED_PREFIX, SnapshotName
from strongroom.block.rbd.options import OPTIONS_SCHEMA, ClusterConfig, cluster_config

__all__ = [
    "OPTIONS_SCHEMA",
    "SNAPSHOT_PREFIX",
    "STAGED_PREFIX",
    "ClusterConfig",
    "RbdBackend",
    "RbdConnection",
    "RbdReader",
    "RbdWriter",
    "SnapshotName",
    "cluster_config",
]
