"""Partition tables and ext4 read through a BlockReader over a real backed-up disk image (mkfs.ext4 -d,
sgdisk/sfdisk; no root)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from strongroom import exceptions
from strongroom.datamover.reader import BlockReader
from strongroom.files import partitions
from strongroom.files.tree import describe, open_tree
from strongroom.testing import checkpoints, disk_images

pytestmark = pytest.mark.skipif(bool(disk_images.tools_missing()),
                                reason=f"needs {disk_images.tools_missing()} (make system-packages)")


def _checkpoint(tmp_path: Path, image: Path) -> BlockReader:
    return checkpoints.backed_up(image, tmp_path / "volumes", chunk_size=64 * 1024, cache_bytes=8 * 1024 * 1024)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("src")
    disk_images.populate_etc(root)
    return root


@pytest.mark.parametrize("table", ["gpt", "mbr"])
def test_etc_is_listed_stat_and_read_byte_identical(tmp_path: Path, source: Path, table: str) -> None:
    disk = tmp_path / "disk.img"
    offset = disk_images.make_gpt_disk(disk, source, table=table)
    reader = _checkpoint(tmp_path, disk)
    shape = describe(reader)
    assert shape["table"] == table
    assert [(p["number"], p["filesystem"]) for p in shape["partitions"]] == [(1, None), (2, "ext4")]
    tree = open_tree(reader)
    assert tree.located.partition == 2 and tree.located.offset == offset and tree.located.filesystem == "ext4"
    names = {i.name: i for i in tree.list("/etc")}
    assert set(names) == {p.name for p in (source / "etc").iterdir()}
    assert names["ssh"].type == "directory" and names["passwd"].type == "file"
    assert names["localtime"].type == "symlink" and names["localtime"].target == "/usr/share/zoneinfo/UTC"
    assert names["passwd"].size == (source / "etc" / "passwd").stat().st_size
    assert tree.stat("/etc/ssh/ssh_host_ed25519_key").mode == 0o600
    for rel in ("etc/passwd", "etc/ld.so.cache", "etc/ssh/ssh_host_ed25519_key", "etc/empty.conf", "etc/sparse.db",
                "etc/default/grub.d/50-cloud.cfg"):
        data = tree.read("/" + rel)
        assert hashlib.sha256(data).hexdigest() == hashlib.sha256((source / rel).read_bytes()).hexdigest(), rel
    # symlinks: followed to read, relative and absolute
    assert tree.read("/etc/motd") == b"vm-under-test\n"
    assert tree.read("/etc/localtime") == (source / "usr/share/zoneinfo/UTC").read_bytes()
    walked = {i.path for i in tree.walk("/etc")}
    assert "/etc/default/grub.d/50-cloud.cfg" in walked and "/etc" in walked
    with pytest.raises(exceptions.NotFound, match="/etc/nope"):
        tree.stat("/etc/nope")
    with pytest.raises(exceptions.InvalidInput, match="not a directory"):
        tree.list("/etc/passwd")
    with pytest.raises(exceptions.InvalidInput, match="not a regular file"):
        tree.read("/etc/ssh")
    with pytest.raises(exceptions.InvalidInput, match="absolute"):
        tree.stat("etc")


def test_an_unreadable_partition_is_refused_naming_what_was_found(tmp_path: Path, source: Path) -> None:
    disk = tmp_path / "disk.img"
    disk_images.make_gpt_disk(disk, source, size=disk_images.EXTRA + 66 * disk_images.MIB, extra="btrfs")
    reader = _checkpoint(tmp_path, disk)
    assert [p["filesystem"] for p in describe(reader)["partitions"]] == [None, "ext4", "btrfs"]
    with pytest.raises(exceptions.InvalidInput, match="partition 3: btrfs superblock, not readable here"):
        open_tree(reader, partition=3)
    with pytest.raises(exceptions.InvalidInput, match="partition 1: no filesystem signature"):
        open_tree(reader, partition=1)
    with pytest.raises(exceptions.InvalidInput, match="partition 9: no such partition"):
        open_tree(reader, partition=9)
    assert open_tree(reader).located.partition == 2  # the readable one by default


def test_a_filesystem_on_the_whole_volume_and_an_empty_one(tmp_path: Path, source: Path) -> None:
    image = tmp_path / "fs.img"
    disk_images.make_ext4(image, source, 32 * disk_images.MIB)
    reader = _checkpoint(tmp_path, image)
    assert describe(reader)["table"] == "none"
    tree = open_tree(reader)
    assert tree.located.partition is None and tree.read("/etc/hostname") == b"vm-under-test\n"
    blank = tmp_path / "blank.img"
    with open(blank, "wb") as f:
        f.truncate(8 * disk_images.MIB)
    (tmp_path / "volumes" / "disk").unlink()
    reader = _checkpoint(tmp_path, blank)
    with pytest.raises(exceptions.InvalidInput, match="the volume: no filesystem signature, not readable here"):
        open_tree(reader)


def test_probe_knows_the_usual_signatures() -> None:
    import io

    def at(offset: int, magic: bytes, size: int = 70000) -> io.BytesIO:
        data = bytearray(size)
        data[offset:offset + len(magic)] = magic
        return io.BytesIO(bytes(data))

    assert partitions.probe(at(0, b"XFSB"), 0) == "xfs"
    assert partitions.probe(at(3, b"NTFS    "), 0) == "ntfs"
    assert partitions.probe(at(82, b"FAT32   "), 0) == "fat"
    assert partitions.probe(at(0x10040, b"_BHRfS_M"), 0) == "btrfs"
    assert partitions.probe(at(0, b"LUKS\xba\xbe"), 0) == "luks"
    assert partitions.probe(at(0, b""), 0) is None


def test_diff_names_changed_ranges_from_manifests_and_changed_files(tmp_path: Path, source: Path) -> None:
    from strongroom.files.diff import changed_files, changed_ranges

    disk = tmp_path / "disk.img"
    disk_images.make_gpt_disk(disk, source)
    first = _checkpoint(tmp_path, disk)
    changed = tmp_path / "src2"
    import shutil

    shutil.copytree(source, changed, symlinks=True)
    (changed / "etc" / "hostname").write_text("renamed-vm\n")
    (changed / "etc" / "new.conf").write_text("x=1\n")
    (changed / "etc" / "fstab").unlink()
    disk2 = tmp_path / "disk2.img"
    disk_images.make_gpt_disk(disk2, changed)
    (tmp_path / "volumes" / "disk").unlink()
    second = _checkpoint(tmp_path, disk2)
    ranges = changed_ranges(first, second)
    assert ranges and all(n > 0 for _, n in ranges)
    old, new = disk_images_bytes(tmp_path, first), disk_images_bytes(tmp_path, second)
    for offset, length in ranges:  # every byte outside the ranges is equal
        old = old[:offset] + b"\0" * length + old[offset + length:]
        new = new[:offset] + b"\0" * length + new[offset + length:]
    assert old == new
    assert changed_ranges(first, first) == []
    files = changed_files(open_tree(first), open_tree(second), "/etc")
    assert [f["path"] for f in files["added"]] == ["/etc/new.conf"]
    assert [f["path"] for f in files["removed"]] == ["/etc/fstab"]
    modified = {f["path"]: f for f in files["modified"]}
    assert "size" in modified["/etc/hostname"]["changed"]


def disk_images_bytes(tmp_path: Path, reader: BlockReader) -> bytes:
    return reader.read(0, reader.size)


class _MemoryWriter:
    def __init__(self, size: int) -> None:
        self.data = bytearray(size)

    def write(self, offset: int, data: bytes) -> None:
        assert offset + len(data) <= len(self.data)
        self.data[offset:offset + len(data)] = data


def test_a_tar_of_paths_fits_its_computed_size_and_holds_the_files(tmp_path: Path, source: Path) -> None:
    import io
    import tarfile

    from strongroom.files import archive

    disk = tmp_path / "disk.img"
    disk_images.make_gpt_disk(disk, source)
    tree = open_tree(_checkpoint(tmp_path, disk))
    entries = archive.collect(tree, ["/etc", "/etc/ssh"])  # the second is inside the first: once only
    assert len({e.path for e in entries}) == len(entries)
    size = archive.bound(entries)
    writer = _MemoryWriter(size)
    written = archive.write_tar(tree, entries, writer, size)
    assert 0 < written <= size
    with tarfile.open(fileobj=io.BytesIO(bytes(writer.data))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["etc/localtime"].issym() and members["etc/localtime"].linkname == "/usr/share/zoneinfo/UTC"
        assert members["etc/ssh/ssh_host_ed25519_key"].mode == 0o600
        for rel in ("etc/ld.so.cache", "etc/sparse.db", "etc/empty.conf"):
            f = tar.extractfile(rel)
            assert f is not None and f.read() == (source / rel).read_bytes(), rel


def test_the_volume_of_a_checkpoint_is_named_by_key_id_or_left_out_when_alone() -> None:
    from strongroom.objects.records import CheckpointRecord
    from strongroom.protection.files import check_readable, resource_key

    def record(*ids: str, status: str = "available") -> CheckpointRecord:
        return CheckpointRecord.from_dict({
            "id": "c1", "project_id": "p1", "provider_id": "pr", "status": status, "plan_id": "pl",
            "protection_plan": {"resources": [{"id": i, "type": "OS::Cinder::Volume", "name": i} for i in ids]}})

    one = record("vm.img")
    assert resource_key(one, None) == resource_key(one, "vm.img") == "OS::Cinder::Volume#vm.img"
    assert resource_key(one, "OS::Cinder::Volume#vm.img") == "OS::Cinder::Volume#vm.img"
    with pytest.raises(exceptions.NotFound, match="other in checkpoint c1"):
        resource_key(one, "other")
    with pytest.raises(exceptions.InvalidInput, match="holds 2 volumes"):
        resource_key(record("a", "b"), None)
    with pytest.raises(exceptions.Conflict, match="is protecting"):
        check_readable(record("a", status="protecting"))
