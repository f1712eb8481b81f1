"""Done-when 1: the README's tour through the ``strongroom`` CLI against the real all-in-one."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.functional.harness import PROVIDER_ID, AllInOne, write_mixed_image

pytestmark = pytest.mark.functional
CLI = str(Path(sys.executable).parent / "strongroom")


def cli(service: AllInOne, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, STRONGROOM_URL=service.url, OS_PROJECT_ID="demo",
               STRONGROOM_STATE_DIR=str(service.state_dir))
    env.pop("OS_AUTH_TOKEN", None)  # as in the README: the CLI finds the administrator token itself
    result = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=180)
    if check:
        assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def cli_json(service: AllInOne, *args: str) -> dict:
    return json.loads(cli(service, "-f", "json", *args).stdout)


def test_readme_tour(all_in_one: AllInOne) -> None:
    image = all_in_one.volumes / "disk.img"
    write_mixed_image(image)

    providers = cli(all_in_one, "provider", "list").stdout
    assert PROVIDER_ID in providers and "Local" in providers
    assert "disk.img" in cli(all_in_one, "protectable", "instances", "OS::Cinder::Volume").stdout

    # The README's lines: the id by "-f value -c id" after the sub-command, no Python to pull it out.
    plan_id = cli(all_in_one, "plan", "create", "tour", PROVIDER_ID, "--resource", "OS::Cinder::Volume=disk.img",
                  "-f", "value", "-c", "id").stdout.strip()
    plan = cli_json(all_in_one, "plan", "show", plan_id)
    created = cli(all_in_one, "checkpoint", "create", PROVIDER_ID, plan["id"], "--wait", "-f", "value", "-c", "id")
    checkpoint = cli_json(all_in_one, "checkpoint", "show", PROVIDER_ID, created.stdout.strip())
    assert checkpoint["status"] == "available"
    assert "24.0/24.0 MiB 100.0%" in created.stderr and "ETA" in created.stderr  # every byte counted

    restore = cli_json(all_in_one, "restore", "create", PROVIDER_ID, checkpoint["id"],
                       "--restore-name", "restored.img", "--wait")
    assert restore["status"] == "success"
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (image, all_in_one.volumes / "restored.img")]
    assert digest[0] == digest[1]

    verification = cli_json(all_in_one, "verification", "create", PROVIDER_ID, checkpoint["id"], "--wait")
    assert verification["status"] == "success"

    cli(all_in_one, "checkpoint", "delete", PROVIDER_ID, checkpoint["id"], "--wait")
    shown = cli_json(all_in_one, "checkpoint", "show", PROVIDER_ID, checkpoint["id"])
    assert shown["status"] == "deleted"
    assert not [p for p in all_in_one.bank.rglob("*") if p.is_file() and "/chunks/" in str(p)]

    logs = cli_json(all_in_one, "operationlog", "list")
    assert {log["operation_type"] for log in logs} >= {"protect", "restore", "verify", "delete"}
    assert "strongroom-protection" in cli(all_in_one, "service", "list").stdout  # admin only, no token typed

    # The README's scheduling lines.
    trigger_id = cli(all_in_one, "trigger", "create", "nightly", "--pattern", "0 2 * * *",
                     "-f", "value", "-c", "id").stdout.strip()
    op_id = cli(all_in_one, "scheduledoperation", "create", "nightly, keep 7", "retention_protect", trigger_id,
                "--provider-id", PROVIDER_ID, "--plan-id", plan["id"], "--max-backups", "7",
                "-f", "value", "-c", "id").stdout.strip()
    op = cli_json(all_in_one, "scheduledoperation", "show", op_id)
    assert op["enabled"] is True and op["operation_definition"]["max_backups"] == 7
    assert "expect_start_time" in cli(all_in_one, "scheduledoperation", "logs", op["id"]).stdout

    # The README's OpenStackClient line: the plan by name, the embedded service without Keystone.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    osc = subprocess.run([str(Path(sys.executable).parent / "openstack"), "--os-auth-type", "none", "--os-endpoint",
                          all_in_one.url, "--os-data-protection-project", "demo", "data", "protection", "checkpoint",
                          "list", "Local", "--plan", "tour", "-f", "value", "-c", "id", "-c", "status"],
                         capture_output=True, text=True, env=env, timeout=180)
    assert osc.returncode == 0, osc.stderr
    assert osc.stdout.split() in ([], [checkpoint["id"], "deleted"])  # deleted: listed or hidden


def test_checkpoint_show_by_names_draws_each_resource_with_its_size_and_duration(all_in_one: AllInOne) -> None:
    write_mixed_image(all_in_one.volumes / "named.img")  # 24 MiB
    cli(all_in_one, "plan", "create", "by-name", "Local", "--resource", "OS::Cinder::Volume=named.img")
    created = cli(all_in_one, "checkpoint", "create", "Local", "by-name", "--wait").stdout
    tree_line = (r"\| resource_graph +\| OS::Cinder::Volume +named\.img +available +size 24\.0 MiB +"
                 r"stored [0-9.]+ (B|KiB|MiB) +took [0-9.]+ s")
    assert re.search(tree_line, created), created  # --wait ends with the same table as show
    found = re.search(r"^\| id +\| ([0-9a-f-]{36}) +\|$", created, re.MULTILINE)
    assert found, created
    checkpoint_id = found.group(1)
    table = cli(all_in_one, "checkpoint", "show", "Local", checkpoint_id).stdout
    assert re.search(tree_line, table), table
    assert re.search(r"\| resources +\| 1 resource, size 24\.0 MiB, stored [0-9.]+ (B|KiB|MiB), took", table), table
    shown = cli_json(all_in_one, "checkpoint", "show", "Local", checkpoint_id)
    [resource] = shown["resources"]
    assert (resource["id"], resource["depth"], resource["status"], resource["size_bytes"]) == (
        "named.img", 0, "available", 24 * 1024 * 1024)
    assert 0 < resource["stored_bytes"] < 24 * 1024 * 1024 and resource["seconds"] > 0
    protected = shown["extra_info"]["protected"]["OS::Cinder::Volume#named.img"]
    assert protected["bytes_stored"] == resource["stored_bytes"] and protected["seconds"] == resource["seconds"]
    listed = cli_json(all_in_one, "checkpoint", "list", "Local", "--plan-id", "by-name")
    assert [c["id"] for c in listed] == [checkpoint_id]


def test_cli_reports_errors_with_non_zero_exit(all_in_one: AllInOne) -> None:
    result = cli(all_in_one, "checkpoint", "show", PROVIDER_ID, "no-such-checkpoint", check=False)
    assert result.returncode != 0
    assert "no-such-checkpoint" in result.stderr
