"""What the qcow2 backend says when qemu-img is missing or fails: no qemu needed for these."""

from __future__ import annotations

import os
import pathlib

import pytest

from strongroom import exceptions
from strongroom.block.qcow2 import Qcow2Backend

MiB = 1 << 20


def backend_with(tmp_path: pathlib.Path, qemu_img: str) -> Qcow2Backend:
    return Qcow2Backend({"path": str(tmp_path / "images"), "qemu_img": qemu_img})


def test_a_missing_qemu_img_names_its_package_and_leaves_no_image(tmp_path: pathlib.Path) -> None:
    backend = backend_with(tmp_path, str(tmp_path / "no-such-qemu-img"))
    try:
        with pytest.raises(exceptions.ConfigError, match="qcow2 block backend at .*qemu-utils"):
            backend.create_volume(MiB, name="disk")
        assert backend.list_volumes() == [] and backend.list_staged_volumes() == []
        assert os.listdir(tmp_path / "images") == []
    finally:
        backend.close()


@pytest.mark.parametrize("staged", [False, True])
def test_a_failing_qemu_img_says_why_and_the_name_stays_free(tmp_path: pathlib.Path, staged: bool) -> None:
    failing = tmp_path / "qemu-img"
    failing.write_text("#!/bin/sh\necho 'No space left on device' >&2\nexit 1\n")
    failing.chmod(0o755)
    backend = backend_with(tmp_path, str(failing))
    try:
        for _ in range(2):  # the name is not taken by the failed attempt
            with pytest.raises(exceptions.BlockError, match="qemu-img create: No space left on device"):
                backend.create_volume(MiB, name="disk", staged=staged)
        assert os.listdir(tmp_path / "images") == []
        assert backend.reclaim_leftovers() == []
    finally:
        backend.close()
