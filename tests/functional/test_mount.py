"""``strongroom mount`` against the real all-in-one: a protected ext4 image, loop-mounted from the FUSE view.

Real FUSE (``/dev/fuse``) and a real loop device: skipped without them (or without root, which ``mount -o loop``
needs), failed instead under CI=true, where both are expected.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.functional.harness import PROVIDER_ID, AllInOne

pytestmark = pytest.mark.functional
CLI = str(Path(sys.executable).parent / "strongroom")
MiB = 1024 * 1024


def _need(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI runs the mount test: {why}")
        pytest.skip(why)


def _env(service: AllInOne) -> dict[str, str]:
    env = dict(os.environ, STRONGROOM_URL=service.url, OS_PROJECT_ID="demo",
               STRONGROOM_STATE_DIR=str(service.state_dir))
    env.pop("OS_AUTH_TOKEN", None)
    return env


def _cli_json(service: AllInOne, *args: str) -> dict:
    result = subprocess.run([CLI, "-f", "json", *args], capture_output=True, text=True, env=_env(service),
                            timeout=180)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


def _populate(root: Path) -> None:
    rng = random.Random(16)
    (root / "etc" / "ssh").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("strongroom-test\n")
    (root / "etc" / "ssh" / "sshd_config").write_text("PermitRootLogin no\n" * 50)
    (root / "home" / "ann" / "photos").mkdir(parents=True)
    (root / "home" / "ann" / "photos" / "big.bin").write_bytes(rng.randbytes(5 * MiB + 123))
    (root / "home" / "ann" / "notes.txt").write_text("remember the milk\n")
    (root / "home" / "ann" / "empty").write_bytes(b"")
    (root / "var" / "log").mkdir(parents=True)
    (root / "var" / "log" / "syslog").write_bytes(b"".join(b"line %d\n" % i for i in range(40000)))
    os.symlink("../etc/hostname", root / "home" / "ann" / "host-link")


def _tree(root: Path) -> dict[str, tuple[str, bytes]]:
    """Every entry below ``root`` (lost+found aside): its kind and content (a link's target)."""
    out: dict[str, tuple[str, bytes]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == "lost+found":
            continue
        if path.is_symlink():
            out[str(rel)] = ("link", os.readlink(path).encode())
        elif path.is_dir():
            out[str(rel)] = ("dir", b"")
        else:
            out[str(rel)] = ("file", path.read_bytes())
    return out


def _wait_mounted(process: subprocess.Popen[str], mountpoint: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"strongroom mount exited {process.returncode}: {process.stderr.read()}")
        if os.path.ismount(mountpoint):
            return
        time.sleep(0.1)
    raise AssertionError("strongroom mount did not mount in time")


def test_mount_shows_checkpoints_as_raw_volumes_that_loop_mount(all_in_one: AllInOne, tmp_path: Path) -> None:
    _need(os.path.exists("/dev/fuse"), "/dev/fuse is missing")
    _need(os.geteuid() == 0, "mount -o loop needs root")
    _need(shutil.which("mkfs.ext4") is not None, "mkfs.ext4 (e2fsprogs) is missing")
    _need(importlib.util.find_spec("pyfuse3") is not None, "pyfuse3 is not installed (make install needs libfuse3-dev)")
    source = tmp_path / "source"
    _populate(source)
    image = all_in_one.volumes / "disk.img"
    with open(image, "wb") as fh:
        fh.truncate(32 * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(source), str(image)], check=True)
    original = image.read_bytes()

    plan = _cli_json(all_in_one, "plan", "create", "mount-test", PROVIDER_ID, "--resource",
                     "OS::Cinder::Volume=disk.img")
    checkpoint = _cli_json(all_in_one, "checkpoint", "create", PROVIDER_ID, plan["id"], "--wait")
    assert checkpoint["status"] == "available"

    # The data route itself: a range, past the end, several ranges, an unknown volume.
    data_url = (f"{all_in_one.api()}/providers/{PROVIDER_ID}/checkpoints/{checkpoint['id']}"
                "/resources/OS::Cinder::Volume%23disk.img/data")
    resp = requests.get(data_url, headers={"Range": "bytes=1024-2047"}, timeout=30)
    assert resp.status_code == 206 and resp.content == original[1024:2048]
    assert resp.headers["Content-Range"] == f"bytes 1024-2047/{len(original)}"
    resp = requests.get(data_url, headers={"Range": f"bytes={len(original)}-"}, timeout=30)
    assert resp.status_code == 416 and resp.headers["Content-Range"] == f"bytes */{len(original)}"
    resp = requests.get(data_url, headers={"Range": "bytes=0-1,5-6"}, timeout=30)
    assert resp.status_code == 400 and "Range" in resp.text
    resp = requests.get(data_url.replace("disk.img", "other.img"), headers={"Range": "bytes=0-1"}, timeout=30)
    assert resp.status_code == 404 and "other.img" in resp.text

    mountpoint = tmp_path / "mnt"
    loop_dir = tmp_path / "loop"
    mountpoint.mkdir()
    loop_dir.mkdir()
    process = subprocess.Popen([CLI, "mount", str(mountpoint)], env=_env(all_in_one), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        _wait_mounted(process, mountpoint)
        stamp = checkpoint["created_at"][:19] + "Z"
        assert os.listdir(mountpoint) == ["mount-test"]
        assert os.listdir(mountpoint / "mount-test") == [f"{stamp}_{checkpoint['id']}"]
        raw = mountpoint / "mount-test" / f"{stamp}_{checkpoint['id']}" / "disk.img.raw"
        assert os.listdir(raw.parent) == ["disk.img.raw"]
        assert raw.stat().st_size == len(original)

        rng = random.Random(3)
        with open(raw, "rb") as fh:
            for _ in range(60):
                offset = rng.randrange(len(original))
                length = rng.choice([1, 511, 4096, 65536, 3 * MiB])
                fh.seek(offset)
                assert fh.read(length) == original[offset:offset + length], (offset, length)

        with pytest.raises(OSError) as refused:
            open(raw, "r+b")  # noqa: SIM115 - must not open
        assert refused.value.errno == errno.EROFS
        with pytest.raises(OSError) as refused:
            (raw.parent / "new-file").write_bytes(b"x")
        assert refused.value.errno == errno.EROFS

        subprocess.run(["mount", "-o", "loop,ro", str(raw), str(loop_dir)], check=True, timeout=60)
        try:
            assert _tree(loop_dir) == _tree(source)
        finally:
            subprocess.run(["umount", str(loop_dir)], check=True, timeout=60)

        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        assert "Traceback" not in stderr and "Unmounted" in stderr
        assert not os.path.ismount(mountpoint)
    finally:
        if os.path.ismount(loop_dir):
            subprocess.run(["umount", "-l", str(loop_dir)], check=False)
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        if os.path.ismount(mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)


def test_a_gpt_vm_image_mounts_from_its_partition_offset(all_in_one: AllInOne, tmp_path: Path) -> None:
    """Done-when 1's image: a GPT disk whose second partition is ext4; `mount -o loop,ro,offset=` of the raw
    file shows the tree the partition was made from."""
    from strongroom.testing import disk_images

    _need(os.path.exists("/dev/fuse"), "/dev/fuse is missing")
    _need(os.geteuid() == 0, "mount -o loop needs root")
    _need(not disk_images.tools_missing(), f"missing {disk_images.tools_missing()}")
    _need(importlib.util.find_spec("pyfuse3") is not None, "pyfuse3 is not installed (make install needs libfuse3-dev)")
    source = tmp_path / "source"
    disk_images.populate_etc(source)
    offset = disk_images.make_gpt_disk(all_in_one.volumes / "vm.img", source)
    plan = _cli_json(all_in_one, "plan", "create", "vm", PROVIDER_ID, "--resource", "OS::Cinder::Volume=vm.img")
    checkpoint = _cli_json(all_in_one, "checkpoint", "create", PROVIDER_ID, plan["id"], "--wait")
    assert checkpoint["status"] == "available"

    mountpoint, loop_dir = tmp_path / "mnt", tmp_path / "loop"
    mountpoint.mkdir()
    loop_dir.mkdir()
    process = subprocess.Popen([CLI, "mount", str(mountpoint), "--plan", "vm"], env=_env(all_in_one),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_mounted(process, mountpoint)
        [raw] = list(mountpoint.glob("vm/*/vm.img.raw"))
        subprocess.run(["mount", "-o", f"loop,ro,offset={offset}", str(raw), str(loop_dir)], check=True, timeout=60)
        try:
            assert _tree(loop_dir) == _tree(source)
        finally:
            subprocess.run(["umount", str(loop_dir)], check=True, timeout=60)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr and not os.path.ismount(mountpoint)
    finally:
        if os.path.ismount(loop_dir):
            subprocess.run(["umount", "-l", str(loop_dir)], check=False)
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        if os.path.ismount(mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)
