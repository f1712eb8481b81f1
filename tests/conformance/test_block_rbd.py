"""The block backend conformance suite on the rbd backend against a real Ceph cluster, and what only RBD has.

The cluster (``tests/servers/ceph.py``: one mon, one memstore OSD, cephx on) starts once per run.  Each
test class gets its own pool and each test its own RBD namespace in it (derived from ``tmp_path``, so a
second backend made on the same ``tmp_path`` sees the first one's images, as the suite's restart check
needs), which keeps listings per test exact on the shared cluster.
"""

from __future__ import annotations

import hashlib
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from strongroom import exceptions
from strongroom.block.base import BlockBackend
from strongroom.block.rbd import RbdBackend
from strongroom.testing.block import BlockBackendConformance, MiB, OwnBackend, pattern
from tests.servers.ceph import CephCluster


def namespace_for(tmp_path: pathlib.Path) -> str:
    return "t" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]


@pytest.fixture(scope="class")
def rbd_pool(ceph_cluster: CephCluster) -> Iterator[str]:
    pool = ceph_cluster.new_pool("conformance")
    try:
        yield pool
    finally:
        ceph_cluster.delete_pool(pool)


class RbdTestBase:
    @pytest.fixture(autouse=True)
    def _cluster(self, ceph_cluster: CephCluster, rbd_pool: str) -> None:
        self.cluster = ceph_cluster
        self.pool = rbd_pool

    def options(self, tmp_path: pathlib.Path, **extra: Any) -> dict[str, Any]:
        return self.cluster.backend_options(self.pool, namespace=namespace_for(tmp_path), **extra)

    def make_backend(self, tmp_path: pathlib.Path) -> BlockBackend:
        return RbdBackend(self.options(tmp_path))


class TestRbdBackend(RbdTestBase, BlockBackendConformance):
    persistent = True
    tracks_changes = True
    extends = True
    # The key option must hold a real cephx key to connect at all: its secrecy is checked below instead.
    secret_option = None
    # librbd reports a new 4 MiB object as allocated from its start to the end of what was written:
    # volumes of several objects let "a small write allocates little" mean what it says.
    volume_size = 16 * MiB


# -- what only RBD has ---------------------------------------------------------------------------


def _rbd_image(cluster: CephCluster, pool: str, namespace: str, image: str) -> Iterator[Any]:
    """The image opened behind the backend's back, as client.admin (a user's own tools)."""
    import rbd

    ioctx = cluster.admin().open_ioctx(pool)
    ioctx.set_namespace(namespace)
    handle = rbd.Image(ioctx, image)
    try:
        yield handle
    finally:
        handle.close()
        ioctx.close()


def allocated(handle: Any) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    handle.diff_iterate(0, handle.size(), None, lambda o, n, e: found.append((o, n)) if e else None)
    return found


class TestRbdSpecifics(RbdTestBase, OwnBackend):
    def test_user_snapshots_are_never_ours(self, backend: RbdBackend, tmp_path: pathlib.Path) -> None:
        volume = backend.create_volume(8 * MiB, name="shared")
        ours = backend.create_snapshot(volume.id, {"strongroom.checkpoint": "c-1"})
        for handle in _rbd_image(self.cluster, self.pool, namespace_for(tmp_path), "shared"):
            handle.create_snap("nightly")  # the user's own snapshot, and one that looks a little like ours
            handle.create_snap("strongroom-not-a-uuid")
        assert [s.id for s in backend.list_snapshots()] == [ours.id]
        assert [s.id for s in backend.list_snapshots(volume.id)] == [ours.id]
        assert backend.reclaim_leftovers() == []
        backend.delete_snapshot("shared@nightly")
        with pytest.raises(exceptions.SnapshotNotFound):
            backend.open_snapshot("shared@nightly")
        backend.delete_snapshot(ours.id)
        for handle in _rbd_image(self.cluster, self.pool, namespace_for(tmp_path), "shared"):
            assert sorted(s["name"] for s in handle.list_snaps()) == ["nightly", "strongroom-not-a-uuid"]
            # ... and destroying the volume is refused, naming the user's snapshot.
            with pytest.raises(exceptions.Conflict, match="shared@nightly"):
                backend.destroy_volume(volume.id)
            for name in ("nightly", "strongroom-not-a-uuid"):
                handle.remove_snap(name)
        backend.destroy_volume(volume.id)

    def test_restore_stays_thin(self, backend: RbdBackend, tmp_path: pathlib.Path) -> None:
        from strongroom import datamover
        from strongroom.bank_plugins import Bank
        from strongroom.bank_plugins.memory import MemoryBank

        size = 64 * MiB
        volume = backend.create_volume(size, name="thin-source")
        writes = {0: pattern(MiB, 1), 20 * MiB + 4096: pattern(3 * MiB, 2), size - 4096: pattern(4096, 3)}
        with backend.writing_volume(volume.id) as writer:
            for offset, data in writes.items():
                writer.write(offset, data)
        bank = Bank(MemoryBank(), name="memory")
        store = datamover.ChunkStore(bank.section("chunks"))
        snapshot = backend.create_snapshot(volume.id)
        with backend.reading_snapshot(snapshot.id) as reader:
            result = datamover.backup(reader, store, bank.section("manifest"), chunk_size=4 * MiB)
        assert result.bytes_read <= 16 * MiB  # only the allocated objects were read
        staged = backend.create_volume(size, name="thin-restored", staged=True)
        with backend.writing_volume(staged.id) as writer:
            datamover.restore(bank.section("manifest"), store, writer)
        restored = backend.publish_volume(staged.id)
        with backend.open_volume_reader(restored.id) as reader:
            for offset, data in writes.items():
                assert reader.read(offset, len(data)) == data
            assert reader.read(40 * MiB, MiB) == bytes(MiB)
        for handle in _rbd_image(self.cluster, self.pool, namespace_for(tmp_path), "thin-restored"):
            extents = allocated(handle)
        assert sum(length for _, length in extents) <= 3 * 4 * MiB, extents  # objects 0, 5, 15 only
        assert all(not (8 * MiB <= offset < 20 * MiB) for offset, _ in extents), extents
        backend.delete_snapshot(snapshot.id)
        for vid in (volume.id, restored.id):
            backend.destroy_volume(vid)

    def test_a_clone_reads_through_to_its_parent(self, backend: RbdBackend, tmp_path: pathlib.Path) -> None:
        """A Cinder volume made from a Glance image is an RBD clone: its parent's data is the volume's."""
        import rbd

        parent = backend.create_volume(16 * MiB, name="golden")
        with backend.writing_volume(parent.id) as writer:
            writer.write(0, pattern(MiB, 5))
        ioctx = self.cluster.admin().open_ioctx(self.pool)
        ioctx.set_namespace(namespace_for(tmp_path))
        try:
            with rbd.Image(ioctx, "golden") as image:
                image.create_snap("base")
                image.protect_snap("base")
            rbd.RBD().clone(ioctx, "golden", "base", ioctx, "from-golden", features=rbd.RBD_FEATURE_LAYERING
                            | rbd.RBD_FEATURE_EXCLUSIVE_LOCK | rbd.RBD_FEATURE_OBJECT_MAP | rbd.RBD_FEATURE_FAST_DIFF)
            with backend.writing_volume("from-golden") as writer:
                writer.write(8 * MiB, pattern(4096, 6))
            snapshot = backend.create_snapshot("from-golden")
            with backend.reading_snapshot(snapshot.id) as reader:
                extents = list(reader.allocated_extents())
                assert extents[0].offset == 0 and extents[0].length >= MiB, extents
                assert reader.read(0, MiB) == pattern(MiB, 5)
                assert reader.read(8 * MiB, 4096) == pattern(4096, 6)
            backend.delete_snapshot(snapshot.id)
            backend.destroy_volume("from-golden")
            with rbd.Image(ioctx, "golden") as image:
                image.unprotect_snap("base")
                image.remove_snap("base")
        finally:
            ioctx.close()
        backend.destroy_volume(parent.id)

    def test_half_made_snapshot_of_a_dead_maker_is_reclaimed(self, backend: RbdBackend,
                                                             tmp_path: pathlib.Path) -> None:
        from strongroom.block.rbd.layout import SnapshotName, encode_record

        volume = backend.create_volume(4 * MiB, name="half")
        dead = SnapshotName.new("half")
        orphan = SnapshotName.new("half")
        for handle in _rbd_image(self.cluster, self.pool, namespace_for(tmp_path), "half"):
            handle.metadata_set(dead.record_key, encode_record({}, "2026-01-01T00:00:00+00:00", maker=1))
            handle.create_snap(orphan.snap)  # a snapshot of ours whose record is gone
        assert backend.list_snapshots() == []
        assert sorted(backend.reclaim_leftovers()) == sorted([orphan.id, f"half metadata {dead.record_key}"])
        for handle in _rbd_image(self.cluster, self.pool, namespace_for(tmp_path), "half"):
            assert list(handle.list_snaps()) == []
            assert [k for k, _ in handle.metadata_list()] == []
        backend.destroy_volume(volume.id)

    def test_secret_key_never_shown(self, backend: RbdBackend, tmp_path: pathlib.Path,
                                    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
        caplog.set_level("DEBUG")
        key = self.cluster.client_key
        options = self.options(tmp_path, key=key)
        del options["keyring"]
        with_key = RbdBackend(options)
        try:
            volume = with_key.create_volume(MiB, name="keyed")
            shown = [repr(with_key), str(with_key), repr(with_key.stats()), repr(with_key.describe()),
                     repr(with_key.config), repr(with_key.connection), repr(volume)]
            with pytest.raises(exceptions.VolumeNotFound) as missing:
                with_key.open_volume_reader("nothing-here")
            shown.append(str(missing.value))
            with_key.destroy_volume(volume.id)
        finally:
            with_key.close()
        wrong = "AQBIYA9rDa7FNRAAe5vLaRKat7pq+4qRVzQ7Dg=="  # a well-formed key the cluster does not know
        refused = RbdBackend({**options, "key": wrong, "connect_timeout": 3})
        with pytest.raises(exceptions.BlockError) as err:
            refused.list_volumes()
        shown += [str(err.value), repr(err.value), repr(refused)]
        for not_a_key in (12345678, "AQBadKeyBadKeyBadKeyBadKeyBadKeyBadKe=="):
            with pytest.raises(exceptions.ConfigError) as bad:
                RbdBackend({**options, "key": not_a_key})
            shown.append(str(bad.value))
        out, err = capfd.readouterr()  # what librados itself printed
        for text in shown + [caplog.text, out, err]:
            assert key not in text and wrong not in text and "12345678" not in text, text
            assert "AQBadKey" not in text, text

    def test_dead_monitor_fails_within_the_timeout(self) -> None:
        from tests.servers import free_port

        backend = RbdBackend({"mon_host": f"v1:127.0.0.1:{free_port()}", "pool": "volumes", "connect_timeout": 2})
        began = time.monotonic()
        with pytest.raises(exceptions.BlockUnavailable) as err:
            backend.list_volumes()
        assert time.monotonic() - began < 6
        assert "rbd block backend" in str(err.value) and "pool volumes" in str(err.value)
        backend.close()


class TestRbdChangedBlocks(RbdTestBase, OwnBackend):
    """What the conformance suite's random series rarely makes: a whole object discarded, a backend
    without fast-diff, a base newer than the snapshot, growth refused while an overwriter writes."""

    @staticmethod
    def _cleanup(backend: RbdBackend, volume_id: str) -> None:
        for snap in backend.list_snapshots(volume_id):
            backend.delete_snapshot(snap.id)
        backend.destroy_volume(volume_id)

    @pytest.mark.parametrize("features", ["layering,exclusive-lock,object-map,fast-diff", "layering"])
    def test_small_writes_and_whole_object_discards(self, tmp_path: pathlib.Path, features: str) -> None:
        backend = RbdBackend(self.options(tmp_path, image_features=features))
        try:
            volume = backend.create_volume(16 * MiB, name="diffed")
            with backend.writing_volume(volume.id) as writer:
                writer.write(0, pattern(12 * MiB, 1))
            base = backend.create_snapshot(volume.id)
            with backend.writing_volume(volume.id) as writer:
                writer.write(MiB + 4096, pattern(4096, 2))  # inside an object the base has
                writer.write_zeros(4 * MiB, 4 * MiB)  # the whole second object: librbd removes it
            new = backend.create_snapshot(volume.id)
            found = backend.changed_extents(new.id, base.id)
            assert found is not None
            extents = [(e.offset, e.length) for e in found]
            # Exact: the 4 KiB write is 4 KiB, the discarded object is there (librbd says exists=False).
            assert extents == [(MiB + 4096, 4096), (4 * MiB, 4 * MiB)], extents
            with backend.reading_snapshot(new.id) as reader:
                assert reader.read(4 * MiB, 4 * MiB) == bytes(4 * MiB)
            self._cleanup(backend, volume.id)
        finally:
            backend.close()

    def test_only_its_own_snapshots_in_order(self, backend: RbdBackend, tmp_path: pathlib.Path) -> None:
        volume = backend.create_volume(4 * MiB, name="ordered")
        older = backend.create_snapshot(volume.id)
        with backend.writing_volume(volume.id) as writer:
            writer.write(0, b"x")
        newer = backend.create_snapshot(volume.id)
        assert backend.changed_extents(older.id, newer.id) is None, "a base newer than the snapshot: cannot tell"
        for handle in _rbd_image(self.cluster, self.pool, namespace_for(tmp_path), "ordered"):
            handle.create_snap("users")
        for wrong in ("ordered@users", "ordered@strongroom-00000000-0000-4000-8000-000000000000"):
            with pytest.raises(exceptions.SnapshotNotFound, match=wrong):
                backend.changed_extents(newer.id, wrong)
        for handle in _rbd_image(self.cluster, self.pool, namespace_for(tmp_path), "ordered"):
            handle.remove_snap("users")
        self._cleanup(backend, volume.id)

    def test_extend_waits_for_no_overwriter(self, backend: RbdBackend) -> None:
        volume = backend.create_volume(4 * MiB, name="growing")
        base = backend.create_snapshot(volume.id)
        writer = backend.open_volume_overwriter(volume.id)
        try:
            with pytest.raises(exceptions.VolumeInUse, match="growing"):
                backend.extend_volume(volume.id, 8 * MiB)
        finally:
            writer.close()
        assert backend.get_volume(volume.id).size == 4 * MiB
        grown = backend.extend_volume(volume.id, 8 * MiB)
        assert grown.size == 8 * MiB
        assert backend.extend_volume(volume.id, 8 * MiB).size == 8 * MiB  # the same size: nothing to do
        new = backend.create_snapshot(volume.id)
        assert {s.id: s.size for s in backend.list_snapshots(volume.id)} == {base.id: 4 * MiB, new.id: 8 * MiB}
        found = backend.changed_extents(new.id, base.id)
        assert found is not None and [(e.offset, e.length) for e in found] == [(4 * MiB, 4 * MiB)]
        self._cleanup(backend, volume.id)
