"""Large directories through a BlockReader: every entry listed, stat and read right, each directory and
metadata page read once (real images: mkfs.ext4 -d, no root)."""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
from pathlib import Path

import pytest

from strongroom.datamover.reader import BlockReader
from strongroom.files import ext4io
from strongroom.files.tree import open_tree
from strongroom.testing import checkpoints, disk_images

pytestmark = pytest.mark.skipif(bool(disk_images.tools_missing()),
                                reason=f"needs {disk_images.tools_missing()} (make system-packages)")
MIB = disk_images.MIB


def _reader(tmp_path: Path, image: Path, *, chunk: int, cache: int) -> BlockReader:
    return checkpoints.backed_up(image, tmp_path / "volumes", chunk_size=chunk, cache_bytes=cache)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree whose ``/big`` holds 2000 files (names of 1 to 60 characters, some not UTF-8) with data between
    the directory's blocks, and a few of other kinds."""
    root = tmp_path_factory.mktemp("big")
    rng = random.Random(5)
    d = root / "big"
    d.mkdir()
    for i in range(1996):
        name = f"{i:04d}-" + "x" * rng.randrange(0, 55)
        (d / name).write_bytes(rng.randbytes(rng.randrange(0, 12 * 1024)))
    (d / "sub").mkdir()
    (d / "target.txt").write_text("the target\n")
    (d / "link").symlink_to("target.txt")
    (d / b"caf\xe9".decode("utf-8", "surrogateescape")).write_bytes(b"latin-1 name\n")
    return root


def test_a_2000_entry_directory_lists_every_name_and_stat_and_read_agree(tmp_path: Path, big: Path) -> None:
    disk = tmp_path / "disk.img"
    disk_images.make_gpt_disk(disk, big, size=96 * MIB)
    # Small chunks and a cache far smaller than the directory's spread: the case that re-fetched chunks.
    reader = _reader(tmp_path, disk, chunk=64 * 1024, cache=512 * 1024)
    tree = open_tree(reader)
    listing = tree.list("/big")
    names = sorted(p.name for p in (big / "big").iterdir())
    assert [i.name for i in listing] == names
    assert len(listing) == 2000
    by_name = {i.name: i for i in listing}
    for path in (big / "big").iterdir():
        info = by_name[path.name]
        assert info.type == ("symlink" if path.is_symlink() else "directory" if path.is_dir() else "file")
        if info.type == "file":
            assert info.size == path.stat().st_size, path.name
    assert by_name["link"].target == "target.txt"
    # Every chunk is fetched at most a few times: the listing reads each directory page once (not once per
    # entry, as the filesystem package alone did: tens of thousands of fetches here).
    chunks = sum(1 for e in reader.entries() if e.digest)
    assert reader.fetches <= chunks
    # stat and read through the same tree: the directory is parsed once, the answers are the files'.
    for name in names[::97]:
        info = tree.stat(f"/big/{name}")
        assert info.name == name and info.size == by_name[name].size
        if info.type == "file":
            want = (big / "big" / name).read_bytes()
            assert hashlib.sha256(tree.read(f"/big/{name}")).digest() == hashlib.sha256(want).digest(), name
    assert tree.read("/big/link") == b"the target\n"
    assert tree.read("/big/caf\udce9") == b"latin-1 name\n"


def test_entries_are_those_the_package_scans_with_and_without_the_filetype_feature(tmp_path: Path) -> None:
    import ext4

    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(300):  # past one block: an htree (indexed) directory
        (src / "d" / f"entry-{i:03d}").write_text(str(i))
    (src / "small").mkdir()
    (src / "small" / "one").write_text("1")
    if os.geteuid() == 0:  # an owner past 16 bits (its high half in osd2)
        os.chown(src / "small" / "one", 70000, 70001)
    for features, label in ((None, "ext4"), ("^filetype,^dir_index,^metadata_csum", "plain")):
        image = tmp_path / f"{label}.img"
        with open(image, "wb") as f:
            f.truncate(16 * MIB)
        cmd = ["mkfs.ext4", "-q", "-F", "-d", str(src)] + (["-O", features] if features else []) + [str(image)]
        subprocess.run(cmd, check=True, capture_output=True)
        with open(image, "rb") as f:
            volume = ext4.Volume(io.BufferedReader(f), offset=0)  # type: ignore[arg-type]
            for path in (b"/", b"/d", b"/small"):
                directory = volume.inode_at(path)
                theirs = [(bytes(d.name_bytes), int(d.inode)) for d, _ in directory.opendir()]
                assert ext4io.entries(directory) == theirs, (label, path)
                assert len(theirs) == {b"/": 5, b"/d": 302, b"/small": 3}[path]  # with . and .. (and lost+found)
                for _, number in theirs:
                    inode = volume.inodes[number]
                    st = ext4io.inode_stat(volume, number)
                    assert (st.mode, st.size, st.mtime, st.uid, st.gid) == (
                        int(getattr(inode.i_mode, "value", inode.i_mode)), inode.i_size, inode.i_mtime,
                        inode.i_uid | inode.osd2.linux2.l_i_uid_high << 16,
                        inode.i_gid | inode.osd2.linux2.l_i_gid_high << 16), (label, path, number)
            if os.geteuid() == 0:
                assert ext4io.inode_stat(volume, volume.inode_at(b"/small/one").i_no).uid == 70000


def test_the_page_cache_reads_as_the_reader_and_keeps_at_most_its_pages(tmp_path: Path) -> None:
    image = tmp_path / "raw.img"
    data = random.Random(3).randbytes(3 * MIB + 123)
    image.write_bytes(data)
    reader = _reader(tmp_path, image, chunk=256 * 1024, cache=0)
    pages = ext4io.PageCache(reader, pages=4, page=64 * 1024)
    rng = random.Random(9)
    for _ in range(300):
        at = rng.randrange(0, len(data) + 10)
        size = rng.choice([0, 1, 2, 160, 4096, 65536, 200_000])
        assert pages.seek(at) == at
        assert pages.peek(size)[:size] == data[at:at + size]
        got = pages.read(size)
        assert got == data[at:at + size]
        assert pages.tell() == at + len(got)
        assert len(pages._pages) <= 4
    pages.seek(-10, io.SEEK_END)
    assert pages.read() == data[-10:]
    # the same small reads within one page cost one read of the volume
    pages = ext4io.PageCache(reader, pages=4, page=64 * 1024)
    for at in range(0, 65536, 256):
        pages.seek(at)
        pages.read(2)
    assert pages.misses == 1
