"""The filesystem bank's deferred puts and barrier: what another process sees, and when."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import pytest

from strongroom import exceptions
from strongroom.bank_plugins import fs_deferred
from strongroom.bank_plugins.fs import FilesystemBank
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
