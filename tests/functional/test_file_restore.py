"""Issue 16, done-when 1: files out of a checkpoint of an ext4 VM image with a GPT table, through the REST API
and the CLI of the real all-in-one, without restoring the volume (the image is built without root mounts)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
import urllib.parse
from pathlib import Path

import pytest
import requests

from strongroom.testing import disk_images
from tests.functional.harness import PROVIDER_ID, AllInOne, wait_for
from tests.functional.test_embedded_cli import cli

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(bool(disk_images.tools_missing()),
                                 reason=f"needs {disk_images.tools_missing()} (make system-packages)")]
KEY = urllib.parse.quote("OS::Cinder::Volume#vm.img", safe=":")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _protect(api: str, volume: str) -> str:
    plan = requests.post(f"{api}/plans", json={"plan": {
        "name": f"vm-{volume}", "provider_id": PROVIDER_ID, "parameters": {},
        "resources": [{"id": volume, "type": "OS::Cinder::Volume", "name": volume}]}}, timeout=10)
    assert plan.status_code == 200, plan.text
    created = requests.post(f"{api}/providers/{PROVIDER_ID}/checkpoints",
                            json={"checkpoint": {"plan_id": plan.json()["plan"]["id"]}}, timeout=10)
    assert created.status_code == 200, created.text
    cp = wait_for(f"{api}/providers/{PROVIDER_ID}/checkpoints/{created.json()['checkpoint']['id']}",
                  "checkpoint", {"available", "error"})
    assert cp["status"] == "available", cp
    return str(cp["id"])


def test_browse_download_restore_and_diff_files_of_a_vm_image(all_in_one: AllInOne, tmp_path: Path) -> None:
    source = tmp_path / "src"
    disk_images.populate_etc(source)
    image = all_in_one.volumes / "vm.img"
    disk_images.make_gpt_disk(image, source)
    image_sha = _sha(image.read_bytes())
    api = all_in_one.api()
    cp = _protect(api, "vm.img")
    base = f"{api}/providers/{PROVIDER_ID}/checkpoints/{cp}/resources/{KEY}"
    volumes_before = sorted(p.name for p in all_in_one.volumes.iterdir())

    layout = requests.get(f"{base}/volume", timeout=30).json()["volume"]
    assert layout["table"] == "gpt"
    assert [(p["number"], p["filesystem"]) for p in layout["partitions"]] == [(1, None), (2, "ext4")]

    listing = requests.get(f"{base}/files", params={"path": "/etc"}, timeout=30)
    assert listing.status_code == 200, listing.text
    directory = listing.json()["directory"]
    assert directory["filesystem"] == {"table": "gpt", "partition": 2, "offset": 2 * 1024 * 1024,
                                       "filesystem": "ext4"}
    entries = {f["name"]: f for f in directory["files"]}
    assert set(entries) == {p.name for p in (source / "etc").iterdir()}
    assert entries["ssh"]["type"] == "directory"
    assert entries["localtime"] == {**entries["localtime"], "type": "symlink", "target": "/usr/share/zoneinfo/UTC"}
    assert entries["passwd"]["size"] == (source / "etc/passwd").stat().st_size

    stat = requests.get(f"{base}/files/stat", params={"path": "/etc/ssh/ssh_host_ed25519_key"}, timeout=30)
    assert stat.json()["stat"]["file"]["mode"] == "0600"

    got = requests.get(f"{base}/files/content", params={"path": "/etc/ld.so.cache"}, timeout=60)
    assert got.status_code == 200 and got.headers["Content-Type"] == "application/octet-stream"
    assert "ld.so.cache" in got.headers["Content-Disposition"]
    assert _sha(got.content) == _sha((source / "etc/ld.so.cache").read_bytes())

    archive = requests.get(f"{base}/files/archive", params={"path": "/etc"}, timeout=60)
    assert archive.status_code == 200, archive.text
    out = tmp_path / "restored"
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        tar.extractall(out, filter="tar")
    for path in (source / "etc").rglob("*"):
        restored = out / path.relative_to(source)
        if path.is_symlink():
            assert os.readlink(restored) == os.readlink(path), path
        elif path.is_file():
            assert _sha(restored.read_bytes()) == _sha(path.read_bytes()), path
            assert restored.stat().st_mode & 0o7777 == path.stat().st_mode & 0o7777, path
        else:
            assert restored.is_dir(), path
    # nothing was restored as a volume, and the source is untouched
    assert sorted(p.name for p in all_in_one.volumes.iterdir()) == volumes_before
    assert _sha(image.read_bytes()) == image_sha

    # clear 4xx naming the thing
    missing = requests.get(f"{base}/files", params={"path": "/etc/nope"}, timeout=30)
    assert missing.status_code == 404 and "/etc/nope" in missing.text
    assert requests.get(f"{base}/files", params={"path": "etc"}, timeout=30).status_code == 400
    unreadable = requests.get(f"{base}/files", params={"path": "/", "partition": "1"}, timeout=30)
    assert unreadable.status_code == 400 and "partition 1: no filesystem signature" in unreadable.text
    other = requests.get(f"{all_in_one.api('other')}/providers/{PROVIDER_ID}/checkpoints/{cp}/resources/{KEY}"
                         "/files", params={"path": "/etc"}, timeout=30)
    assert other.status_code == 404  # another project's checkpoint does not exist for it

    # the same through the CLI
    ls = cli(all_in_one, "checkpoint", "ls", PROVIDER_ID, cp, "/etc/ssh").stdout
    assert "sshd_config" in ls and "ssh_host_ed25519_key" in ls
    cat = subprocess.run([*_cli_args(all_in_one), "checkpoint", "cat", PROVIDER_ID, cp, "/etc/passwd"],
                         capture_output=True, env=_cli_env(all_in_one), timeout=120)
    assert cat.returncode == 0, cat.stderr
    assert cat.stdout == (source / "etc/passwd").read_bytes()
    target = tmp_path / "cli-restore"
    cli(all_in_one, "restore", "create", PROVIDER_ID, cp, "--path", "/etc/ssh", "--path", "/etc/hostname",
        "--target-dir", str(target))
    assert (target / "etc/hostname").read_bytes() == (source / "etc/hostname").read_bytes()
    assert _sha((target / "etc/ssh/ssh_host_ed25519_key").read_bytes()) == \
        _sha((source / "etc/ssh/ssh_host_ed25519_key").read_bytes())
    got_file = tmp_path / "got-cache"
    cli(all_in_one, "checkpoint", "get", PROVIDER_ID, cp, "/etc/ld.so.cache", "-o", str(got_file))
    assert _sha(got_file.read_bytes()) == _sha((source / "etc/ld.so.cache").read_bytes())

    # a restore run whose parameters name paths: a new volume holding a tar stream of them
    restore = requests.post(f"{api}/restores", json={"restore": {
        "provider_id": PROVIDER_ID, "checkpoint_id": cp, "restore_target": None,
        "parameters": {"OS::Cinder::Volume": {"paths": ["/etc/ssh", "/etc/default"],
                                              "restore_name": "etc-files.tar"}}}}, timeout=30)
    assert restore.status_code == 200, restore.text
    run = wait_for(f"{api}/restores/{restore.json()['restore']['id']}", "restore", {"success", "fail"})
    assert run["status"] == "success", run
    with tarfile.open(all_in_one.volumes / "etc-files.tar") as tar:
        names = set(tar.getnames())
        assert {"etc/ssh/sshd_config", "etc/default/grub.d/50-cloud.cfg"} <= names
        assert not any(n.startswith("etc/passwd") for n in names)
        key_file = tar.extractfile("etc/ssh/ssh_host_ed25519_key")
        assert key_file is not None
        assert _sha(key_file.read()) == _sha((source / "etc/ssh/ssh_host_ed25519_key").read_bytes())
    refused = requests.post(f"{api}/restores", json={"restore": {
        "provider_id": PROVIDER_ID, "checkpoint_id": cp, "restore_target": None,
        "parameters": {"OS::Cinder::Volume": {"paths": ["/etc/missing"]}}}}, timeout=30)
    assert refused.status_code == 404 and "/etc/missing" in refused.text, refused.text

    # a second checkpoint after a change: the diff names the changed ranges and files
    (source / "etc/hostname").write_text("renamed\n")
    (source / "etc/new.conf").write_text("new\n")
    image.unlink()
    disk_images.make_gpt_disk(image, source)
    cp2 = _protect(api, "vm.img")
    diff = requests.get(f"{base}/diff", params={"to": cp2, "path": "/etc"}, timeout=60)
    assert diff.status_code == 200, diff.text
    body = diff.json()["diff"]
    assert body["changed_bytes"] > 0 and body["changed_ranges"]
    assert [f["path"] for f in body["files"]["added"]] == ["/etc/new.conf"]
    assert "/etc/hostname" in [f["path"] for f in body["files"]["modified"]]
    shown = cli(all_in_one, "checkpoint", "diff", PROVIDER_ID, cp, cp2, "--path", "/etc").stdout
    assert "/etc/new.conf" in shown and "/etc/hostname" in shown


def _cli_env(service: AllInOne) -> dict[str, str]:
    env = dict(os.environ, STRONGROOM_URL=service.url, OS_PROJECT_ID="demo",
               STRONGROOM_STATE_DIR=str(service.state_dir))
    env.pop("OS_AUTH_TOKEN", None)
    return env


def _cli_args(service: AllInOne) -> list[str]:
    from tests.functional.test_embedded_cli import CLI

    return [CLI]


def test_a_directory_of_2000_entries_lists_every_name(all_in_one: AllInOne, tmp_path: Path) -> None:
    """Its blocks spread between the files' data, as in a directory that grew over time: the listing that
    took minutes (each entry re-read the whole directory) is timed in benchmarks/bench_listing.py."""
    source = tmp_path / "src"
    big = source / "srv" / "big"
    big.mkdir(parents=True)
    for i in range(2000):
        (big / f"upload-{i:05d}.bin").write_bytes(bytes([i % 251]) * (i % 7 * 1000))
    disk_images.make_gpt_disk(all_in_one.volumes / "big.img", source)
    cp = _protect(all_in_one.api(), "big.img")
    key = urllib.parse.quote("OS::Cinder::Volume#big.img", safe=":")
    base = f"{all_in_one.api()}/providers/{PROVIDER_ID}/checkpoints/{cp}/resources/{key}"
    listing = requests.get(f"{base}/files", params={"path": "/srv/big"}, timeout=120)
    assert listing.status_code == 200, listing.text
    files = listing.json()["directory"]["files"]
    assert [f["name"] for f in files] == sorted(p.name for p in big.iterdir())
    assert {f["name"]: f["size"] for f in files} == {p.name: p.stat().st_size for p in big.iterdir()}
    one = requests.get(f"{base}/files/content", params={"path": "/srv/big/upload-01999.bin"}, timeout=60)
    assert one.status_code == 200 and one.content == (big / "upload-01999.bin").read_bytes()
