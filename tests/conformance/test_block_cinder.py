"""The block-backend conformance suite on the cinder backend, against a real Cinder, and what only Cinder has.

Cinder (``tests/servers/cinder.py``: cinder-api, -scheduler and -volume, noauth, the RBD driver on the
session's Ceph) starts once per run.  Each test is a project of its own (derived from ``tmp_path``, so a
second backend made on the same ``tmp_path`` sees the first one's volumes, as the suite's restart check
needs), which keeps listings per test exact on the shared Cinder.
"""

from __future__ import annotations

import hashlib
import pathlib
import time

import pytest

from strongroom import exceptions
from strongroom.block.base import BlockBackend
from strongroom.block.cinder import CinderBackend
from strongroom.testing.block import BlockBackendConformance, MiB, pattern
from tests.servers.cinder import CinderService

GiB = 1 << 30


def project_for(tmp_path: pathlib.Path) -> str:
    return "p" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]


class CinderTestBase:
    @pytest.fixture(autouse=True)
    def _cinder(self, cinder_service: CinderService) -> None:
        self.cinder = cinder_service

    def make_backend(self, tmp_path: pathlib.Path) -> BlockBackend:
        return CinderBackend(self.cinder.backend_options(project=project_for(tmp_path)))


class TestCinderBackend(CinderTestBase, BlockBackendConformance):
    persistent = True
    tracks_changes = True
    extends = True
    # A secret option that reaches nothing in noauth mode: the Ceph key, which must be a real cephx key to
    # connect, is what test_secrets_never_shown checks instead.
    secret_option = None
    # Cinder counts in GiB: a volume of fewer bytes is a 1 GiB volume that reads as its size in bytes.
    volume_size = 16 * MiB


class TestCinderSpecifics(CinderTestBase):
    def test_a_project_sees_only_its_own_volumes(self, tmp_path: pathlib.Path) -> None:
        mine = self.cinder.create_volume(1, "mine", project="alpha-" + project_for(tmp_path))
        theirs = self.cinder.create_volume(1, "theirs", project="beta-" + project_for(tmp_path))
        backend = CinderBackend(self.cinder.backend_options(project="alpha-" + project_for(tmp_path)))
        try:
            assert [(v.id, v.name) for v in backend.list_volumes()] == [(mine["id"], "mine")]
            assert backend.get_volume(mine["id"]).extra["status"] == "available"
            with pytest.raises(exceptions.VolumeNotFound):
                backend.get_volume(theirs["id"])
            beta = backend.for_project("beta-" + project_for(tmp_path))
            assert [v.id for v in beta.list_volumes()] == [theirs["id"]]
        finally:
            backend.close()
            self.cinder.delete_volume(mine["id"], project="alpha-" + project_for(tmp_path))
            self.cinder.delete_volume(theirs["id"], project="beta-" + project_for(tmp_path))

    def test_user_snapshots_are_never_ours(self, tmp_path: pathlib.Path) -> None:
        project = project_for(tmp_path)
        backend = CinderBackend(self.cinder.backend_options(project=project))
        volume = backend.create_volume(MiB, name="shared")
        try:
            ours = backend.create_snapshot(volume.id, {"strongroom.checkpoint": "c-1"})
            made = self.cinder.api("POST", "/snapshots", project,
                                   json={"snapshot": {"volume_id": volume.id, "name": "nightly"}})
            users = made.json()["snapshot"]["id"]
            deadline = time.monotonic() + 60
            while self.cinder.api("GET", f"/snapshots/{users}", project).json()["snapshot"]["status"] != "available":
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert [s.id for s in backend.list_snapshots()] == [ours.id]
            assert backend.reclaim_leftovers() == []
            backend.delete_snapshot(users)  # not ours: left alone
            with pytest.raises(exceptions.SnapshotNotFound):
                backend.open_snapshot(users)
            assert self.cinder.api("GET", f"/snapshots/{users}", project).status_code == 200
            with pytest.raises(exceptions.Conflict, match=users):
                backend.destroy_volume(volume.id)
            backend.delete_snapshot(ours.id)
        finally:
            backend.close()
            self.cinder.delete_volume(volume.id, project=project)

    def test_data_goes_through_librbd(self, tmp_path: pathlib.Path) -> None:
        """A volume made through Cinder's API is read and written as the RBD image Cinder made."""
        import rbd

        project = project_for(tmp_path)
        made = self.cinder.create_volume(1, "through-rbd", project=project)
        backend = CinderBackend(self.cinder.backend_options(project=project))
        ioctx = self.cinder.ceph.admin().open_ioctx(self.cinder.pool)
        try:
            with rbd.Image(ioctx, f"volume-{made['id']}") as image:
                image.write(pattern(MiB, 3), 300 * MiB)
            snapshot = backend.create_snapshot(made["id"])
            with backend.reading_snapshot(snapshot.id) as reader:
                assert reader.size == 1 << 30
                assert reader.read(300 * MiB, MiB) == pattern(MiB, 3)
                assert sum(e.length for e in reader.allocated_extents()) <= 8 * MiB
            with rbd.Image(ioctx, f"volume-{made['id']}") as image:
                assert f"snapshot-{snapshot.id}" in [s["name"] for s in image.list_snaps()]
            backend.delete_snapshot(snapshot.id)
        finally:
            ioctx.close()
            backend.close()
            self.cinder.delete_volume(made["id"], project=project)

    def test_secrets_never_shown(self, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level("DEBUG")
        key = self.cinder.ceph.client_key
        options = self.cinder.backend_options(project=project_for(tmp_path), rbd_key=key,
                                              password="s3cr3t-password")
        del options["rbd_keyring"]
        with pytest.raises(exceptions.ConfigError) as bad:
            CinderBackend({**options, "rbd_key": 12345678})
        del options["password"]
        backend = CinderBackend(options)
        try:
            volume = backend.create_volume(MiB)
            with backend.open_volume_reader(volume.id) as reader:
                assert reader.read(0, 16) == bytes(16)
            shown = [repr(backend), str(backend), repr(backend.describe()), repr(backend.stats()),
                     repr(backend.config), repr(backend.api), str(bad.value)]
            backend.destroy_volume(volume.id)
        finally:
            backend.close()
        for text in shown + [caplog.text]:
            assert key not in text and "12345678" not in text, text

    def test_cinder_down_is_unavailable_naming_cinder(self) -> None:
        from tests.servers.ceph import free_port

        backend = CinderBackend(self.cinder.backend_options(endpoint=f"http://127.0.0.1:{free_port()}/v3",
                                                            timeout=3))
        began = time.monotonic()
        with pytest.raises(exceptions.BlockUnavailable) as err:
            backend.list_volumes()
        assert time.monotonic() - began < 10
        assert "Cinder at http://127.0.0.1" in str(err.value)
        backend.close()


class TestCinderGrowth(CinderTestBase):
    """extend_volume in bytes on a Cinder that counts in GiB, and the snapshots' sizes after it."""

    def test_extend_within_and_across_a_gib(self, tmp_path: pathlib.Path) -> None:
        import rbd

        project = project_for(tmp_path)
        backend = CinderBackend(self.cinder.backend_options(project=project))
        volume = backend.create_volume(MiB, name="growing")
        ioctx = self.cinder.ceph.admin().open_ioctx(self.cinder.pool)
        try:
            with rbd.Image(ioctx, f"volume-{volume.id}") as image:  # bytes past the volume's end, in its image
                image.write(pattern(MiB, 4), 2 * MiB)
            first = backend.create_snapshot(volume.id)
            grown = backend.extend_volume(volume.id, 3 * MiB)  # within the GiB Cinder has: no os-extend
            assert (grown.id, grown.size) == (volume.id, 3 * MiB)
            with backend.open_volume_reader(volume.id) as reader:
                assert reader.size == 3 * MiB and reader.read(MiB, 2 * MiB) == bytes(2 * MiB)
            with backend.writing_volume(volume.id) as writer:
                writer.write(3 * MiB - 4096, pattern(4096, 5))
            second = backend.create_snapshot(volume.id)
            wanted = GiB + 5 * MiB
            assert backend.extend_volume(volume.id, wanted).size == wanted  # os-extend to 2 GiB
            record = self.cinder.api("GET", f"/volumes/{volume.id}", project).json()["volume"]
            assert (record["size"], record["status"], record["metadata"].get("strongroom.size")) == (
                2, "available", str(wanted))
            with backend.writing_volume(volume.id) as writer:
                writer.write(wanted - 3, b"end")
            third = backend.create_snapshot(volume.id)
            sizes = {s.id: s.size for s in backend.list_snapshots(volume.id)}
            assert sizes == {first.id: MiB, second.id: 3 * MiB, third.id: wanted}
            for snap in (first, second, third):
                with backend.reading_snapshot(snap.id) as reader:
                    assert reader.size == sizes[snap.id]
            found = backend.changed_extents(second.id, first.id)
            assert found is not None and [(e.offset, e.length) for e in found] == [(MiB, 2 * MiB)]
            found = backend.changed_extents(third.id, second.id)
            assert found is not None and [(e.offset, e.length) for e in found] == [(3 * MiB, wanted - 3 * MiB)]
            with backend.reading_snapshot(third.id) as reader:
                assert reader.read(wanted - 3, 3) == b"end" and reader.read(GiB, MiB) == bytes(MiB)
            assert backend.extend_volume(volume.id, 2 * GiB).size == 2 * GiB  # a whole GiB: no size to keep
            record = self.cinder.api("GET", f"/volumes/{volume.id}", project).json()["volume"]
            assert (record["size"], "strongroom.size" in record["metadata"]) == (2, False)
            with pytest.raises(exceptions.InvalidInput, match=volume.id):
                backend.extend_volume(volume.id, GiB)
            for snap in (first, second, third):
                backend.delete_snapshot(snap.id)
        finally:
            ioctx.close()
            backend.close()
            self.cinder.delete_volume(volume.id, project=project)

    def test_extend_refused_while_in_use(self, tmp_path: pathlib.Path) -> None:
        project = project_for(tmp_path)
        backend = CinderBackend(self.cinder.backend_options(project=project))
        volume = backend.create_volume(MiB, name="busy")
        try:
            writer = backend.open_volume_overwriter(volume.id)
            try:
                with pytest.raises(exceptions.VolumeInUse, match=volume.id):
                    backend.extend_volume(volume.id, 2 * MiB)
            finally:
                writer.close()
            self.cinder.api("POST", f"/volumes/{volume.id}/action", project,
                            json={"os-reset_status": {"status": "maintenance"}})
            with pytest.raises(exceptions.VolumeInUse, match="maintenance"):
                backend.extend_volume(volume.id, 2 * MiB)
            self.cinder.api("POST", f"/volumes/{volume.id}/action", project,
                            json={"os-reset_status": {"status": "available"}})
            assert backend.get_volume(volume.id).size == MiB
            assert backend.extend_volume(volume.id, 2 * MiB).size == 2 * MiB
        finally:
            backend.close()
            self.cinder.delete_volume(volume.id, project=project)
