"""The block conformance suite's crash contracts: staged volumes, tagged snapshots, leftovers.

Part of :class:`strongroom.testing.block.BlockBackendConformance` (every backend runs it): a restore
writes into a staged volume that nobody can take for good data until it is published, and every
snapshot carries tags by which its taker finds it again after a crash (``doc/plugin-authors-block.md``).
"""

from __future__ import annotations

import pathlib
from typing import ClassVar

import pytest

from strongroom import exceptions
from strongroom.block.base import BlockBackend

MiB = 1 << 20
TAGS = {"strongroom.checkpoint": "8b0f3c1e-0000-4000-8000-000000000001", "strongroom.provider": "p-1"}


class StagingConformance:
    """Staged volumes, snapshot tags and ``reclaim_leftovers``."""

    #: Volumes and snapshots outlive the backend object (a new one made by ``make_backend`` on the same
    #: ``tmp_path`` sees them): the suite then checks that tags and staged volumes survive a restart.
    persistent: ClassVar[bool] = False

    def make_backend(self, tmp_path: pathlib.Path) -> BlockBackend:
        raise NotImplementedError

    def test_staged_volume_is_unseen_until_published(self, backend: BlockBackend) -> None:
        staged = backend.create_volume(2 * MiB, name="conformance-staged", staged=True)
        assert staged.staged and staged.name == "conformance-staged" and staged.size == 2 * MiB
        assert all(v.name != "conformance-staged" for v in backend.list_volumes()), "a staged volume is listed"
        with pytest.raises(exceptions.VolumeNotFound):
            backend.get_volume(staged.id)
        with pytest.raises(exceptions.VolumeNotFound):
            backend.destroy_volume(staged.id)
        with pytest.raises(exceptions.VolumeNotFound):
            backend.create_snapshot(staged.id)
        assert [v.id for v in backend.list_staged_volumes()] == [staged.id]
        with backend.writing_volume(staged.id) as writer:
            writer.write(MiB + 3, b"restored")
        with backend.open_volume_reader(staged.id) as reader:
            assert reader.read(MiB + 3, 8) == b"restored"

        published = backend.publish_volume(staged.id)
        assert not published.staged and published.name == "conformance-staged"
        assert published.id in [v.id for v in backend.list_volumes()]
        assert backend.get_volume(published.id).size == 2 * MiB
        assert backend.list_staged_volumes() == []
        with backend.open_volume_reader(published.id) as reader:
            assert reader.read(MiB, 16) == b"\0\0\0restored\0\0\0\0\0"
        with pytest.raises(exceptions.VolumeNotFound):
            backend.publish_volume(published.id)  # already published

    def test_a_staged_name_is_reserved(self, backend: BlockBackend) -> None:
        staged = backend.create_volume(MiB, name="conformance-reserved", staged=True)
        with pytest.raises(exceptions.VolumeExists):
            backend.create_volume(MiB, name="conformance-reserved")
        with pytest.raises(exceptions.VolumeExists):
            backend.create_volume(MiB, name="conformance-reserved", staged=True)
        backend.discard_volume(staged.id)
        backend.create_volume(MiB, name="conformance-reserved")  # free again
        with pytest.raises(exceptions.VolumeExists):
            backend.create_volume(MiB, name="conformance-reserved", staged=True)

    def test_discard_is_idempotent_and_spares_published_volumes(self, backend: BlockBackend) -> None:
        staged = backend.create_volume(MiB, staged=True)
        kept = backend.create_volume(MiB)
        backend.discard_volume(staged.id)
        backend.discard_volume(staged.id)
        backend.discard_volume("00000000-0000-4000-8000-00000000dead")
        backend.discard_volume(kept.id)  # a published volume is never discarded
        assert backend.list_staged_volumes() == []
        assert kept.id in [v.id for v in backend.list_volumes()]
        with pytest.raises(exceptions.VolumeNotFound):
            backend.publish_volume(staged.id)
        with pytest.raises(exceptions.VolumeNotFound):
            backend.open_volume_writer(staged.id)

    def test_snapshot_tags_are_kept_and_listed(self, backend: BlockBackend) -> None:
        volume = backend.create_volume(MiB)
        tagged = backend.create_snapshot(volume.id, TAGS)
        plain = backend.create_snapshot(volume.id)
        assert dict(tagged.tags) == TAGS
        listed = {s.id: dict(s.tags) for s in backend.list_snapshots()}
        assert listed[tagged.id] == TAGS
        assert listed[plain.id] == {}
        assert {s.id: dict(s.tags) for s in backend.list_snapshots(volume.id)}[tagged.id] == TAGS

    @pytest.mark.parametrize("tags", [{"": "x"}, {"k": ""}, {"k": 1}, {"k": "x" * 256},
                                      {f"k{i}": "v" for i in range(17)}])
    def test_unusable_tags_rejected(self, backend: BlockBackend, tags: dict) -> None:
        volume = backend.create_volume(MiB)
        with pytest.raises(exceptions.InvalidInput):
            backend.create_snapshot(volume.id, tags)
        assert backend.list_snapshots(volume.id) == []

    def test_reclaim_leftovers_spares_live_work(self, backend: BlockBackend) -> None:
        volume = backend.create_volume(MiB)
        snapshot = backend.create_snapshot(volume.id, TAGS)
        staged = backend.create_volume(MiB, staged=True)
        assert isinstance(backend.reclaim_leftovers(), list)
        assert snapshot.id in [s.id for s in backend.list_snapshots()]
        assert [v.id for v in backend.list_staged_volumes()] == [staged.id]
        with backend.writing_volume(staged.id) as writer:
            writer.write(0, b"still mine")
        assert backend.publish_volume(staged.id).name == staged.name

    def test_tags_and_staged_volumes_outlive_the_backend_object(self, tmp_path: pathlib.Path) -> None:
        if not self.persistent:
            pytest.skip("backend declares persistent = False")
        first = self.make_backend(tmp_path)
        volume = first.create_volume(MiB)
        snapshot = first.create_snapshot(volume.id, TAGS)
        staged = first.create_volume(MiB, name="conformance-survivor", staged=True)
        first.close()
        second = self.make_backend(tmp_path)
        try:
            assert {s.id: dict(s.tags) for s in second.list_snapshots()}[snapshot.id] == TAGS
            assert [v.name for v in second.list_staged_volumes()] == ["conformance-survivor"]
            second.discard_volume(staged.id)
            second.delete_snapshot(snapshot.id)
            second.destroy_volume(volume.id)
            assert second.list_staged_volumes() == [] and second.list_snapshots() == []
        finally:
            second.close()
