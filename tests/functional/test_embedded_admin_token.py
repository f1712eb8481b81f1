"""The all-in-one's administrator token: random, generated at the first start into the state directory
(0600), reused by later starts, refused when it is the old literal ``admin``, and sent by the CLI on its own."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.functional.harness import AllInOne

pytestmark = pytest.mark.functional
CLI = str(Path(sys.executable).parent / "strongroom")


def _services(service: AllInOne, token: str | None) -> int:
    headers = {"X-Auth-Token": token} if token is not None else {}
    return requests.get(f"{service.api()}/os-services", headers=headers, timeout=10).status_code


def test_generated_token_is_private_reused_and_the_literal_admin_is_refused(all_in_one: AllInOne) -> None:
    token_file = all_in_one.state_dir / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = all_in_one.admin_token
    assert len(token) >= 32 and token != "admin"
    assert any(str(token_file) in line for line in all_in_one.output), "start-up names where the token is"
    assert not any(token in line for line in all_in_one.output), "the token itself is never printed"

    assert _services(all_in_one, "admin") == 403
    assert _services(all_in_one, None) == 403
    assert _services(all_in_one, token) == 200

    # The CLI, given no token, reads the file of the state directory (it talks to a loopback URL).
    env = {k: v for k, v in os.environ.items() if k != "OS_AUTH_TOKEN"}
    env.update(STRONGROOM_URL=all_in_one.url, OS_PROJECT_ID="demo", STRONGROOM_STATE_DIR=str(all_in_one.state_dir))
    listed = subprocess.run([CLI, "service", "list"], capture_output=True, text=True, env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "strongroom-protection" in listed.stdout

    all_in_one.stop()
    all_in_one.start()
    assert all_in_one.admin_token == token  # a restart keeps it
    assert _services(all_in_one, token) == 200
