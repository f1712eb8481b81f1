"""The loopback block backend: raw sparse image files in one directory.

In ``path``, every regular file whose name does not start with '.' is a volume, and
``.snapshots/<id>`` is a snapshot image beside its JSON sidecar ``<id>.json`` (the layout
is spelled out, and owned, in :mod:`strongroom.block.loopback.layout`).

A staged volume (``create_volume(..., staged=True)``, what a restore writes into) is the hidden file
``.staged-<name>``, so it is never listed; ``publish_volume`` links it to ``<name>`` (atomic, and never
over a volume that took the name meanwhile) and removes the hidden name.  Its maker holds an ``flock``
on it until then, and on every partial snapshot image, so ``reclaim_leftovers`` removes exactly the
files whose maker died (a kill in the middle of a snapshot or a restore).

A volume's id and name are its file name, its size the file size, so a raw
image copied into the directory is a volume.  Symbolic links and anything in
sub-directories are ignored.

Snapshots are taken with the ``FICLONE`` ioctl where the filesystem can share
blocks (XFS with reflink, btrfs, bcachefs, ...).  Elsewhere they are copies of
the data extents only (found with ``SEEK_DATA``/``SEEK_HOLE``, all-zero chunks
skipped), truncated to size, so holes stay holes; or, where a volume's image is unchanged since an
earlier sparse-copy snapshot (its recorded stat, the rule of ``changes``), a hard link to that
snapshot's image (no copy; each stays deletable on its own).  The sidecar records which method was used
(``method``: ``reflink``, ``sparse-copy`` or ``hard-link``).

A snapshot is point in time with respect to writers opened through this
backend object (they hold the volume's lock during each write, the snapshot
holds it while cloning/copying).  A program writing the image file directly
is not fenced; a reflink is atomic, a sparse copy is not.

``changed_extents`` answers from each snapshot's record of the volume image's stat (unchanged image:
nothing changed) and, between two reflinks, from the extents the images still share (FIEMAP); otherwise
it cannot tell (the rules: ``changes``).  ``extend_volume`` truncates the image to its new size.

As in Cinder, a volume that still has snapshots cannot be destroyed:
``destroy_volume`` raises ``Conflict`` naming them.

``stats()`` reports one pool (the directory) with the filesystem's capacity
from ``statvfs``; ``allocated_capacity`` is the sum of the blocks allocated to
volumes and snapshots, so blocks shared by reflinks are counted once per file.

The package: ``backend`` (the :class:`LoopbackBackend` plugin), ``layout`` (names and the ``.snapshots``
files), ``handles`` (readers and writers), ``clone`` (reflink or sparse copy), ``extents`` (``SEEK_DATA``
scanning, exact ``pread``/``pwrite``), ``changes`` (what changed between two snapshots) and ``fiemap``
(the ``FS_IOC_FIEMAP`` ioctl).  The names below are its public surface.
"""

from strongroom.block.loopback.backend import LoopbackBackend
from strongroom.block.loopback.clone import (
    COPY_CHUNK,
    FICLONE,
    METHOD_HARD_LINK,
    METHOD_REFLINK,
    METHOD_SPARSE_COPY,
    clone_or_copy,
    sparse_copy,
)
from strongroom.block.loopback.extents import data_extents
from strongroom.block.loopback.handles import LoopbackReader, LoopbackWriter
from strongroom.block.loopback.layout import MAX_NAME_BYTES, SNAPSHOT_DIR, validate_name

__all__ = [
    "COPY_CHUNK",
    "FICLONE",
    "MAX_NAME_BYTES",
    "METHOD_HARD_LINK",
    "METHOD_REFLINK",
    "METHOD_SPARSE_COPY",
    "SNAPSHOT_DIR",
    "LoopbackBackend",
    "LoopbackReader",
    "LoopbackWriter",
    "clone_or_copy",
    "data_extents",
    "sparse_copy",
    "validate_name",
]
