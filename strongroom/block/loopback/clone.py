"""How the loopback backend copies a volume into a snapshot: a reflink where it can, else a sparse copy."""

from __future__ import annotations

import errno
import fcntl
import logging
import os

from strongroom.block.loopback.extents import data_extents, pread_exact, pwrite_all

LOG = logging.getLogger("strongroom.block.loopback")  # the backend's one logger, as before it was a package

#: ``_IOW(0x94, 9, int)`` from linux/fs.h; ``fcntl.FICLONE`` exists only from Python 3.12.
FICLONE = getattr(fcntl, "FICLONE", 0x40049409)
COPY_CHUNK = 1 << 20
METHOD_REFLINK = "reflink"
METHOD_SPARSE_COPY = "sparse-copy"
#: A second name for an earlier snapshot's image (a sparse copy), the volume unchanged since.
METHOD_HARD_LINK = "hard-link"

# errnos meaning "this filesystem (or pair of files) cannot clone": fall back to copying.
_NO_CLONE = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EPERM}


def sparse_copy(src_fd: int, dst_fd: int, size: int) -> None:
    """Copy ``size`` bytes, writing only the data extents' non-zero chunks, then truncate to size.

    Holes in the source (and all-zero chunks of its data extents) stay holes in the destination.
    """
    zero = bytes(COPY_CHUNK)
    for extent in data_extents(src_fd, size):
        pos = extent.offset
        while pos < extent.end:
            chunk = pread_exact(src_fd, pos, min(COPY_CHUNK, extent.end - pos))
            if not chunk:
                break
            if chunk != zero[: len(chunk)]:
                pwrite_all(dst_fd, chunk, pos)
            pos += len(chunk)
    os.ftruncate(dst_fd, size)


def clone_or_copy(src_fd: int, dst_fd: int, size: int) -> str:
    """Reflink ``src_fd`` into ``dst_fd`` if the filesystem can, else :func:`sparse_copy`.

    Returns the method used: :data:`METHOD_REFLINK` or :data:`METHOD_SPARSE_COPY`.
    """
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError as err:
        if err.errno not in _NO_CLONE:
            raise
        LOG.debug("FICLONE not possible (%s); falling back to a sparse copy", os.strerror(err.errno or 0))
        os.ftruncate(dst_fd, 0)
        sparse_copy(src_fd, dst_fd, size)
        return METHOD_SPARSE_COPY
    return METHOD_REFLINK
