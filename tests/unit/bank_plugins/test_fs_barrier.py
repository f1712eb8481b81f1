"""The filesystem bank's deferred puts and barrier: what another process sees, and when."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import pytest

from strongroom import exceptions
from strongroom.bank_plugins import Bank, fs_deferred
from strongroom.bank_plugins.fs import FilesystemBank
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.bank_plugins.retry import RetryingBank


def temp_files(root: pathlib.Path) -> list[str]:
    return sorted(p.name for p in root.rglob(".tmp-*"))


def test_a_deferred_put_is_published_by_the_barrier(tmp_path: pathlib.Path) -> None:
    writer = FilesystemBank({"path": str(tmp_path)})
    other = FilesystemBank({"path": str(tmp_path)})  # another process's view
    writer.put_object_deferred("chunks/ab/abc", b"data", {"size": "4"})
    assert writer.get_object("chunks/ab/abc") == b"data"
    assert writer.object_exists("chunks/ab/abc")
    assert not other.object_exists("chunks/ab/abc")
    assert writer.list_objects() == []  # listed only once durable
    writer.barrier()
    assert other.get_object("chunks/ab/abc") == b"data"
    assert dict(other.head_object("chunks/ab/abc").metadata) == {"size": "4"}
    assert other.list_objects() == ["chunks/ab/abc"]
    assert temp_files(tmp_path) == []


def test_a_lost_process_leaves_no_name_for_deferred_data(tmp_path: pathlib.Path) -> None:
    """Before the barrier nothing names the chunk: a later backup cannot find it and skip writing it."""
    writer = FilesystemBank({"path": str(tmp_path)})
    writer.put_object_deferred("chunks/ab/abc", b"data")
    # the process dies here (no barrier, no close)
    after = FilesystemBank({"path": str(tmp_path)})
    assert not after.object_exists("chunks/ab/abc")
    assert after.list_objects() == []
    writer.close()  # what an orderly stop does instead: the temp file goes
    assert temp_files(tmp_path) == []


def test_a_put_or_delete_after_a_deferred_put_wins(tmp_path: pathlib.Path) -> None:
    bank = FilesystemBank({"path": str(tmp_path)})
    bank.put_object_deferred("k", b"old")
    bank.put_object("k", b"new")
    bank.put_object_deferred("gone", b"x")
    bank.delete_object("gone")
    bank.barrier()
    assert bank.get_object("k") == b"new"
    assert bank.list_objects() == ["k"]
    assert temp_files(tmp_path) == []


def test_many_deferred_puts_are_published_without_waiting_for_the_barrier(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fs_deferred, "MAX_DEFERRED", 3)
    bank = FilesystemBank({"path": str(tmp_path)})
    other = FilesystemBank({"path": str(tmp_path)})
    for i in range(4):
        bank.put_object_deferred(f"c/{i}", b"v")
    assert other.list_objects() == ["c/0", "c/1", "c/2"]
    bank.barrier()
    assert other.list_objects() == ["c/0", "c/1", "c/2", "c/3"]


class FailingFsync:
    """``os`` for the bank, whose fsync of a file fails with EIO (a dying disk)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def fsync(self, fd: int) -> None:
        if not os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(5, "Input/output error")
        os.fsync(fd)


def test_a_put_of_the_same_key_during_a_barrier_is_published_by_the_next(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two writers of one checkpoint storing the same new chunk: the second put replaces (and removes) the
    first's temp file while a barrier is about to fsync it.  That barrier skips it; the next publishes the
    second's data.  (It failed the protect with 'cannot make recent writes durable: No such file'.)"""
    bank = FilesystemBank({"path": str(tmp_path)})
    bank.put_object_deferred("chunks/ab/abc", b"first")
    fsync_file = bank._fsync_file
    raced = []

    def racing(path: str) -> None:
        if not raced:
            raced.append(path)
            bank.put_object_deferred("chunks/ab/abc", b"second")  # the other writer, between batch and fsync
        fsync_file(path)

    monkeypatch.setattr(bank, "_fsync_file", racing)
    bank.barrier()
    assert raced and not os.path.exists(raced[0])
    bank.barrier()
    assert FilesystemBank({"path": str(tmp_path)}).get_object("chunks/ab/abc") == b"second"
    assert temp_files(tmp_path) == []


def test_a_failed_barrier_raises_and_publishes_nothing(tmp_path: pathlib.Path) -> None:
    bank = FilesystemBank({"path": str(tmp_path)}, syscalls=FailingFsync())
    bank.put_object_deferred("chunks/a", b"1")
    bank.put_object_deferred("chunks/b", b"2")
    with pytest.raises(exceptions.BankError, match="durable"):
        bank.barrier()
    assert FilesystemBank({"path": str(tmp_path)}).list_objects() == []
    assert not bank.object_exists("chunks/a")
    assert temp_files(tmp_path) == []


def test_the_retrying_wrapper_keeps_puts_deferred(tmp_path: pathlib.Path) -> None:
    bank = RetryingBank(FilesystemBank({"path": str(tmp_path)}), sleep=lambda _: None)
    bank.put_object_deferred("k", b"v")
    assert bank.list_objects() == []
    bank.barrier()
    assert bank.list_objects() == ["k"]


# -- reclaiming the temp files of a killed writer ------------------------------------------------


def test_a_killed_writers_temp_files_are_reclaimed_under_the_prefix_only(tmp_path: pathlib.Path) -> None:
    killed = FilesystemBank({"path": str(tmp_path)})
    for i in range(3):
        killed.put_object_deferred(f"projects/p/chunks/{i:02x}/c{i}", b"chunk")
    killed.put_object_deferred("projects/q/chunks/00/other", b"another project's")
    # the writer is killed here: no barrier, no close
    bank = Bank(RetryingBank(FilesystemBank({"path": str(tmp_path)}), sleep=lambda _: None))
    bank.put("projects/p/chunks/00/kept", b"a published chunk")
    assert len(temp_files(tmp_path)) == 4

    would = bank.section("projects/p/chunks").reclaim_temporaries(dry_run=True)
    assert len(would) == 3 and all("/.tmp-" in name for name in would)
    assert len(temp_files(tmp_path)) == 4  # a dry run removes nothing

    removed = bank.section("projects/p/chunks").reclaim_temporaries()
    assert sorted(removed) == sorted(would)
    assert len(temp_files(tmp_path)) == 1  # the other project's is left alone
    assert bank.list("projects/") == ["projects/p/chunks/00/kept"]
    assert bank.get("projects/p/chunks/00/kept") == b"a published chunk"
    # The directories that held only temp files are gone; the one with a chunk stays.
    assert sorted(p.name for p in (tmp_path / "objects/projects/p/chunks").iterdir()) == ["00"]
    assert bank.section("projects/p/chunks").reclaim_temporaries() == []


def test_reclaiming_drops_this_instances_own_deferred_puts(tmp_path: pathlib.Path) -> None:
    """A failed backup's chunks, reclaimed by the sweep after it: a later barrier publishes nothing of them."""
    bank = FilesystemBank({"path": str(tmp_path)})
    bank.put_object_deferred("chunks/ab/failed", b"x")
    assert len(bank.reclaim_temporaries("chunks/")) == 1
    assert not bank.object_exists("chunks/ab/failed")
    bank.put_object_deferred("chunks/ab/next", b"y")
    bank.barrier()
    assert FilesystemBank({"path": str(tmp_path)}).list_objects() == ["chunks/ab/next"]
    assert temp_files(tmp_path) == []


def test_reclaiming_needs_a_whole_directory_and_a_writable_section(tmp_path: pathlib.Path) -> None:
    bank = Bank(FilesystemBank({"path": str(tmp_path)}))
    with pytest.raises(exceptions.InvalidInput, match="end with '/'"):
        bank.reclaim_temporaries("chunks/a")
    with pytest.raises(exceptions.BankReadOnly):
        bank.section("chunks", read_only=True).reclaim_temporaries()
    assert bank.section("chunks", read_only=True).reclaim_temporaries(dry_run=True) == []
    assert Bank(MemoryBank()).reclaim_temporaries("chunks/") == []  # object stores leave none
