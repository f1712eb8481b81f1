"""Done-when 4: ``strongroom usage`` matches what the bank holds, checked against a walk of the bank.

The real all-in-one (encryption on, its default; and once more writing its bank in the clear) protects one
volume twice (the second protect shares most of the first's chunks), then deletes the first checkpoint.
After each step the CLI's figures must equal what a walk of the bank's objects finds: the chunk objects of
the project and their sizes, the objects under the project's checkpoints and theirs, the checkpoint indices.
The walk reads the bank through its plugin only (keys and sizes), never the manifests the usage code reads.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from strongroom.bank_plugins.fs import FilesystemBank
from tests.functional.harness import PROVIDER_ID, AllInOne, MiB, running_all_in_one, write_mixed_image
from tests.functional.test_embedded_cli import cli, cli_json

pytestmark = pytest.mark.functional


def walk(bank_dir: Path, project: str, checkpoint_ids: set[str]) -> dict[str, int]:
    """The project's objects in the bank, found by listing it: what ``usage`` must report."""
    bank = FilesystemBank({"path": str(bank_dir)})
    chunk_keys = list(bank.iter_objects(f"projects/{project}/chunks/"))
    keys = list(bank.iter_objects("checkpoints/"))
    ours = [k for k in keys if k.split("/")[1] in checkpoint_ids]
    return {
        "chunk_objects": len(chunk_keys),
        "all_chunk_bytes": sum(bank.head_object(k).size for k in chunk_keys),
        "checkpoint_bytes": sum(bank.head_object(k).size for k in ours),
        "indices": len([k for k in ours if k.endswith("/index.json")]),
    }


def usage(service: AllInOne) -> dict:
    rows = cli_json(service, "usage")
    assert [row["provider_id"] for row in rows] == [PROVIDER_ID], rows
    assert rows[0]["project_id"] == "demo"
    return rows[0]


def assert_matches_bank(service: AllInOne, shown: dict, checkpoint_ids: set[str]) -> dict[str, int]:
    found = walk(service.bank, "demo", checkpoint_ids)
    # Every chunk left is referenced by an available checkpoint (the delete swept the others).
    assert shown["unreferenced_chunk_bytes"] == 0, shown
    assert shown["chunk_bytes"] == found["all_chunk_bytes"] > 0, (shown, found)
    assert shown["checkpoint_bytes"] == found["checkpoint_bytes"] > 0, (shown, found)
    assert shown["stored_bytes"] == found["all_chunk_bytes"] + found["checkpoint_bytes"]
    assert sum(shown["checkpoints"].values()) == found["indices"], (shown, found)
    return found


@pytest.fixture(params=["sealed", "clear"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[AllInOne, bool]]:
    """The all-in-one as shipped (encryption on), or with its provider writing the bank in the clear."""
    if request.param == "sealed":
        with running_all_in_one(tmp_path) as running:
            yield running, True
        return
    providers = tmp_path / "providers.d"
    providers.mkdir()
    shipped = (Path(__file__).parents[2] / "providers.d" / "local.conf").read_text()
    (providers / "local.conf").write_text(shipped.replace("enabled = true\n", "enabled = true\nencryption = none\n"))
    with running_all_in_one(tmp_path, extra=f"providers_dir = {providers}\n") as running:
        yield running, False


def test_usage_matches_a_walk_of_the_bank(service: tuple[AllInOne, bool]) -> None:
    all_in_one, sealed = service
    image = all_in_one.volumes / "disk.img"
    write_mixed_image(image)
    plan = cli_json(all_in_one, "plan", "create", "usage", PROVIDER_ID, "--resource", "OS::Cinder::Volume=disk.img")

    empty = usage(all_in_one)
    assert empty["stored_bytes"] == 0 and empty["checkpoints"] == {} and empty["logical_bytes"] == 0

    first = json.loads(cli(all_in_one, "-f", "json", "checkpoint", "create", PROVIDER_ID, plan["id"],
                           "--wait").stdout)
    assert ("encryption" in first["extra_info"]) is sealed, first["extra_info"]
    one = usage(all_in_one)
    found_one = assert_matches_bank(all_in_one, one, {first["id"]})
    assert one["checkpoints"] == {"available": 1}
    assert one["logical_bytes"] == 24 * MiB
    assert one["compression_ratio"] > 1.2, one  # the text compresses (sealed or not)

    # Change 1 MiB in the middle of the random data: the second checkpoint shares every other chunk.
    with open(image, "r+b") as fh:
        fh.seek(2 * MiB)
        fh.write(random.Random(11).randbytes(MiB))
    second = json.loads(cli(all_in_one, "-f", "json", "checkpoint", "create", PROVIDER_ID, plan["id"],
                            "--wait").stdout)
    two = usage(all_in_one)
    found_two = assert_matches_bank(all_in_one, two, {first["id"], second["id"]})
    assert two["checkpoints"] == {"available": 2}
    assert two["logical_bytes"] == 48 * MiB
    assert two["referenced_bytes"] == 2 * one["referenced_bytes"]
    assert two["dedup_ratio"] > 1.8 * one["dedup_ratio"], two  # 4 new chunks of 1 MiB beside the shared ones
    assert 0 < found_two["all_chunk_bytes"] - found_one["all_chunk_bytes"] < 2 * MiB

    cli(all_in_one, "checkpoint", "delete", PROVIDER_ID, first["id"], "--wait")
    after = usage(all_in_one)
    found_after = assert_matches_bank(all_in_one, after, {first["id"], second["id"]})
    assert after["checkpoints"].get("available") == 1
    assert after["logical_bytes"] == 24 * MiB
    assert after["dedup_ratio"] == pytest.approx(one["dedup_ratio"])
    assert found_after["all_chunk_bytes"] < found_two["all_chunk_bytes"]  # the first's own chunks are gone

    # Per provider: the one provider answers the same; an unknown one is a 404 naming it.
    assert cli_json(all_in_one, "usage", "--provider-id", PROVIDER_ID)[0]["stored_bytes"] == after["stored_bytes"]
    missing = cli(all_in_one, "usage", "--provider-id", "no-such-provider", check=False)
    assert missing.returncode != 0 and "no-such-provider" in missing.stderr


def test_pools_show_the_loopback_directorys_capacity_to_admins(all_in_one: AllInOne) -> None:
    (pool,) = cli_json(all_in_one, "pool", "list")  # the all-in-one's CLI acts with its admin token
    vfs = os.statvfs(all_in_one.volumes)
    assert pool["provider_id"] == PROVIDER_ID and pool["driver"] == "loopback" and pool["error"] is None
    assert pool["name"] == f"loopback#{pool['pool']}"
    assert pool["total_bytes"] == vfs.f_blocks * vfs.f_frsize
    assert abs(pool["free_bytes"] - vfs.f_bavail * vfs.f_frsize) < 64 * MiB  # other sessions write meanwhile
    member = requests.get(f"{all_in_one.api()}/pools", timeout=30)  # no token: the project's member
    assert member.status_code == 403 and "pool:get_all" in member.text, member.text
