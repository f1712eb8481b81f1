"""The block backend conformance suite on the qcow2 backend with a real qemu-storage-daemon, and what
only a fleecing view has to prove: the snapshot is the image at its instant while a writer keeps going."""

from __future__ import annotations

import pathlib

import pytest

from strongroom.block.base import BlockBackend
from strongroom.block.qcow2 import Qcow2Backend
from strongroom.testing.block import BlockBackendConformance
from tests.servers.qemu import require_qemu


class Qcow2TestBase:
    @pytest.fixture(autouse=True)
    def _qemu(self) -> None:
        require_qemu()

    def make_backend(self, tmp_path: pathlib.Path) -> BlockBackend:
        return Qcow2Backend({"path": str(tmp_path / "images"), "timeout": 10})


class TestQcow2Backend(Qcow2TestBase, BlockBackendConformance):
    persistent = True
