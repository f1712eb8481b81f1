"""What is specific to the fs bank: its layout, name encoding, atomic writes, listing cost, processes."""

from __future__ import annotations

import concurrent.futures
import datetime as _dt
import io
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strongroom import exceptions
from strongroom.bank_plugins import fs as fs_module
from strongroom.bank_plugins.fs import FilesystemBank
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.clock import FakeClock
from strongroom.testing.bank import TrickleStream, byte_order, pattern


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "bank"


@pytest.fixture
def bank(root: pathlib.Path) -> Iterator[FilesystemBank]:
    plugin = FilesystemBank({"path": str(root)})
    yield plugin
    plugin.close()


def files_under(root: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- options -----------------------------------------------------------------


def test_path_is_created_and_shown_in_repr(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "not" / "yet" / "there"
    bank = FilesystemBank({"path": str(target)})
    assert (target / "objects").is_dir()
    assert str(target) in repr(bank)


def test_missing_path_is_a_config_error() -> None:
    with pytest.raises(exceptions.ConfigError, match="'path'"):
        FilesystemBank({})


def test_path_that_is_a_file_is_a_config_error(tmp_path: pathlib.Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(exceptions.ConfigError, match="cannot be created"):
        FilesystemBank({"path": str(tmp_path / "file")})


def test_options_schema() -> None:
    schema = FilesystemBank.options_schema
    jsonschema.validate({"path": "/srv/bank"}, schema)
    jsonschema.validate({"path": "/srv/bank", "lease_expire_window": 600, "lease_renew_window": 120,
                         "lease_validity_window": 100}, schema)
    for bad in ({}, {"path": 3}, {"path": "/x", "unknown": 1}, {"path": "/x", "lease_renew_window": "often"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


# -- layout --------------------------------------------------------------------


def test_keys_are_files_under_objects(bank: FilesystemBank, root: pathlib.Path) -> None:
    bank.put_object("checkpoints/c1/index.json", b"{}")
    bank.put_object("checkpoints/c1", b"a key and its children coexist")
    assert files_under(root) == ["objects/checkpoints/c1.obj", "objects/checkpoints/c1/index.json.obj"]
    assert bank.get_object("checkpoints/c1") == b"a key and its children coexist"
    assert bank.get_object("checkpoints/c1/index.json") == b"{}"


UNSAFE_SEGMENTS = [
    ".hidden", ".tmp-0123456789abcdef", "~tilde", "~~double", "x.obj", ".obj", "~", ".",
    "s" * 201, "\u00e9" * 101, "L" * 1000, "z" * 150, "y" * 151, "mixed\u00e9" * 60,
]


def test_unsafe_segments_round_trip_and_list_as_the_original_keys(root: pathlib.Path) -> None:
    bank = FilesystemBank({"path": str(root)}, fsync=False)
    keys = []
    for i, segment in enumerate(UNSAFE_SEGMENTS):
        keys += [segment, f"{segment}/child", f"{segment}-sibling"]
        keys += [f"dir/{segment}", f"dir/{segment}/leaf-{i}"]
    keys += ["s" * 200, "dir/plain", "dir/plain.obj.x"]  # 200 bytes is still a plain name
    keys = list(dict.fromkeys(keys))
    for key in keys:
        bank.put_object(key, key.encode(), {"k": key[:50]})
    assert bank.list_objects() == byte_order(keys)
    assert bank.list_objects(prefix="dir/") == byte_order([k for k in keys if k.startswith("dir/")])
    for key in keys:
        assert bank.get_object(key) == key.encode()
        assert bank.head_object(key).metadata == {"k": key[:50]}
    for path in root.rglob("*"):
        assert len(path.name.encode()) <= 255
        assert not path.name.startswith(".")  # only temp files start with "."
    for key in keys:
        bank.delete_object(key)
    assert bank.list_objects() == []
    assert list((root / "objects").iterdir()) == []


def test_long_segment_marker_and_prefix(bank: FilesystemBank) -> None:
    long_a, long_b = "a" * 400 + "1", "a" * 400 + "2"
    keys = [f"p/{long_a}", f"p/{long_b}", f"p/{long_a}/x", "p/" + "a" * 150, "p/" + "a" * 300]
    for key in keys:
        bank.put_object(key, b"")
    expected = byte_order(keys)
    for i, marker in enumerate(expected):
        assert bank.list_objects(marker=marker) == expected[i + 1:]
    assert bank.list_objects(prefix="p/" + "a" * 350) == byte_order([k for k in keys if len(k) > 352])
    assert bank.list_objects(prefix=f"p/{long_a}/") == [f"p/{long_a}/x"]


# -- atomic writes -------------------------------------------------------------


def test_temp_files_and_foreign_files_never_show_up(bank: FilesystemBank, root: pathlib.Path) -> None:
    bank.put_object("d/k", b"v")
    # What a crash mid-put leaves behind, and things an operator might drop in.
    (root / "objects" / "d" / ".tmp-deadbeef").write_bytes(b"half a val")
    (root / "objects" / ".tmp-cafe").write_bytes(b"")
    (root / "objects" / "d" / "README").write_bytes(b"not ours")
    (root / "objects" / "~not-base32!").mkdir()
    assert bank.list_objects() == ["d/k"]
    assert bank.get_object("d/k") == b"v"


def test_failed_stream_put_removes_its_temp_file(bank: FilesystemBank, root: pathlib.Path) -> None:
    bank.put_object("d/k", b"old")
    with pytest.raises(Exception, match="broke"):
        bank.put_object("d/k", TrickleStream(pattern(3 << 20), fail_after=1 << 20))  # type: ignore[arg-type]
    assert files_under(root) == ["objects/d/k.obj"]
    assert bank.get_object("d/k") == b"old"


def test_open_stream_keeps_reading_the_value_it_opened(bank: FilesystemBank) -> None:
    old, new = pattern(3 << 20, seed=1), pattern(1 << 20, seed=2)
    bank.put_object("k", old)
    with bank.open_object("k") as stream:
        first = stream.read(1000)
        bank.put_object("k", new)  # replaced by rename: the open file is the old inode
        rest = stream.read()
    assert first + rest == old
    assert bank.get_object("k") == new


def test_open_object_is_a_seekable_file_over_the_value_only(bank: FilesystemBank) -> None:
    value = bytes(range(256)) * 10
    bank.put_object("k", value, {"some": "metadata"})
    with bank.open_object("k") as stream:
        assert isinstance(stream, io.BufferedIOBase)
        assert stream.read(3) == b"\x00\x01\x02"
        assert stream.tell() == 3
        stream.seek(0)
        assert stream.read(1) == b"\x00"
        stream.seek(-2, io.SEEK_END)
        assert stream.read() == b"\xfe\xff"
        buffer = bytearray(10)
        stream.seek(100)
        assert stream.readinto(buffer) == 10
        assert bytes(buffer) == value[100:110]
    assert stream.closed


def test_corrupt_data_file_is_a_bank_error_naming_the_key(bank: FilesystemBank, root: pathlib.Path) -> None:
    (root / "objects" / "broken.obj").write_bytes(b"no header here")
    with pytest.raises(exceptions.BankError, match="'broken'"):
        bank.get_object("broken")
    with pytest.raises(exceptions.BankError, match="'broken'"):
        bank.head_object("broken")


def test_last_modified_is_the_file_mtime(bank: FilesystemBank, root: pathlib.Path) -> None:
    bank.put_object("k", b"v")
    mtime = (root / "objects" / "k.obj").stat().st_mtime
    info = bank.head_object("k")
    assert info.last_modified == _dt.datetime.fromtimestamp(mtime, _dt.UTC)
    assert info.last_modified is not None and info.last_modified.tzinfo is not None


def test_injected_clock_sets_last_modified(root: pathlib.Path) -> None:
    clock = FakeClock(_dt.datetime(2030, 5, 1, 12, 0, tzinfo=_dt.UTC))
    bank = FilesystemBank({"path": str(root)}, clock=clock)
    bank.put_object("k", b"v")
    clock.advance(3600)
    bank.put_object("later", b"v")
    assert bank.head_object("k").last_modified == _dt.datetime(2030, 5, 1, 12, 0, tzinfo=_dt.UTC)
    assert bank.head_object("later").last_modified == _dt.datetime(2030, 5, 1, 13, 0, tzinfo=_dt.UTC)


# -- delete --------------------------------------------------------------------


def test_delete_removes_empty_parent_directories(bank: FilesystemBank, root: pathlib.Path) -> None:
    bank.put_object("a/b/c/d", b"")
    bank.put_object("a/x", b"")
    bank.delete_object("a/b/c/d")
    assert [p.name for p in (root / "objects" / "a").iterdir()] == ["x.obj"]
    bank.delete_object("a/x")
    assert list((root / "objects").iterdir()) == []
    bank.delete_object("a/x")
    assert (root / "objects").is_dir()


def test_writers_survive_deletes_removing_their_directories(root: pathlib.Path) -> None:
    """One thread keeps emptying a directory (so delete removes it) while others write into it."""
    bank = FilesystemBank({"path": str(root)}, fsync=False)  # no fsync: tighter races, faster test
    rounds = 200

    def churn() -> None:
        for i in range(rounds):
            bank.put_object(f"hot/sub/churn-{i}", b"x")
            bank.delete_object(f"hot/sub/churn-{i}")

    def write(n: int) -> None:
        for i in range(rounds):
            bank.put_object(f"hot/sub/w{n}-{i}", b"w")
            bank.delete_object(f"hot/sub/w{n}-{i}")
        bank.put_object(f"hot/sub/kept-{n}", b"kept")

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(churn)] + [pool.submit(write, n) for n in range(3)]
        for future in futures:
            future.result()
    assert bank.list_objects(prefix="hot/") == [f"hot/sub/kept-{n}" for n in range(3)]


# -- listing ---------------------------------------------------------------------


def test_listing_descends_to_the_prefix_and_stops_at_the_limit(root: pathlib.Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    bank = FilesystemBank({"path": str(root)}, fsync=False)
    keys = [f"d{i:02d}/k{j:02d}" for i in range(30) for j in range(10)]
    for key in keys:
        bank.put_object(key, b"")
    scanned: list[str] = []
    real_listdir = os.listdir

    def counting_listdir(path: str) -> list[str]:  # a spy: the real listdir, counted
        scanned.append(os.path.basename(path))
        return real_listdir(path)

    monkeypatch.setattr(fs_module.os, "listdir", counting_listdir)
    assert bank.list_objects(prefix="d17/") == keys[170:180]
    assert scanned == ["d17"]
    scanned.clear()
    assert bank.list_objects(limit=3) == keys[:3]
    assert scanned == ["objects", "d00"]
    scanned.clear()
    assert bank.list_objects(marker="d12/k09", limit=2) == ["d13/k00", "d13/k01"]
    assert scanned == ["objects", "d12", "d13"]  # d00..d11 are skipped without being read


def test_listing_ten_thousand_keys_is_fast(root: pathlib.Path) -> None:
    bank = FilesystemBank({"path": str(root)}, fsync=False)  # the listing is timed, not the writes
    keys = [f"projects/p1/chunks/{i % 256:02x}/{i:08x}" for i in range(10_000)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: bank.put_object(k, b""), keys))
    expected = sorted(keys)
    started = time.perf_counter()
    assert bank.list_objects(prefix="projects/") == expected
    paged = list(bank.iter_objects(prefix="projects/p1/", page_size=1000))
    assert bank.list_objects(prefix="projects/p1/chunks/7f/") == [k for k in expected if "/7f/" in k]
    elapsed = time.perf_counter() - started
    assert paged == expected
    assert elapsed < 5.0, f"listing 10,000 keys took {elapsed:.2f}s"


KEY_PIECES = st.sampled_from(["a", "b", "-", ".", "~", "\u00e9", "0", "obj", "\U0001f600"])
SEGMENT = st.one_of(
    st.lists(KEY_PIECES, min_size=1, max_size=4).map("".join),
    st.sampled_from([".obj", "x.obj", "~~", ".tmp-1", "L" * 220, "L" * 220 + "b"]),
).filter(lambda s: s not in (".", ".."))
KEY = st.lists(SEGMENT, min_size=1, max_size=3).map("/".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(KEY, min_size=1, max_size=25, unique=True), data=st.data())
def test_listing_matches_the_reference_bank(tmp_path_factory: pytest.TempPathFactory, keys: list[str],
                                            data: st.DataObject) -> None:
    fs_bank = FilesystemBank({"path": str(tmp_path_factory.mktemp("prop"))}, fsync=False)
    reference = MemoryBank({})
    for key in keys:
        fs_bank.put_object(key, key.encode())
        reference.put_object(key, key.encode())
    for doomed in data.draw(st.lists(st.sampled_from(keys), max_size=5)):
        fs_bank.delete_object(doomed)
        reference.delete_object(doomed)
    for _ in range(5):
        prefix = data.draw(st.one_of(st.just(""), st.sampled_from(keys).map(lambda k: k[:len(k) // 2]),
                                     st.sampled_from(keys).map(lambda k: k.rsplit("/", 1)[0] + "/")))
        marker = data.draw(st.one_of(st.none(), st.sampled_from(keys), KEY))
        limit = data.draw(st.one_of(st.none(), st.integers(0, 10)))
        assert fs_bank.list_objects(prefix, marker, limit) == reference.list_objects(prefix, marker, limit)


# -- processes ---------------------------------------------------------------------


WRITER = textwrap.dedent("""
    import sys
    from strongroom.bank_plugins.fs import FilesystemBank
    bank = FilesystemBank({"path": sys.argv[1]})
    for i in range(50):
        bank.put_object(f"shared/{i % 5}/{sys.argv[2]}-{i}", sys.argv[2].encode() * 1000)
        bank.put_object(f"shared/{i % 5}/scratch/{sys.argv[2]}", b"s")
        bank.delete_object(f"shared/{i % 5}/scratch/{sys.argv[2]}")
""")


def test_several_processes_write_distinct_keys(root: pathlib.Path) -> None:
    names = ["p0", "p1", "p2", "p3"]
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), name], stderr=subprocess.PIPE)
             for name in names]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    bank = FilesystemBank({"path": str(root)})
    expected = byte_order([f"shared/{i % 5}/{name}-{i}" for name in names for i in range(50)])
    assert bank.list_objects() == expected
    for key in expected:
        assert bank.get_object(key) == key.split("/")[2].split("-")[0].encode() * 1000


class RacedFilesystemBank(FilesystemBank):
    """Injects a race: right after the writer creates its directories, a "concurrent delete" removes them."""

    races = 3

    def _make_dirs(self, dirs: list[str], deferred: bool = False) -> None:
        super()._make_dirs(dirs, deferred)
        if self.races:
            self.races -= 1
            shutil.rmtree(os.path.join(self._root, dirs[0]))


def test_writer_recreates_a_directory_that_vanished_under_it(root: pathlib.Path) -> None:
    bank = RacedFilesystemBank({"path": str(root)})
    bank.put_object("a/b/c", b"value")
    assert bank.races == 0
    assert bank.get_object("a/b/c") == b"value"


def test_writer_recreates_a_removed_bank_directory(root: pathlib.Path) -> None:
    bank = FilesystemBank({"path": str(root)})
    shutil.rmtree(root)
    bank.put_object("k", b"v")
    assert bank.list_objects() == ["k"]


@pytest.mark.parametrize("listed", [True, False], ids=["directory-listed", "stat-per-key"])
def test_chunk_existence_in_bulk_lists_small_directories_and_stats_in_large_ones(
        bank: FilesystemBank, monkeypatch: pytest.MonkeyPatch, listed: bool) -> None:
    """An incremental asks about thousands of reused chunks at once: a chunk directory is listed once when
    that is cheaper than a stat per chunk; a directory too large for the few asked is stat'ed key by key.
    Either way, every answer is the one ``object_exists`` gives, deferred puts and deleted chunks included."""
    keys = [f"chunks/{n % 4:02x}/{n:064x}" for n in range(200)]
    for key in keys[::2]:
        bank.put_object(key, b"c")
    for key in keys[1::4]:
        bank.put_object_deferred(key, b"d")
    bank.delete_object(keys[0])
    if not listed:
        monkeypatch.setattr(fs_module, "LIST_BYTES_PER_ASKED", 0)
    scans: list[str] = []
    scandir = os.scandir
    monkeypatch.setattr(fs_module.os, "scandir", lambda path: scans.append(path) or scandir(path))
    expected = [(n % 2 == 0 or n % 4 == 1) and n != 0 for n in range(200)]
    assert bank.objects_exist(keys) == expected
    assert len(scans) == (3 if listed else 0)  # chunks/03 holds nothing: no directory to list
    assert [bank.object_exists(key) for key in keys] == expected
