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


def _script(tmp_path: pathlib.Path, body: str) -> str:
    script = tmp_path / "qemu-storage-daemon"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_a_daemon_that_never_answers_is_reported_with_what_was_seen(tmp_path: pathlib.Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from strongroom.block.qcow2 import daemon as daemon_module

    monkeypatch.setattr(daemon_module, "START_TIMEOUT", 0.5)
    mute = daemon_module.Daemon(str(tmp_path / "state"), "qcow2 block backend at x", 0.1,
                                _script(tmp_path, "exec sleep 30"))
    with pytest.raises(exceptions.BlockUnavailable,
                       match=r"did not answer on QMP within 0.5 s \(its QMP socket never appeared\)"):
        mute.ensure()
    assert mute.pid is not None and daemon_module.process_start(mute.pid) is None  # killed, not left behind


def test_a_daemon_slower_to_start_than_the_operations_timeout_is_waited_for(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a loaded machine a daemon may take longer to come up than one QMP command may take."""
    from strongroom.block.qcow2 import daemon as daemon_module
    from tests.servers.qemu import require_qemu

    require_qemu()
    monkeypatch.setattr(daemon_module, "START_TIMEOUT", 10.0)
    slow = daemon_module.Daemon(str(tmp_path / "state"), "qcow2 block backend at x", 0.2,
                                _script(tmp_path, 'sleep 1\nexec qemu-storage-daemon "$@"'))
    try:
        assert slow.execute("query-version")["qemu"]["major"] >= 6
    finally:
        slow.stop()
