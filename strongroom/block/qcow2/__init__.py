"""The qcow2 block backend: a directory of qcow2 images served by one ``qemu-storage-daemon``.

Strongroom starts the daemon on first use (QMP and NBD on unix sockets), restarts it when it died and
stops it by PID on ``close()``.  A snapshot is a point-in-time *fleecing* view: one QMP ``transaction``
starts a ``blockdev-backup sync=none`` job from the live image into a temporary qcow2 overlay backed by
it, so every block written to the live image afterwards is first copied into the overlay, and the
overlay, exported read-only over NBD, reads as the image did at that instant while the image stays
writable.  Reads use libnbd and ask ``base:allocation`` first, so unwritten space is never read;
restores send zero blocks as NBD write-zeroes, so they stay thin.  Each snapshot also starts a persistent
dirty bitmap of the image in the same transaction (``tracking``), so ``changed_extents`` tells what changed
between two snapshots; a view survives a clean daemon restart and a growth of its image (``layout``).

The package: ``qmp`` (a small synchronous QMP client), ``daemon`` (starting, watching and stopping the
daemon), ``layout`` (the directory's names and sidecars, ``qemu-img``), ``handles`` (NBD readers and
writers), ``nodes`` (the images attached to the daemon and the snapshots' views: started, restacked after
a restart or a growth, ended), ``tracking`` (the dirty bitmap chain, planned), ``changes`` (the chain on
the daemon: the switch at each snapshot, tidying, ``changed_extents``) and ``backend``
(:class:`Qcow2Backend`, which delegates to ``nodes`` and ``changes``).  libnbd is Debian's
``python3-libnbd``, imported on first use.
``doc/block-qcow2.md`` says what a snapshot means across a daemon restart.
"""

from strongroom.block.qcow2.backend import OPTIONS_SCHEMA, Qcow2Backend
from strongroom.block.qcow2.daemon import Daemon
from strongroom.block.qcow2.handles import NbdReader, NbdWriter
from strongroom.block.qcow2.qmp import QmpClient, QmpError, QmpGone

__all__ = ["OPTIONS_SCHEMA", "Daemon", "NbdReader", "NbdWriter", "Qcow2Backend", "QmpClient", "QmpError", "QmpGone"]
