"""The block backend conformance suite on the rbd backend against a real Ceph cluster, and what only RBD has.

The cluster (``tests/servers/ceph.py``: one mon, one memstore OSD, cephx on) starts once per run.  Each
test class gets its own pool and each test its own RBD namespace in it (derived from ``tmp_path``, so a
second backend made on the same ``tmp_path`` sees the first one's images, as the suite's restart check
needs), which keeps listings per test exact on the shared cluster.
"""

from __future__ import annotations

import hashlib
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from strongroom import exceptions
from strongroom.block.base import BlockBackend
from strongroom.block.rbd import RbdBackend
from strongroom.testing.block import BlockBackendConformance, MiB, pattern
from tests.servers.ceph import CephCluster


def namespace_for(tmp_path: pathlib.Path) -> str:
    return "t" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]


@pytest.fixture(scope="class")
def rbd_pool(ceph_cluster: CephCluster) -> Iterator[str]:
    pool = ceph_cluster.new_pool("conformance")
    try:
        yield pool
    finally:
        ceph_cluster.delete_pool(pool)


class RbdTestBase:
    @pytest.fixture(autouse=True)
    def _cluster(self, ceph_cluster: CephCluster, rbd_pool: str) -> None:
        self.cluster = ceph_cluster
        self.pool = rbd_pool

    def options(self, tmp_path: pathlib.Path, **extra: Any) -> dict[str, Any]:
        return self.cluster.backend_options(self.pool, namespace=namespace_for(tmp_path), **extra)

    def make_backend(self, tmp_path: pathlib.Path) -> BlockBackend:
        return RbdBackend(self.options(tmp_path))


class TestRbdBackend(RbdTestBase, BlockBackendConformance):
    persistent = True
    # The key option must hold a real cephx key to connect at all: its secrecy is checked below instead.
    secret_option = None
    # librbd reports a new 4 MiB object as allocated from its start to the end of what was written:
    # volumes of several objects let "a small write allocates little" mean what it says.
    volume_size = 16 * MiB
