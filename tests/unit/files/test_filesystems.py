"""FAT, NTFS and XFS read through a BlockReader over a real backed-up disk image: mkfs.vfat and mtools (no
mount), mkntfs and an ntfs-3g FUSE mount of the image file (root), mkfs.xfs from a protofile (no mount), each
inside a GPT or an MBR table (strongroom/testing/disk_images.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from strongroom import exceptions
from strongroom.files.tree import describe, open_tree
from strongroom.testing import disk_images
from tests.unit.files.test_tree import _checkpoint

CASES = [  # (filesystem, table, FAT bits, disk size)
    ("fat", "gpt", 32, 64 * disk_images.MIB),
    ("fat", "mbr", 16, 64 * disk_images.MIB),
    ("ntfs", "mbr", 0, 64 * disk_images.MIB),
    ("ntfs", "gpt", 0, 64 * disk_images.MIB),
    ("xfs", "gpt", 0, 330 * disk_images.MIB),
]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _build(tmp_path: Path, filesystem: str, table: str, bits: int, size: int) -> tuple[Path, int]:
    missing = disk_images.foreign_missing(filesystem)
    if missing:
        pytest.skip(f"needs {missing} (make system-packages)")
    source = tmp_path / "src"
    (disk_images.populate_etc if filesystem == "xfs" else disk_images.populate_windows)(source)
    disk = tmp_path / "disk.img"
    offset = disk_images.make_foreign_disk(disk, source, filesystem, table=table, size=size, fat_bits=bits or 32)
    return source, offset


@pytest.mark.parametrize(("filesystem", "table", "bits", "size"), CASES,
                         ids=[f"{c[0]}{c[2] or ''}-{c[1]}" for c in CASES])
def test_listed_stat_and_read_byte_identical(tmp_path: Path, filesystem: str, table: str, bits: int,
                                             size: int) -> None:
    source, offset = _build(tmp_path, filesystem, table, bits, size)
    if filesystem == "fat":  # DOS attributes: read-only and hidden
        for flag, name in (("+r", "EMPTY.TXT"), ("+h", "Users/alice/notes.txt")):
            subprocess.run(["mattrib", "-i", f"{tmp_path / 'disk.img'}@@{offset}", flag, f"::/{name}"],
                           check=True, capture_output=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    reader = _checkpoint(tmp_path, tmp_path / "disk.img")
    shape = describe(reader)
    assert shape["table"] == table
    assert [(p["number"], p["filesystem"]) for p in shape["partitions"]] == [(1, None), (2, filesystem)]
    tree = open_tree(reader)
    assert tree.located.to_dict() == {"table": table, "partition": 2, "offset": offset, "filesystem": filesystem}

    # the root lists what the source holds, and nothing of the filesystem's own (no $MFT, no volume label)
    assert [i.name for i in tree.list("/")] == sorted(p.name for p in source.iterdir())
    walked = {i.path: i for i in tree.walk("/")}
    expected = {"/" + str(p.relative_to(source)) for p in source.rglob("*")} | {"/"}
    assert set(walked) == expected
    for path in source.rglob("*"):
        info = walked["/" + str(path.relative_to(source))]
        if path.is_symlink():
            assert info.type == "symlink" and info.target == str(path.readlink()), path
        elif path.is_dir():
            assert info.type == "directory", path
        else:
            assert info.type == "file" and info.size == path.stat().st_size, path
            assert _sha(tree.read(info.path)) == _sha(path.read_bytes()), path

    if filesystem == "xfs":
        assert tree.stat("/etc/ssh/ssh_host_ed25519_key").mode == 0o600
        assert tree.read("/etc/motd") == b"vm-under-test\n"  # a relative symlink followed
        assert tree.read("/etc/localtime") == (source / "usr/share/zoneinfo/UTC").read_bytes()
        assert tree.stat("/etc/localtime", follow=True).path == "/usr/share/zoneinfo/UTC"
        big = "/etc/ld.so.cache"
    else:
        # names as Windows matches them: case-insensitively
        assert tree.read("/users/ALICE/Notes.TXT") == b"buy milk\r\n"
        assert tree.stat("/Résumé ünïcode.txt").size == len("grüße\n".encode())
        assert tree.read("/EMPTY.TXT") == b""
        if filesystem == "fat":  # read-only shown as a vfat mount shows it; hidden changes no mode bit
            assert (tree.stat("/EMPTY.TXT").mode, tree.stat("/Users/alice/notes.txt").mode) == (0o555, 0o777)
        assert {i.mode for i in tree.walk("/Users")} == {0o777}
        big = "/Users/alice/Documents/report.docx"
    # a piece in the middle, across a 64 KiB chunk of the backup
    whole = tree.read(big)
    assert tree.read(big, offset=65_000, length=10_000) == whole[65_000:75_000]

    directory = "/etc" if filesystem == "xfs" else "/Users"
    with pytest.raises(exceptions.NotFound, match=f"{directory}/nobody"):
        tree.stat(f"{directory}/nobody/x")
    afile = "/etc/passwd" if filesystem == "xfs" else "/EMPTY.TXT"
    with pytest.raises(exceptions.InvalidInput, match="not a directory"):
        tree.list(afile)
    with pytest.raises(exceptions.InvalidInput, match="not a regular file"):
        tree.read(directory)


def test_a_damaged_fat_is_a_data_integrity_error_naming_it(tmp_path: Path) -> None:
    _build(tmp_path, "fat", "gpt", 32, 64 * disk_images.MIB)
    disk = tmp_path / "disk.img"
    with open(disk, "r+b") as f:  # the FAT32 boot sector's bytes per sector and sectors per cluster
        f.seek(2 * disk_images.MIB + 11)
        f.write(b"\x00\x00\x00")
    reader = _checkpoint(tmp_path, disk)
    assert describe(reader)["partitions"][1]["filesystem"] == "fat"  # the signature is still there
    with pytest.raises(exceptions.DataIntegrityError, match="the fat filesystem"):
        open_tree(reader).list("/")
