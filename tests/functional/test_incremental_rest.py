"""Nightly protects as a user runs them, through the REST API of a real all-in-one on loopback volumes:
the first protect reads the volume, later ones read only what changed, every checkpoint restores byte for
byte, the tracking can be audited, and the retained snapshot follows the newest checkpoint.

On the state directory's own filesystem (ext4 or tmpfs here) the loopback backend can only tell an image
that did not change at all; on a loop-mounted XFS or btrfs it tells changed blocks by FIEMAP.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.functional.banks import bank_under_test, configure, create_plan, restore_and_hash, sha256, start_checkpoint
from tests.functional.harness import MiB, retained_bases, wait_for
from tests.servers.reflinkfs import reflink_filesystem

pytestmark = [pytest.mark.functional]

SIZE = 64 * MiB
KEY = "OS::Cinder::Volume#vol.img"
#: The loopback backend trusts an image's timestamps only this long after they were stamped (the kernel
#: stamps them with a coarse clock): a protect right after a write cannot tell it did not change since.
RACY_MARGIN = 0.3


@contextlib.contextmanager
def _volumes_on(kind: str, tmp_path: Path, volumes: Path) -> Iterator[None]:
    if kind == "state-dir":
        yield
        return
    with reflink_filesystem(tmp_path, 512 * MiB) as mount:
        shutil.rmtree(volumes)
        volumes.symlink_to(mount)
        try:
            yield
        finally:
            volumes.unlink()
            volumes.mkdir()


def _protect(api: str, provider: str, plan: str) -> tuple[str, dict[str, Any]]:
    cid = start_checkpoint(api, provider, plan)
    body = wait_for(f"{api}/providers/{provider}/checkpoints/{cid}", "checkpoint", {"available", "error"})
    assert body["status"] == "available", body
    return cid, body["extra_info"]["protected"][KEY]


def _rewrite(path: Path, rng: random.Random, blocks: int) -> None:
    """Rewrite ``blocks`` 4 KiB blocks in place in two 4 MiB regions (a log and a database file, say)."""
    with open(path, "r+b") as fh:
        for index in range(blocks):
            region = (0, 20 * MiB)[index % 2]
            fh.seek(region + rng.randrange(0, 4 * MiB // 4096) * 4096)
            fh.write(rng.randbytes(4096))
        fh.flush()
        os.fsync(fh.fileno())


@pytest.mark.parametrize("kind", ["state-dir", "reflink-fs"])
def test_nightly_protects_read_only_what_changed(request: pytest.FixtureRequest, tmp_path: Path,
                                                 kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    service, provider = configure(tmp_path, bank_under_test("fs", request, tmp_path), f"aio-incr-{kind}")
    with _volumes_on(kind, tmp_path, service.volumes):
        rng = random.Random(5)
        image = service.volumes / "vol.img"
        with open(image, "wb") as fh:
            fh.truncate(SIZE)
            fh.write(rng.randbytes(SIZE // 2))  # half data, half hole
        time.sleep(RACY_MARGIN)  # the image stays idle a while, as a volume between nightly runs
        service.start()
        try:
            api = service.api()
            plan = create_plan(api, provider, "vol.img")
            hashes = {}
            first, info = _protect(api, provider, plan)
            hashes[first] = sha256(image)
            assert (info["mode"], info["full_reason"]) == ("full", "no parent in this bank"), info
            assert info["bytes_read"] == SIZE // 2

            same, info = _protect(api, provider, plan)
            hashes[same] = hashes[first]
            assert (info["mode"], info["bytes_read"], info["bytes_stored"]) == ("incremental", 0, 0), info
            assert info["parent_checkpoint"] == first

            _rewrite(image, rng, 40)  # 160 KiB: 0.25 % of the volume
            time.sleep(RACY_MARGIN)
            changed, info = _protect(api, provider, plan)
            hashes[changed] = sha256(image)
            if kind == "reflink-fs":
                assert info["mode"] == "incremental", info
                assert 0 < info["bytes_read"] <= 2 * 4 * MiB, info  # the two 4 MiB slots written, no more
            else:  # the loopback backend cannot tell which blocks of a changed image changed here
                assert (info["mode"], info["full_reason"]) == ("full", "backend cannot tell (loopback)"), info

            assert list(retained_bases(service.volumes / ".snapshots").values()) == [changed], (
                "only the newest checkpoint keeps its snapshot")
            audit = requests.post(f"{api}/verifications", json={"verification": {
                "provider_id": provider, "checkpoint_id": changed,
                "parameters": {"OS::Cinder::Volume": {"source": True}}}}, timeout=30)
            assert audit.status_code == 200, audit.text
            body = wait_for(f"{api}/verifications/{audit.json()['verification']['id']}", "verification",
                            {"success", "fail"})
            assert body["status"] == "success", body

            for cid, digest in hashes.items():
                got, record = restore_and_hash(service, provider, cid, f"back-{cid[:8]}")
                assert got == digest, (cid, record)
                (service.volumes / f"back-{cid[:8]}").unlink()
        finally:
            service.stop()
