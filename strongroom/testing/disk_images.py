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
    300 MiB at least; ``btrfs``), to the last :data:`EXTRA` bytes, which it fills).
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
    elif extra == "btrfs":
        btrfs = path.with_suffix(".btrfs")
        with open(btrfs, "wb") as f:
            f.truncate(size - MIB - end)
        subprocess.run([_tool("mkfs.btrfs"), "-q", "-f", str(btrfs)], check=True, capture_output=True)
        copy_into(btrfs, path, end)
        btrfs.unlink()
    return start


# -- FAT, NTFS and XFS partitions (strongroom/files/tsk.py, strongroom/files/xfs.py) -----------------------

#: Debian packages per filesystem builder: dosfstools and mtools (FAT, no root), ntfs-3g (NTFS: mkntfs, then a
#: FUSE mount to populate it, which needs root and /dev/fuse), xfsprogs (XFS from a protofile, no root).
FOREIGN_TOOLS = {"fat": ("mkfs.vfat", "mmd", "mcopy"), "ntfs": ("mkntfs", "ntfs-3g"), "xfs": ("mkfs.xfs",)}
#: GPT partition type codes (sgdisk) and MBR type bytes (sfdisk) of each.
_TYPE_CODES = {"fat": ("0700", "c"), "ntfs": ("0700", "7"), "xfs": ("8300", "83")}


def foreign_missing(filesystem: str) -> list[str]:
    """What :func:`make_foreign_disk` lacks here to build ``filesystem`` (commands, or root and FUSE)."""
    missing = tools_missing() + [tool for tool in FOREIGN_TOOLS[filesystem] if not _has(tool)]
    if filesystem == "ntfs" and (os.geteuid() != 0 or not os.path.exists("/dev/fuse")):
        missing.append("root and /dev/fuse (ntfs-3g mount)")
    return missing


def _has(tool: str) -> bool:
    try:
        _tool(tool)
    except FileNotFoundError:
        return False
    return True


def populate_windows(root: Path, seed: int = 17) -> None:
    """A Windows-like tree under ``root``: nested directories, names with spaces and non-ASCII letters, a
    file larger than one 64 KiB chunk, an empty file (no symlinks: FAT has none)."""
    rng = random.Random(seed)
    docs = root / "Users" / "alice" / "Documents"
    docs.mkdir(parents=True)
    (docs / "report.docx").write_bytes(rng.randbytes(300 * 1024))
    (docs / "Budget 2026 (final).xlsx").write_bytes(rng.randbytes(70 * 1024 + 3))
    (root / "Users" / "alice" / "notes.txt").write_text("buy milk\r\n")
    (root / "Program Files" / "App").mkdir(parents=True)
    (root / "Program Files" / "App" / "app.exe").write_bytes(b"MZ" + rng.randbytes(5000))
    (root / "Résumé ünïcode.txt").write_text("grüße\n", encoding="utf-8")
    (root / "EMPTY.TXT").write_bytes(b"")


def make_fat(path: Path, tree: Path, size: int, bits: int = 32) -> None:
    """A FAT``bits`` filesystem image of ``size`` bytes holding ``tree`` (mkfs.vfat, then mtools' mmd and
    mcopy into the image: no mount)."""
    with open(path, "wb") as f:
        f.truncate(size)
    subprocess.run([_tool("mkfs.vfat"), "-F", str(bits), "-n", "DATA", str(path)], check=True, capture_output=True)
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "LC_ALL": "C.UTF-8"}
    for directory in sorted(p for p in tree.rglob("*") if p.is_dir()):
        subprocess.run([_tool("mmd"), "-i", str(path), f"::/{directory.relative_to(tree)}"], check=True,
                       capture_output=True, env=env)
    for file in sorted(p for p in tree.rglob("*") if p.is_file()):
        subprocess.run([_tool("mcopy"), "-m", "-i", str(path), str(file), f"::/{file.relative_to(tree)}"],
                       check=True, capture_output=True, env=env)


def make_ntfs(path: Path, tree: Path, size: int, start_sector: int) -> None:
    """An NTFS filesystem image of ``size`` bytes holding ``tree``: mkntfs, then copied in through a FUSE
    mount of the image file by ntfs-3g (root and /dev/fuse; no loop device)."""
    with open(path, "wb") as f:
        f.truncate(size)
    subprocess.run([_tool("mkntfs"), "-q", "-F", "-Q", "-L", "DATA", "-p", str(start_sector), "-H", "255",
                    "-S", "63", str(path)], check=True, capture_output=True)
    mountpoint = path.with_suffix(".mnt")
    mountpoint.mkdir()
    subprocess.run([_tool("ntfs-3g"), str(path), str(mountpoint)], check=True, capture_output=True, timeout=60)
    try:
        shutil.copytree(tree, mountpoint, dirs_exist_ok=True, copy_function=shutil.copyfile)
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True, capture_output=True, timeout=60)
    mountpoint.rmdir()


def make_xfs(path: Path, tree: Path, size: int) -> None:
    """An XFS filesystem image of ``size`` bytes (300 MiB at least) holding ``tree`` (``mkfs.xfs -p``
    with a protofile written from it: no mount).  Protofile names cannot hold spaces."""
    lines = ["/dev/null", "0 0", "d--755 0 0"]

    def spec(p: Path) -> str:
        mode = p.lstat().st_mode
        return f"{'u' if mode & 0o4000 else '-'}{'g' if mode & 0o2000 else '-'}{mode & 0o777:03o} 0 0"

    def walk(directory: Path, depth: int) -> None:
        for child in sorted(directory.iterdir()):
            pad = " " * depth
            if child.is_symlink():
                lines.append(f"{pad}{child.name} l{spec(child)} {os.readlink(child)}")
            elif child.is_dir():
                lines.append(f"{pad}{child.name} d{spec(child)}")
                walk(child, depth + 1)
                lines.append(f"{pad}$")
            else:
                lines.append(f"{pad}{child.name} -{spec(child)} {child}")
    walk(tree, 1)
    lines.append("$")
    proto = path.with_suffix(".proto")
    proto.write_text("\n".join(lines) + "\n")
    with open(path, "wb") as f:
        f.truncate(size)
    subprocess.run([_tool("mkfs.xfs"), "-q", "-f", "-p", str(proto), str(path)], check=True, capture_output=True)
    proto.unlink()


def make_foreign_disk(path: Path, tree: Path, filesystem: str, *, table: str = "gpt", size: int = 64 * MIB,
                      fat_bits: int = 32) -> int:
    """A disk of ``size`` bytes: partition 1 a 1 MiB BIOS boot partition (GPT) or an empty 1 MiB one (MBR),
    partition 2 ``filesystem`` (``fat``, ``ntfs``, ``xfs``: 320 MiB at least) holding ``tree`` to the last
    MiB.  Returns partition 2's byte offset."""
    with open(path, "wb") as f:
        f.truncate(size)
    start, end = 2 * MIB, size - MIB
    gpt_code, mbr_code = _TYPE_CODES[filesystem]
    if table == "gpt":
        subprocess.run([_tool("sgdisk"), "-n", "1:2048:+1M", "-t", "1:ef02", "-n",
                        f"2:{start // 512}:{end // 512 - 1}", "-t", f"2:{gpt_code}", "-c", "2:data", str(path)],
                       check=True, capture_output=True)
    else:
        script = f"label: dos\n2048,2048,83\n{start // 512},{(end - start) // 512},{mbr_code}\n"
        subprocess.run([_tool("sfdisk"), "-q", str(path)], input=script.encode(), check=True, capture_output=True)
    fs = path.with_suffix(f".{filesystem}")
    if filesystem == "fat":
        make_fat(fs, tree, end - start, fat_bits)
    elif filesystem == "ntfs":
        make_ntfs(fs, tree, end - start, start // 512)
    else:
        make_xfs(fs, tree, end - start)
    copy_into(fs, path, start)
    fs.unlink()
    return start
