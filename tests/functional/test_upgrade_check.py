"""``strongroom-status upgrade check``, run as the installed console script against a configuration file.

Each check is shown passing on a healthy deployment (an sqlite store at head, the shipped local provider, its
filesystem bank, no policy file: exit 0) and failing as an operator would break it: the store a migration
behind, a provider file with a typo'd option, a bank that does not answer, a policy file with unknown,
deprecated or undefined rules.  The exit code is oslo.upgradecheck's: 0 success, 1 warning, 2 failure.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from strongroom.db import migration

pytestmark = pytest.mark.functional
STATUS = str(Path(sys.executable).parent / "strongroom-status")
LOCAL = (Path(__file__).parents[2] / "providers.d" / "local.conf").read_text()


class Deployment:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.providers = root / "providers.d"
        (self.state / "volumes").mkdir(parents=True)
        self.providers.mkdir()
        (self.providers / "local.conf").write_text(LOCAL)
        self.db_url = f"sqlite:///{root / 'strongroom.sqlite'}"
        self.extra = ""

    def sync(self, revision: str = "head") -> None:
        engine = sa.create_engine(self.db_url)
        try:
            migration.upgrade(engine, revision)
        finally:
            engine.dispose()

    def check(self) -> tuple[int, dict[str, tuple[int, str]]]:
        conf = self.root / "strongroom.conf"
        conf.write_text(f"[DEFAULT]\nstate_dir = {self.state}\nproviders_dir = {self.providers}\n"
                        f"[database]\nconnection = {self.db_url}\n{self.extra}")
        done = subprocess.run([STATUS, "--config-file", str(conf), "upgrade", "check", "--json"],
                              capture_output=True, text=True, timeout=120)
        report = json.loads(done.stdout)
        return done.returncode, {c["check"]: (c["result"], c["details"]) for c in report["checks"]}


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    made = Deployment(tmp_path)
    made.sync()
    return made


def test_a_healthy_deployment_passes_every_check(deployment: Deployment) -> None:
    code, checks = deployment.check()
    assert code == 0, checks
    assert list(checks) == ["Database schema", "Provider files", "Banks reachable", "Policy file"]
    assert all(result == 0 for result, _ in checks.values()), checks
    assert checks["Database schema"][1] == f"the database schema is at head {migration.head()}"
    assert "Local (7b1c6a4e-2f0d-4c8e-9a51-3e2d8f6b0c11)" in checks["Provider files"][1]
    assert "bank 'fs' of provider 'Local'" in checks["Banks reachable"][1]


def test_a_schema_behind_head_fails_naming_its_revision(tmp_path: Path) -> None:
    behind = Deployment(tmp_path)
    behind.sync("0004_checkpoint_copies")
    code, checks = behind.check()
    assert code == 2
    result, details = checks["Database schema"]
    assert result == 2 and "revision 0004_checkpoint_copies" in details and migration.head() in details
    assert "strongroom-manage db sync" in details
    assert checks["Provider files"][0] == 0  # the other checks still ran


def test_a_database_never_synced_fails(tmp_path: Path) -> None:
    code, checks = Deployment(tmp_path).check()
    assert code == 2 and checks["Database schema"][0] == 2
    assert "no schema" in checks["Database schema"][1]


def test_a_provider_file_with_a_typo_fails_naming_file_section_and_key(deployment: Deployment) -> None:
    path = deployment.providers / "local.conf"
    path.write_text(LOCAL.replace("chunk_size = 262144", "chunk_sise = 262144"))
    code, checks = deployment.check()
    assert code == 2
    result, details = checks["Provider files"]
    assert result == 2
    assert str(path) in details and "[volume]" in details and "chunk_sise" in details, details
    assert checks["Banks reachable"][0] == 2  # nothing to reach through an invalid file


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_bank_fails_naming_the_bank(deployment: Deployment) -> None:
    s3 = (Path(__file__).parents[2] / "providers.d" / "s3.conf").read_text()
    s3 = s3.replace("enabled = false", "enabled = true").replace(
        "endpoint_url = http://127.0.0.1:9000", f"endpoint_url = http://127.0.0.1:{_closed_port()}").replace(
        "connect_timeout = 10", "connect_timeout = 2")
    (deployment.providers / "s3.conf").write_text(s3)
    code, checks = deployment.check()
    assert code == 2
    result, details = checks["Banks reachable"]
    assert result == 2 and "bank 's3' of provider 'S3'" in details, details
    assert "bank 'fs' of provider 'Local'" not in details  # the reachable one is not blamed
    assert "CHANGE-ME" not in json.dumps(checks)  # the bank's credentials appear nowhere


def test_policy_file_unknown_and_deprecated_rules_warn_undefined_ones_fail(deployment: Deployment) -> None:
    policy = deployment.root / "policy.yaml"
    deployment.extra = f"[oslo_policy]\npolicy_file = {policy}\n"
    policy.write_text('"plan:create": "rule:project_member_or_admin"\n')
    code, checks = deployment.check()
    assert code == 0 and checks["Policy file"] == (0, f"the policy file {policy} sets 1 known rule(s)")

    policy.write_text('"plan:creat": "role:admin"\n"plan:get": "rule:admin_or_owner"\n')
    code, checks = deployment.check()
    assert code == 1, checks
    result, details = checks["Policy file"]
    assert result == 1
    assert "'plan:creat' is not a Strongroom rule" in details
    assert "'plan:get' keeps its deprecated default 'rule:admin_or_owner'" in details

    policy.write_text('"plan:create": "rule:no_such_rule"\n')
    code, checks = deployment.check()
    assert code == 2 and checks["Policy file"][0] == 2
    assert "undefined" in checks["Policy file"][1] and "'plan:create'" in checks["Policy file"][1]

    policy.write_text('"plan:create": [unclosed\n')
    code, checks = deployment.check()
    assert code == 2 and "cannot be loaded" in checks["Policy file"][1]


def test_no_enabled_provider_is_a_warning(deployment: Deployment) -> None:
    (deployment.providers / "local.conf").write_text(LOCAL.replace("enabled = true", "enabled = false"))
    code, checks = deployment.check()
    assert code == 1, checks
    assert checks["Provider files"] == (1, f"no provider is enabled in {deployment.providers}")
    assert checks["Banks reachable"] == (0, "reached no bank")
