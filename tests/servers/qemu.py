"""What the qcow2 backend's tests need from the machine: qemu-storage-daemon, qemu-img and libnbd.

The backend starts its own daemon (that is the code under test), so there is no server to start here:
only the check that the programs and the ``nbd`` module are there.  Under ``CI=true`` a missing package
fails the tests instead of skipping them.
"""

from __future__ import annotations

import shutil

from tests.servers import unavailable

#: Debian packages, by the program or module that shows they are installed.
PACKAGES = {"qemu-storage-daemon": "qemu-system-common", "qemu-img": "qemu-utils"}


def missing_packages() -> list[str]:
    missing = sorted({package for program, package in PACKAGES.items() if shutil.which(program) is None})
    try:
        import nbd  # noqa: F401
    except ImportError:
        missing.append("python3-libnbd")
    return missing


def require_qemu() -> None:
    """Go on only if the qcow2 backend can run here (skip, or fail under CI, naming the packages)."""
    missing = missing_packages()
    if missing:
        unavailable(f"the qcow2 backend needs the Debian packages {', '.join(missing)} "
                    "(`make test` installs them when run as root)")
