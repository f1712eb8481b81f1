"""VM-like disk images for tests, built without root: a GPT (or MBR) table in a sparse file and an ext4
filesystem made with ``mkfs.ext4 -d`` from a populated tree (e2fsprogs, gdisk; Makefile APT_TEST_PACKAGES)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

MIB = 1024 * 1024
#: Size of the extra partition of :func:`make_gpt_disk`.
EXTRA = 320 * MIB


def tools_missing() -> list[str]:
    """The commands these images need that are not installed."""
    return [tool for tool in ("mkfs.ext4", "sgdisk", "sfdisk") if shutil.which(tool) is None
            and not os.path.exists(f"/usr/sbin/{tool}") and not os.path.exists(f"/sbin/{tool}")]


def _tool(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/sbin/{name}"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise FileNotFoundError(name)


def populate_etc(root: Path, seed: int = 16) -> None:
    """An ``/etc``-like tree under ``root``: text and binary files, nested directories, a symlink, an
    empty file, a file larger than one 64 KiB chunk and a sparse one."""
    rng = random.Random(seed)
    etc = root / "etc"
    (etc / "ssh").mkdir(parents=True)
    (etc / "default" / "grub.d").mkdir(parents=True)
    (etc / "hostname").write_text("vm-under-test\n")
    (etc / "fstab").write_text("UUID=1234 / ext4 errors=remount-ro 0 1\n")
    (etc / "passwd").write_text("".join(f"user{i}:x:{1000 + i}:{1000 + i}::/home/user{i}:/bin/sh\n"
                                        for i in range(200)))
    (etc / "ssh" / "sshd_config").write_text("PermitRootLogin no\nPasswordAuthentication no\n")
    (etc / "ssh" / "ssh_host_ed25519_key").write_bytes(rng.randbytes(411))
    (etc / "ssh" / "ssh_host_ed25519_key").chmod(0o600)
    (etc / "default" / "grub").write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    (etc / "default" / "grub.d" / "50-cloud.cfg").write_text("GRUB_TIMEOUT=0\n")
    (etc / "ld.so.cache").write_bytes(rng.randbytes(300 * 1024))
    (etc / "empty.conf").write_bytes(b"")
    with open(etc / "sparse.db", "wb") as f:
        f.truncate(2 * MIB)
        f.seek(MIB)
        f.write(b"middle")
    (etc / "localtime").symlink_to("/usr/share/zoneinfo/UTC")
    (etc / "motd").symlink_to("hostname")
    (root / "usr" / "share" / "zoneinfo").mkdir(parents=True)
    (root / "usr" / "share" / "zoneinfo" / "UTC").write_bytes(b"TZif2" + rng.randbytes(100))
    (root / "home" / "user0").mkdir(parents=True)


def make_ext4(path: Path, tree: Path, size: int) -> None:
    """An ext4 filesystem image of ``size`` bytes holding ``tree``."""
    with open(path, "wb") as f:
        f.truncate(size)
    subprocess.run([_tool("mkfs.ext4"), "-q", "-F", "-L", "root", "-E", "root_owner=0:0", "-d", str(tree),
                    str(path)], check=True, capture_output=True)


def copy_into(source: Path, target: Path, offset: int) -> None:
    """Write ``source`` into ``target`` at ``offset``, skipping its holes (the target stays sparse)."""
    block = MIB
    with open(source, "rb") as src, open(target, "r+b") as dst:
        while True:
            data = src.read(block)
            if not data:
                break
            if data.count(0) != len(data):
                dst.seek(offset)
                dst.write(data)
            offset += len(data)


def make_gpt_disk(path: Path, tree: Path, *, size: int = 64 * MIB, table: str = "gpt",
                  extra: str | None = None) -> int:
    """A disk of ``size`` bytes: partition 1 a 1 MiB BIOS boot partition, partition 2 ext4 with ``tree``
    (to the end, or, when ``extra`` names a second filesystem for partition 3 (``xfs``: mkfs.xfs wants
    300 MiB at least), to the last :data:`EXTRA` bytes, which it fills).
    ``table`` ``mbr`` writes an MBR instead.  Returns partition 2's byte offset."""
    with open(path, "wb") as f:
        f.truncate(size)
    start = 2 * MIB
    end = size - MIB if extra is None else size - MIB - EXTRA
    if table == "gpt":
        cmd = [_tool("sgdisk"), "-n", "1:2048:+1M", "-t", "1:ef02", "-n", f"2:{start // 512}:{end // 512 - 1}",
               "-t", "2:8300", "-c", "2:root"]
        if extra is not None:
            cmd += ["-n", f"3:{end // 512}:{(size - MIB) // 512 - 1}", "-t", "3:8300"]
        subprocess.run([*cmd, str(path)], check=True, capture_output=True)
    else:
        script = f"label: dos\n2048,2048,83\n{start // 512},{(end - start) // 512},83\n"
        if extra is not None:
            script += f"{end // 512},{(size - MIB - end) // 512},83\n"
        subprocess.run([_tool("sfdisk"), "-q", str(path)], input=script.encode(), check=True, capture_output=True)
    fs = path.with_suffix(".ext4")
    make_ext4(fs, tree, end - start)
    copy_into(fs, path, start)
    fs.unlink()
    if extra == "xfs":
        xfs = path.with_suffix(".xfs")
        with open(xfs, "wb") as f:
            f.truncate(size - MIB - end)
        subprocess.run([_tool("mkfs.xfs"), "-q", "-f", str(xfs)], check=True, capture_output=True)
        copy_into(xfs, path, end)
        xfs.unlink()
    return start
