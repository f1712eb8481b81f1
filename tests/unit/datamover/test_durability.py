"""Crash safety of a backup into a filesystem bank whose chunks are made durable by one barrier.

The bank runs on an ``os`` that records every ``fsync``, ``rename`` and ``mkdir`` in order.  From
that log, a crash at any moment is judged as a journaling filesystem allows: a file's bytes survive
only if it was fsynced, a directory entry (a rename, a new directory) only if its directory was
fsynced after it.  The write order of doc/bank-layout.md needs every chunk the manifest references
to be durable, under its name, before the header can be: before the header's rename.
"""

from __future__ import annotations

import os
import pathlib
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from strongroom.bank_plugins.bank import Bank
from strongroom.bank_plugins.fs import FilesystemBank
from strongroom.block.base import BlockReader, BlockWriter, Extent
from strongroom.datamover import ChunkStore, backup, manifest_digests, restore
from strongroom.datamover.manifest import HEADER_KEY

CHUNK = 64 * 1024


class RecordingOs:
    """``os`` for the bank, logging ``("fsync", path)``, ``("rename", src, dst)`` and ``("mkdir", path)``."""

    def __init__(self) -> None:
        self.log: list[tuple[str, ...]] = []
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def fsync(self, fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        os.fsync(fd)
        with self.lock:
            self.log.append(("fsync", path))

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)
        with self.lock:
            self.log.append(("rename", src, dst))

    def mkdir(self, path: str) -> None:
        os.mkdir(path)
        with self.lock:
            self.log.append(("mkdir", path))


class BytesReader(BlockReader):
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def allocated_extents(self) -> Iterator[Extent]:
        return iter([Extent(0, self.size)])

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]


class BytesWriter(BlockWriter):
    def __init__(self, size: int) -> None:
        self.data = bytearray(size)
        self.size = size

    def write(self, offset: int, data: bytes) -> None:
        self.data[offset:offset + len(data)] = data

    def flush(self) -> None:
        pass


def durable_at(log: list[tuple[str, ...]], index: int) -> tuple[set[str], set[str]]:
    """(paths whose bytes are durable, names durable in their directory) after the first ``index`` entries."""
    synced_files: set[str] = set()  # current path of each file whose bytes were fsynced
    names: dict[str, int] = {}  # path -> log position of its rename/mkdir
    durable_names: set[str] = set()
    for position, entry in enumerate(log[:index]):
        if entry[0] == "fsync":
            path = entry[1]
            synced_files.add(path)
            for name, at in list(names.items()):
                if os.path.dirname(name) == path and at < position:
                    durable_names.add(name)
                    del names[name]
        elif entry[0] == "rename":
            _, src, dst = entry
            if src in synced_files:
                synced_files.discard(src)
                synced_files.add(dst)
            else:
                synced_files.discard(dst)  # the name now points at bytes that were never fsynced
            durable_names.discard(dst)
            names[dst] = position
        else:
            names[entry[1]] = position
    return synced_files, durable_names


def chain(path: str, root: str) -> list[str]:
    """``path`` and each directory above it, up to (not including) ``root``."""
    out = []
    while path != root:
        out.append(path)
        path = os.path.dirname(path)
    return out


@pytest.fixture
def volume() -> bytes:
    rng = random.Random(5)
    text = b"".join(rng.choice([b"alpha ", b"beta ", b"gamma\n"]) for _ in range(CHUNK))
    return b"".join(rng.randbytes(CHUNK) if i % 3 else text[i * 100:i * 100 + CHUNK] for i in range(40))


def test_no_header_is_ever_durable_before_its_chunks(tmp_path: pathlib.Path, volume: bytes) -> None:
    recording = RecordingOs()
    plugin = FilesystemBank({"path": str(tmp_path)}, syscalls=recording)
    bank = Bank(plugin)
    store = ChunkStore(bank.section("projects/p/chunks"))
    section = bank.section("checkpoints/c1/resources/volume#v/data")
    result = backup(BytesReader(volume), store, section, chunk_size=CHUNK, workers=3)
    assert result.new_chunks > 30

    log = recording.log
    header = plugin._data_path(f"{section.prefix}{HEADER_KEY}")
    published = next(i for i, entry in enumerate(log) if entry[0] == "rename" and entry[2] == header)
    files, names = durable_at(log, published)
    root = plugin._root
    chunk_paths = [plugin._data_path(f"{store.section.prefix}{store.key(d)}") for d in manifest_digests(section)]
    assert len(chunk_paths) == result.chunks
    for path in chunk_paths:
        assert path in files, f"{path}: bytes not durable before the header's rename"
        created = {p for p in chain(os.path.dirname(path), root) if ("mkdir", p) in log[:published]}
        missing = [p for p in [path, *created] if p not in names]
        assert not missing, f"names not durable before the header's rename: {missing}"

    # One barrier, not an fsync per chunk and directory: the chunks' fsyncs all come after the last chunk's
    # write, so the ones before it are the manifest's and the directories' own.
    renames = [i for i, entry in enumerate(log) if entry[0] == "rename" and entry[2] in set(chunk_paths)]
    first_chunk_sync = min(i for i, entry in enumerate(log) if entry[0] == "fsync" and ".tmp-" in entry[1])
    assert len(renames) == result.new_chunks
    assert first_chunk_sync < min(renames) and max(renames) < published

    # Every chunk rename in the whole log comes after that chunk's bytes were fsynced: a name never points at
    # bytes a crash could lose, so a later backup that finds a chunk by name and skips it can rely on it.
    for i in renames:
        files_before, _ = durable_at(log, i)
        assert log[i][1] in files_before

    writer = BytesWriter(len(volume))
    restore(section, ChunkStore(Bank(FilesystemBank({"path": str(tmp_path)})).section("projects/p/chunks")),
            writer)
    assert bytes(writer.data) == volume


def test_a_backup_that_fails_before_the_barrier_publishes_nothing(tmp_path: pathlib.Path, volume: bytes) -> None:
    plugin = FilesystemBank({"path": str(tmp_path)})
    bank = Bank(plugin)
    store = ChunkStore(bank.section("projects/p/chunks"))
    calls = iter(range(1000))

    def stop_late() -> bool:
        return next(calls) > 30  # polled before each slot and while draining: well into the chunks

    with pytest.raises(Exception, match="stopped"):
        backup(BytesReader(volume), store, bank.section("checkpoints/c1/data"), chunk_size=CHUNK,
               should_stop=stop_late)
    other = FilesystemBank({"path": str(tmp_path)})  # what another process, or this one after a crash, sees
    assert other.list_objects("projects/") == []
    assert other.list_objects("checkpoints/") == []
    plugin.close()
    assert not list(tmp_path.rglob(".tmp-*"))
