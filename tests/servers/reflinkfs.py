"""A freshly made reflink filesystem (XFS with ``reflink=1``, else btrfs), loop-mounted for a test.

The loopback block backend snapshots by reflink and tells changed blocks by FIEMAP there.  Making one
needs root, ``losetup``/``mount`` and ``mkfs.xfs`` (Debian ``xfsprogs``) or ``mkfs.btrfs``
(``btrfs-progs``); without them the test is skipped (failed under ``CI=true``).  The filesystem is always
unmounted and its loop device detached.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator

from tests.servers import unavailable


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120).stdout.strip()


@contextlib.contextmanager
def reflink_filesystem(base: pathlib.Path, size: int) -> Iterator[pathlib.Path]:
    """The mount point (under ``base``) of a new ``size``-byte reflink filesystem."""
    if os.geteuid() != 0:
        unavailable("loop-mounting a filesystem needs root")
    if shutil.which("mkfs.xfs"):
        mkfs = ["mkfs.xfs", "-q", "-m", "reflink=1"]
    elif shutil.which("mkfs.btrfs"):
        mkfs = ["mkfs.btrfs", "-q"]
    else:
        unavailable("neither mkfs.xfs (xfsprogs) nor mkfs.btrfs (btrfs-progs) is installed")
    if not shutil.which("losetup") or not shutil.which("mount"):
        unavailable("losetup/mount are not installed")
    image = base / "fs.img"
    mountpoint = base / "mnt"
    mountpoint.mkdir()
    with open(image, "wb") as f:
        f.truncate(size)
    _run(*mkfs, str(image))
    try:
        device = _run("losetup", "--find", "--show", str(image))
    except subprocess.CalledProcessError as err:
        unavailable(f"losetup failed: {err.stderr.strip()}")
    try:
        try:
            _run("mount", device, str(mountpoint))
        except subprocess.CalledProcessError as err:
            unavailable(f"mount failed: {err.stderr.strip()}")
        try:
            yield mountpoint
        finally:
            subprocess.run(["umount", str(mountpoint)], check=False, capture_output=True, timeout=120)
            if os.path.ismount(mountpoint):
                subprocess.run(["umount", "-l", str(mountpoint)], check=False, capture_output=True)
    finally:
        subprocess.run(["losetup", "-d", device], check=False, capture_output=True, timeout=120)
        image.unlink(missing_ok=True)
