"""Files out of checkpoints of FAT, NTFS and XFS disk images (GPT and MBR) through the REST API of the real
all-in-one, without restoring the volumes; a filesystem read by no library here is a 400 naming it."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
import urllib.parse
from pathlib import Path

import pytest
import requests

from strongroom.testing import disk_images
from tests.functional.harness import PROVIDER_ID, AllInOne, wait_for

MISSING = sorted({tool for fs in ("fat", "ntfs", "xfs") for tool in disk_images.foreign_missing(fs)})
pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(bool(MISSING), reason=f"needs {MISSING} (make system-packages)")]
#: volume name: (filesystem, table, disk size)
VOLUMES = {"fat.img": ("fat", "gpt", 64 * disk_images.MIB), "ntfs.img": ("ntfs", "mbr", 64 * disk_images.MIB),
           "xfs.img": ("xfs", "gpt", 330 * disk_images.MIB)}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _base(api: str, checkpoint: str, volume: str) -> str:
    key = urllib.parse.quote(f"OS::Cinder::Volume#{volume}", safe=":")
    return f"{api}/providers/{PROVIDER_ID}/checkpoints/{checkpoint}/resources/{key}"


def test_fat_ntfs_and_xfs_listed_stat_and_downloaded_byte_identical(all_in_one: AllInOne, tmp_path: Path) -> None:
    sources = {}
    for volume, (filesystem, table, size) in VOLUMES.items():
        source = sources[volume] = tmp_path / volume / "src"
        (disk_images.populate_etc if filesystem == "xfs" else disk_images.populate_windows)(source)
        disk_images.make_foreign_disk(all_in_one.volumes / volume, source, filesystem, table=table, size=size)
    btrfs = all_in_one.volumes / "btrfs.img"
    with open(btrfs, "wb") as f:
        f.truncate(128 * disk_images.MIB)
    subprocess.run(["mkfs.btrfs", "-q", "-f", str(btrfs)], check=True, capture_output=True)
    api = all_in_one.api()
    plan = requests.post(f"{api}/plans", json={"plan": {
        "name": "windows-and-xfs", "provider_id": PROVIDER_ID, "parameters": {},
        "resources": [{"id": v, "type": "OS::Cinder::Volume", "name": v} for v in [*VOLUMES, "btrfs.img"]]}},
        timeout=10)
    assert plan.status_code == 200, plan.text
    created = requests.post(f"{api}/providers/{PROVIDER_ID}/checkpoints",
                            json={"checkpoint": {"plan_id": plan.json()["plan"]["id"]}}, timeout=10)
    assert created.status_code == 200, created.text
    cp = wait_for(f"{api}/providers/{PROVIDER_ID}/checkpoints/{created.json()['checkpoint']['id']}",
                  "checkpoint", {"available", "error"}, timeout=300)
    assert cp["status"] == "available", cp
    volumes_before = sorted(p.name for p in all_in_one.volumes.iterdir())

    for volume, (filesystem, table, _) in VOLUMES.items():
        base, source = _base(api, cp["id"], volume), sources[volume]
        layout = requests.get(f"{base}/volume", timeout=30).json()["volume"]
        assert layout["table"] == table
        assert [(p["number"], p["filesystem"]) for p in layout["partitions"]] == [(1, None), (2, filesystem)]
        top = "/etc" if filesystem == "xfs" else "/Users/alice/Documents"
        listing = requests.get(f"{base}/files", params={"path": top}, timeout=30)
        assert listing.status_code == 200, listing.text
        directory = listing.json()["directory"]
        assert directory["filesystem"] == {"table": table, "partition": 2, "offset": 2 * disk_images.MIB,
                                           "filesystem": filesystem}
        assert {f["name"] for f in directory["files"]} == {p.name for p in (source / top[1:]).iterdir()}
        for rel in (["etc/ld.so.cache", "etc/ssh/ssh_host_ed25519_key", "etc/sparse.db"] if filesystem == "xfs" else
                    ["Users/alice/Documents/report.docx", "Users/alice/Documents/Budget 2026 (final).xlsx",
                     "Résumé ünïcode.txt"]):
            stat = requests.get(f"{base}/files/stat", params={"path": "/" + rel}, timeout=30)
            assert stat.status_code == 200, stat.text
            assert stat.json()["stat"]["file"]["size"] == (source / rel).stat().st_size
            got = requests.get(f"{base}/files/content", params={"path": "/" + rel}, timeout=60)
            assert got.status_code == 200, (volume, rel, got.text[:200])
            assert _sha(got.content) == _sha((source / rel).read_bytes()), (volume, rel)
        missing = requests.get(f"{base}/files", params={"path": f"{top}/nope"}, timeout=30)
        assert missing.status_code == 404 and f"{top}/nope" in missing.text
    xfs = _base(api, cp["id"], "xfs.img")
    assert requests.get(f"{xfs}/files/stat", params={"path": "/etc/ssh/ssh_host_ed25519_key"},
                        timeout=30).json()["stat"]["file"]["mode"] == "0600"
    link = requests.get(f"{xfs}/files/stat", params={"path": "/etc/localtime"}, timeout=30).json()["stat"]["file"]
    assert link["type"] == "symlink" and link["target"] == "/usr/share/zoneinfo/UTC"

    # a file-level restore of a Windows tree: the tar stream of /Users holds every file byte for byte
    archive = requests.get(f"{_base(api, cp['id'], 'ntfs.img')}/files/archive", params={"path": "/Users"},
                           timeout=60)
    assert archive.status_code == 200, archive.text[:200]
    out = tmp_path / "restored"
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        tar.extractall(out, filter="tar")
    users = sources["ntfs.img"] / "Users"
    for path in users.rglob("*"):
        restored = out / path.relative_to(sources["ntfs.img"])
        assert restored.is_dir() if path.is_dir() else _sha(restored.read_bytes()) == _sha(path.read_bytes()), path
    assert {p.relative_to(out) for p in out.rglob("*")} == {p.relative_to(sources["ntfs.img"])
                                                            for p in users.rglob("*")} | {Path("Users")}

    refused = requests.get(f"{_base(api, cp['id'], 'btrfs.img')}/files", params={"path": "/"}, timeout=30)
    assert refused.status_code == 400 and "the volume: btrfs superblock, not readable here" in refused.text
    # nothing was restored as a volume
    assert sorted(p.name for p in all_in_one.volumes.iterdir()) == volumes_before
