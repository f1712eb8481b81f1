"""Done-when 3: ``openstack data protection ...`` (Strongroom's OpenStackClient plugin) run as a real
``openstack`` process against the embedded all-in-one (``--os-auth-type none``) and against an all-in-one
behind a real Keystone (password auth from ``OS_*`` variables and from ``clouds.yaml``; the endpoint from
Keystone's catalogue)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.functional.harness import PROVIDER_ID, AllInOne, keystone_all_in_one, write_mixed_image
from tests.servers.keystone import KeystoneServer

pytestmark = pytest.mark.functional
OPENSTACK = str(Path(sys.executable).parent / "openstack")
VOLUME = "OS::Cinder::Volume"


def openstack(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    result = subprocess.run([OPENSTACK, *args], capture_output=True, text=True, env={**clean, **env}, timeout=180)
    if check:
        assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def as_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(openstack(env, *args, "-f", "json").stdout)


def test_embedded_plan_create_checkpoint_list(all_in_one: AllInOne) -> None:
    write_mixed_image(all_in_one.volumes / "disk.img", size=4 * 1024 * 1024)
    noauth = ["--os-auth-type", "none", "--os-endpoint", all_in_one.url]
    env = {"OS_DATA_PROTECTION_PROJECT": "demo", "STRONGROOM_STATE_DIR": str(all_in_one.state_dir)}

    # The provider by name, the resource in Karbor's id=type=name shape.
    plan = as_json(env, *noauth, "data", "protection", "plan", "create", "osc-tour", "Local",
                   f"disk.img={VOLUME}=disk.img")
    assert (plan["provider_id"], plan["project_id"]) == (PROVIDER_ID, "demo")
    assert [(r["id"], r["type"]) for r in plan["resources"]] == [("disk.img", VOLUME)]

    # The plan by name; --wait draws bytes, rate and ETA on stderr.
    created = openstack(env, *noauth, "data", "protection", "checkpoint", "create", PROVIDER_ID, "osc-tour",
                        "--wait", "-f", "value", "-c", "id", "-c", "status")
    checkpoint_id, status = created.stdout.split()
    assert status == "available"
    assert re.search(r"([0-9.]+)/\1 MiB 100\.0% +[0-9.]+ MiB/s  ETA  0:00:00  available", created.stderr), \
        created.stderr

    # show: the resource graph as a tree in the table, the figures themselves in -f json.
    shown = as_json(env, *noauth, "data", "protection", "checkpoint", "show", "Local", checkpoint_id)
    [resource] = shown["resources"]
    size = (all_in_one.volumes / "disk.img").stat().st_size
    assert (resource["id"], resource["status"], resource["size_bytes"]) == ("disk.img", "available", size)
    assert resource["stored_bytes"] > 0 and resource["seconds"] > 0
    assert json.loads(shown["resource_graph"])[0]["0x0"][:2] == [VOLUME, "disk.img"]  # Karbor's text
    table = openstack(env, *noauth, "data", "protection", "checkpoint", "show", "Local", checkpoint_id).stdout
    assert re.search(rf"\| resource_graph +\| OS::Cinder::Volume +disk\.img +available +size {size / 2**20:.1f} MiB +"
                     r"stored [0-9.]+ (B|KiB|MiB) +took [0-9.]+ s", table), table

    # The endpoint from OS_DATA_PROTECTION_URL instead of --os-endpoint.
    listed = openstack({**env, "OS_DATA_PROTECTION_URL": all_in_one.url}, "--os-auth-type", "none",
                       "data", "protection", "checkpoint", "list", "Local", "--plan", "osc-tour",
                       "-f", "value", "-c", "id")
    assert listed.stdout.split() == [checkpoint_id]
    table = openstack(env, *noauth, "data", "protection", "checkpoint", "list", PROVIDER_ID).stdout
    assert checkpoint_id in table and "osc-tour" in table

    # Two plans of one name: the name is refused, naming both ids.
    other = as_json(env, *noauth, "data", "protection", "plan", "create", "osc-tour", PROVIDER_ID,
                    f"disk.img={VOLUME}")
    ambiguous = openstack(env, *noauth, "data", "protection", "plan", "show", "osc-tour", check=False)
    assert ambiguous.returncode == 1
    assert plan["id"] in ambiguous.stderr and other["id"] in ambiguous.stderr and "Traceback" not in ambiguous.stderr
    missing = openstack(env, *noauth, "data", "protection", "plan", "show", "no-such-plan", check=False)
    assert missing.returncode == 1 and "no-such-plan" in missing.stderr

    # An API error: the server's message and request id, exit code 1.
    bad = openstack(env, *noauth, "data", "protection", "checkpoint", "show", PROVIDER_ID, "no-such-cp", check=False)
    assert bad.returncode == 1 and "HTTP 404" in bad.stderr and "req-" in bad.stderr


@pytest.fixture(scope="module")
def keystone_aio(keystone_server: KeystoneServer, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[tuple[KeystoneServer, AllInOne]]:
    ks = keystone_server
    root = tmp_path_factory.mktemp("osc-keystone")
    service = keystone_all_in_one(ks, root)
    service.start()
    try:
        # Karbor's catalogue entry: the project in the URL (the plugin drops the /v1/<project> tail).
        ks.register_endpoint("data-protection", f"{service.url}/v1/$(project_id)s", name="strongroom")
        yield ks, service
    finally:
        if service.process is not None and service.process.poll() is None:
            service.stop()


@pytest.mark.slow
def test_keystone_password_auth_endpoint_from_catalogue(keystone_aio: tuple[KeystoneServer, AllInOne],
                                                        tmp_path: Path) -> None:
    ks, _service = keystone_aio
    account = ks.account("osc-a", "member")
    env = {"OS_AUTH_URL": ks.url, "OS_IDENTITY_API_VERSION": "3", "OS_AUTH_TYPE": "password",
           "OS_USERNAME": account.username, "OS_PASSWORD": account.password, "OS_PROJECT_NAME": account.project,
           "OS_USER_DOMAIN_ID": "default", "OS_PROJECT_DOMAIN_ID": "default", "OS_REGION_NAME": "RegionOne",
           "OS_INTERFACE": "public"}
    plan = as_json(env, "data", "protection", "plan", "create", "ks-plan", PROVIDER_ID, f"disk.img={VOLUME}=disk")
    assert plan["project_id"] == account.project_id and plan["name"] == "ks-plan"
    assert openstack(env, "data", "protection", "plan", "list", "-f", "value", "-c", "name").stdout == "ks-plan\n"
    assert openstack(env, "data", "protection", "checkpoint", "list", PROVIDER_ID, "-f", "value",
                     "-c", "id").stdout == ""
    assert "password" not in openstack(env, "data", "protection", "plan", "show", "ks-plan").stdout

    # The same account from clouds.yaml (--os-cloud), no OS_* variables.
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(json.dumps({"clouds": {"strongroom-test": {
        "auth": {"auth_url": ks.url, "username": account.username, "password": account.password,
                 "project_name": account.project, "user_domain_id": "default", "project_domain_id": "default"},
        "region_name": "RegionOne", "identity_api_version": 3}}}))
    cloud_env = {"OS_CLIENT_CONFIG_FILE": str(clouds)}
    listed = as_json(cloud_env, "--os-cloud", "strongroom-test", "data", "protection", "plan", "list")
    assert [p["id"] for p in listed] == [plan["id"]]

    # A token alone: scoped through Keystone (token), or sent as it is to a given endpoint (admin_token).
    token = ks.token(account)
    by_token = openstack({"OS_AUTH_URL": ks.url, "OS_IDENTITY_API_VERSION": "3"}, "--os-auth-type", "token",
                         "--os-token", token, "--os-project-id", account.project_id,
                         "data", "protection", "plan", "list", "-f", "value", "-c", "id")
    assert by_token.stdout.split() == [plan["id"]]
    by_admin_token = openstack({}, "--os-auth-type", "admin_token", "--os-token", token, "--os-endpoint",
                               f"{_service.url}/v1/{account.project_id}", "data", "protection", "plan", "show",
                               "ks-plan", "-f", "value", "-c", "id")
    assert by_admin_token.stdout.split() == [plan["id"]]

    # A wrong password: Keystone's 401, no traceback, the password nowhere.
    wrong = openstack({**env, "OS_PASSWORD": "not-the-password"}, "data", "protection", "plan", "list", check=False)
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr and "not-the-password" not in wrong.stderr


def test_ctrl_c_during_wait_prints_the_checkpoint_id_and_exits_130(all_in_one: AllInOne) -> None:
    write_mixed_image(all_in_one.volumes / "big.img", size=96 * 1024 * 1024)
    noauth = ["--os-auth-type", "none", "--os-endpoint", all_in_one.url, "--os-data-protection-project", "demo"]
    openstack({}, *noauth, "data", "protection", "plan", "create", "big", PROVIDER_ID, f"big.img={VOLUME}")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    proc = subprocess.Popen([OPENSTACK, *noauth, "data", "protection", "checkpoint", "create", PROVIDER_ID, "big",
                             "--wait", "--poll-interval", "0.2", "-f", "value", "-c", "id"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean)
    assert proc.stderr is not None and proc.stdout is not None
    seen = b""
    while b"\r" not in seen:  # the first progress line: the checkpoint exists and is being waited for
        byte = proc.stderr.read(1)
        assert byte, f"openstack ended before drawing progress: {seen!r}"
        seen += byte
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    [cp_id] = out.decode().split()
    assert f"interrupted: {cp_id} carries on in the service" in err.decode() and b"Traceback" not in err
    shown = as_json({}, *noauth, "data", "protection", "checkpoint", "show", PROVIDER_ID, cp_id)
    assert shown["status"] in {"protecting", "available"}  # the checkpoint went on without the command
