"""A real OpenStack Keystone (``keystone==30.*``) on 127.0.0.1, with projects and users of the default roles.

In pytest, ask for the session fixture (started once per run, on first use)::

    def test_something(keystone_server):
        a = keystone_server.account("proj-a", "reader")   # project proj-a, a user with reader on it
        token = keystone_server.token(a)                  # a project-scoped token of that user
        admin = keystone_server.admin_token()             # Keystone's admin, scoped to project admin

What it runs: Keystone from the virtualenv ``make barbican-venv`` builds (``.cache/barbican-venv``;
``STRONGROOM_BARBICAN_VENV`` names another), with sqlite, fernet tokens (keys made here as
``keystone-manage fernet_setup`` would), ``keystone-manage db_sync`` then ``bootstrap`` (user ``admin`` with
role ``admin`` on project ``admin``; bootstrap also makes the ``member`` and ``reader`` roles, ``admin``
implying ``member`` implying ``reader``), served by gunicorn (one sync worker, no control socket) from
Keystone's own WSGI entry point with gunicorn's command line out of oslo.config's sight.  bcrypt's least work
factor and an in-memory cache (dogpile) make a token cost ms, not 0.2 s.  ``stop()`` stops it by PID.

:class:`tests.servers.barbican.BarbicanServer` runs its Keystone with this class.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import os
import pathlib
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.servers import dying_with_parent, free_port, must_not_skip, stop_process, tail_log

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_VENV = ROOT / ".cache" / "barbican-venv"
START_TIMEOUT = 60.0
#: The role an account gets unless told otherwise.
ROLE = "member"

#: Keystone's WSGI entry point, with gunicorn's command line out of oslo.config's sight (it would parse it).
_KEYSTONE_WSGI = """\
import sys

sys.argv[1:] = []

from keystone.server import wsgi  # noqa: E402

application = wsgi.initialize_public_application()
"""


class KeystoneError(RuntimeError):
    """Keystone could not be started or asked."""


def venv_path() -> pathlib.Path:
    return pathlib.Path(os.environ.get("STRONGROOM_BARBICAN_VENV") or DEFAULT_VENV)


def missing(venv: pathlib.Path | None = None) -> str | None:
    """Why Keystone cannot run here, or None."""
    venv = venv or venv_path()
    for program in ("gunicorn", "keystone-manage"):
        if not (venv / "bin" / program).exists():
            return f"{program} is not installed in {venv} (`make barbican-venv` builds it)"
    return None


def program(venv: pathlib.Path, name: str) -> list[str]:
    """``[venv's python, venv's script]``: what runs a console script of a venv that may have been moved."""
    return [str(venv / "bin" / "python"), str(venv / "bin" / name)]


@dataclasses.dataclass
class Account:
    """A Keystone user with one role on one project, in the Default domain."""

    project: str
    username: str
    password: str = dataclasses.field(repr=False)
    project_id: str = ""
    user_id: str = ""
    role: str = ROLE


@dataclasses.dataclass
class KeystoneServer:
    """Keystone under ``directory`` (``log/``, ``state/``, key repositories, ``keystone.conf``);
    ``start()`` returns once it answers.  The port is chosen on construction, so others can be configured
    with :attr:`url` before it runs."""

    directory: pathlib.Path
    venv: pathlib.Path = dataclasses.field(default_factory=venv_path)
    port: int = 0
    admin_password: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    #: (project, role) -> the account made for it.
    accounts: dict[tuple[str, str], Account] = dataclasses.field(default_factory=dict)
    #: Seconds from the first command to Keystone answering.
    start_seconds: float = 0.0
    _process: subprocess.Popen[bytes] | None = dataclasses.field(default=None, repr=False)
    _project_ids: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port()

    @property
    def url(self) -> str:
        """Keystone's v3 endpoint."""
        return f"http://127.0.0.1:{self.port}/v3"

    def log_path(self, name: str = "keystone") -> pathlib.Path:
        return self.directory / "log" / f"{name}.log"

    # -- life cycle --------------------------------------------------------------------------------------

    def __enter__(self) -> KeystoneServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, check_running: Callable[[], None] | None = None) -> None:
        """Make and start Keystone; ``check_running`` (raising) is also called while waiting for it (a
        caller's other servers)."""
        began = time.monotonic()
        for sub in ("log", "state", "fernet-keys", "credential-keys"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._write_files()
            self.manage("db_sync")
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                bootstrap = pool.submit(self._bootstrap)
                self._spawn()
                bootstrap.result()
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                self.check_running()
                if check_running is not None:
                    check_running()
                with contextlib.suppress(requests.RequestException):
                    if requests.get(self.url, timeout=5).status_code < 500:
                        break
                if time.monotonic() > deadline:
                    raise KeystoneError(f"keystone did not answer within {START_TIMEOUT:.0f} s: "
                                        f"{tail_log(self.log_path('keystone-gunicorn'))} {tail_log(self.log_path())}")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop Keystone by PID.  Idempotent; the directory stays for the logs."""
        if self._process is not None:
            stop_process(self._process, group=True)
            self._process = None

    def check_running(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise KeystoneError(f"keystone exited with status {self._process.returncode}: "
                                f"{tail_log(self.log_path('keystone-gunicorn'))} {tail_log(self.log_path())}")

    # -- what tests use ----------------------------------------------------------------------------------

    def account(self, project: str, role: str = ROLE) -> Account:
        """The user holding ``role`` on ``project`` (project and user made on first use; the user of the
        default role is named as the project, the others ``<project>-<role>``)."""
        key = (project, role)
        if key not in self.accounts:
            self.accounts[key] = self._make_account(project, role)
        return self.accounts[key]

    def token(self, account: Account) -> str:
        """A token of ``account`` scoped to its project."""
        return self.password_token(account.username, account.password, account.project)

    def admin_token(self) -> str:
        """A token of Keystone's admin, scoped to project ``admin``."""
        return self.password_token("admin", self.admin_password, "admin")

    def password_token(self, username: str, password: str, project: str) -> str:
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": username, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
        answer = requests.post(f"{self.url}/auth/tokens", json=body, timeout=30)
        if answer.status_code != 201:
            raise KeystoneError(f"Keystone refused a token to {username}: {answer.status_code} {answer.text[:300]}")
        return answer.headers["X-Subject-Token"]

    def token_roles(self, token: str) -> list[str]:
        """The role names Keystone puts in ``token`` (what keystonemiddleware's ``X-Roles`` carries)."""
        answer = requests.get(f"{self.url}/auth/tokens", timeout=30,
                              headers={"X-Auth-Token": self.admin_token(), "X-Subject-Token": token})
        if answer.status_code != 200:
            raise KeystoneError(f"Keystone did not validate a token: {answer.status_code} {answer.text[:300]}")
        return sorted(role["name"] for role in answer.json()["token"]["roles"])

    def authtoken_options(self, account: Account | None = None) -> dict[str, str]:
        """keystonemiddleware's ``[keystone_authtoken]`` for a service validating tokens as Keystone's admin,
        or as ``account`` (a service user: :meth:`service_user`)."""
        if account is None:
            return {"auth_type": "password", "auth_url": self.url, "www_authenticate_uri": self.url,
                    "username": "admin", "password": self.admin_password, "project_name": "admin",
                    "user_domain_name": "Default", "project_domain_name": "Default"}
        return {"auth_type": "password", "auth_url": self.url, "www_authenticate_uri": self.url,
                "username": account.username, "password": account.password, "project_name": account.project,
                "user_domain_name": "Default", "project_domain_name": "Default"}

    def service_account(self, username: str = "strongroom", project: str = "service",
                        roles: tuple[str, ...] = ("service",)) -> Account:
        """A service user as a deployment makes one (made on first use): ``username`` in the Default domain
        with ``roles`` on project ``project`` (``service`` by default; roles bootstrap lacks are created).
        With the ``service`` role it may validate tokens (``[keystone_authtoken]``) and be a trustee."""
        key = (project, f"service:{username}")
        if key in self.accounts:
            return self.accounts[key]
        if project not in self._project_ids:
            found = self.admin_call("GET", f"/projects?name={project}")["projects"]
            self._project_ids[project] = found[0]["id"] if found else self.admin_call("POST", "/projects", {
                "project": {"name": project, "domain_id": "default"}})["project"]["id"]
        account = Account(project=project, username=username, password=secrets.token_urlsafe(18),
                          project_id=self._project_ids[project], role=roles[0] if roles else "")
        account.user_id = self.admin_call("POST", "/users", {"user": {
            "name": username, "password": account.password, "domain_id": "default",
            "default_project_id": account.project_id}})["user"]["id"]
        for role in roles:
            self.grant(account, role)
        self.accounts[key] = account
        return account

    def role_id(self, role: str) -> str:
        """The id of global role ``role``, created if Keystone has none of that name."""
        found = self.admin_call("GET", f"/roles?name={role}")["roles"]
        if found:
            return str(found[0]["id"])
        return str(self.admin_call("POST", "/roles", {"role": {"name": role}})["role"]["id"])

    def grant(self, account: Account, role: str | None = None) -> None:
        """Give ``account`` ``role`` (default: its own) on its project."""
        self.admin_call("PUT", f"/projects/{account.project_id}/users/{account.user_id}/roles/"
                               f"{self.role_id(role or account.role)}")

    def revoke_role(self, account: Account, role: str | None = None) -> None:
        """Take ``role`` (default: its own) on its project away from ``account``."""
        self.admin_call("DELETE", f"/projects/{account.project_id}/users/{account.user_id}/roles/"
                                  f"{self.role_id(role or account.role)}")

    def admin_call(self, method: str, path: str, body: Any = None, expect: int | None = None,
                   token: str | None = None) -> Any:
        """Keystone's API (``path`` under ``/v3``) as its admin (``token``: one of its tokens, else a new one);
        the JSON answer (None if empty).  Any answer of 300 or more raises :class:`KeystoneError`, unless it
        is ``expect`` (then None is returned)."""
        answer = requests.request(method, self.url + path, json=body, timeout=30,
                                  headers={"X-Auth-Token": token or self.admin_token()})
        if expect is not None and answer.status_code == expect:
            return None if not answer.content else answer.json()
        if answer.status_code >= 300:
            raise KeystoneError(f"Keystone {method} {path}: {answer.status_code} {answer.text[:300]}")
        return answer.json() if answer.content else None

    def service_user(self, name: str, project: str = "service", role: str = "admin") -> Account:
        """A service's own user ``name`` (``cinder``, ``strongroom``...) holding ``role`` on ``project`` (both
        made on first use), as a deployment gives each service: what its ``[keystone_authtoken]`` validates
        tokens with.  Admin by default: Keystone 30's policy lets an admin (or the ``service`` role) validate
        another user's token."""
        key = (project, f"user:{name}:{role}")
        if key not in self.accounts:
            self.accounts[key] = self._make_account(project, role, username=name)
        return self.accounts[key]

    def manage(self, *args: str, env: dict[str, str] | None = None) -> None:
        """``keystone-manage`` on this Keystone's configuration."""
        argv = [*self.program("keystone-manage"), "--config-file", str(self.conf_path), *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT, check=False,
                                  env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})
        except (OSError, subprocess.TimeoutExpired) as err:
            raise KeystoneError(f"keystone-manage {args[0]} failed: {err}") from err
        if done.returncode != 0:
            raise KeystoneError(f"keystone-manage {args[0]} failed ({done.returncode}): "
                                f"{(done.stderr or done.stdout).strip()[-2000:]} {tail_log(self.log_path())}")

    def program(self, name: str) -> list[str]:
        """The command running the venv's script ``name`` by the venv's interpreter: the scripts' own ``#!``
        lines name the directory the venv was built in, which may be gone (a venv shared by worktrees)."""
        return program(self.venv, name)

    def register_endpoint(self, service_type: str, url: str, name: str | None = None,
                          region: str = "RegionOne",
                          interfaces: tuple[str, ...] = ("public", "internal", "admin")) -> str:
        """Put ``url`` in the catalogue as the ``service_type`` service's endpoint for ``interfaces`` in
        ``region`` (the service made on first use; endpoints it had before are removed, so that a server
        started again replaces its entry).  ``url`` may hold Keystone's ``$(project_id)s``.  Returns the
        service's id; tokens issued from now on carry it."""
        found = self.admin_call("GET", f"/services?type={service_type}")["services"]
        if found:
            service_id = str(found[0]["id"])
            for endpoint in self.admin_call("GET", f"/endpoints?service_id={service_id}")["endpoints"]:
                self.admin_call("DELETE", f"/endpoints/{endpoint['id']}")
        else:
            service_id = str(self.admin_call("POST", "/services", {"service": {
                "type": service_type, "name": name or service_type, "enabled": True}})["service"]["id"])
        for interface in interfaces:
            self.admin_call("POST", "/endpoints", {"endpoint": {
                "service_id": service_id, "interface": interface, "region_id": region, "url": url,
                "enabled": True}})
        return service_id

    def revoke_token(self, token: str) -> None:
        """Revoke ``token`` (``DELETE /v3/auth/tokens`` as Keystone's admin): Keystone refuses it from now on."""
        answer = requests.delete(f"{self.url}/auth/tokens", timeout=30,
                                 headers={"X-Auth-Token": self.admin_token(), "X-Subject-Token": token})
        if answer.status_code != 204:
            raise KeystoneError(f"Keystone did not revoke a token: {answer.status_code} {answer.text[:300]}")

    # -- internals ---------------------------------------------------------------------------------------

    @property
    def conf_path(self) -> pathlib.Path:
        return self.directory / "keystone.conf"

    def _write_files(self) -> None:
        from cryptography.fernet import Fernet

        d = self.directory
        # What `keystone-manage fernet_setup` / `credential_setup` make: 0 staged, 1 primary (0600; no process).
        for repository in ("fernet-keys", "credential-keys"):
            for index in ("0", "1"):
                key = d / repository / index
                key.write_bytes(Fernet.generate_key())
                key.chmod(0o600)
        self.conf_path.write_text(f"""[DEFAULT]
log_file = {self.log_path()}
use_stderr = false
[database]
connection = sqlite:///{d}/state/keystone.sqlite
[fernet_tokens]
key_repository = {d}/fernet-keys
[fernet_receipts]
key_repository = {d}/fernet-keys
[credential]
key_repository = {d}/credential-keys
[token]
provider = fernet
[cache]
enabled = true
backend = dogpile.cache.memory
[identity]
# bcrypt's least work factor: each password check (every castellan call gets a token) costs ms, not 0.25 s.
password_hash_rounds = 4
""")
        (d / "keystone_wsgi.py").write_text(_KEYSTONE_WSGI)

    def _bootstrap(self) -> None:
        self.manage(
            "bootstrap", "--bootstrap-username", "admin", "--bootstrap-project-name", "admin",
            "--bootstrap-role-name", "admin", "--bootstrap-service-name", "keystone",
            "--bootstrap-region-id", "RegionOne", "--bootstrap-public-url", self.url,
            "--bootstrap-internal-url", self.url, "--bootstrap-admin-url", self.url,
            env={"OS_BOOTSTRAP_PASSWORD": self.admin_password})

    def _spawn(self) -> None:
        command = dying_with_parent([
            *self.program("gunicorn"), "--chdir", str(self.directory), "--bind", f"127.0.0.1:{self.port}",
            "--workers", "1", "--timeout", "120", "--graceful-timeout", "3", "--log-level", "info",
            "--no-control-socket", "keystone_wsgi:application"])
        with open(self.log_path("keystone-gunicorn"), "ab") as out:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=self.directory,
                env={**os.environ, "PYTHONWARNINGS": "ignore", "OS_KEYSTONE_CONFIG_FILES": str(self.conf_path),
                     "OS_KEYSTONE_CONFIG_DIR": ""}, start_new_session=True)

    def _admin_call(self) -> Callable[..., Any]:
        """A caller of Keystone's API as its admin with one token: ``call(method, path, body)``."""
        return functools.partial(self.admin_call, token=self.admin_token())

    def _make_account(self, project: str, role: str, username: str | None = None) -> Account:
        """Project ``project`` (once), a user with ``role`` on it, through Keystone's API as admin."""
        call = self._admin_call()
        username = username or (project if role == ROLE else f"{project}-{role}")
        account = Account(project=project, username=username, password=secrets.token_urlsafe(18), role=role)
        if project not in self._project_ids:
            self._project_ids[project] = call("POST", "/projects", {"project": {
                "name": project, "domain_id": "default"}})["project"]["id"]
        account.project_id = self._project_ids[project]
        account.user_id = call("POST", "/users", {"user": {
            "name": account.username, "password": account.password, "domain_id": "default",
            "default_project_id": account.project_id}})["user"]["id"]
        role_id = call("GET", f"/roles?name={role}")["roles"][0]["id"]
        call("PUT", f"/projects/{account.project_id}/users/{account.user_id}/roles/{role_id}")
        return account


# -- pytest ------------------------------------------------------------------------------------------------


def _unavailable(reason: str) -> None:
    if must_not_skip():
        pytest.fail(f"{reason} (CI=true: not skipping)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def keystone_server() -> Iterator[KeystoneServer]:
    """One Keystone for the whole session (tests make their own projects and users)."""
    reason = missing()
    if reason:
        _unavailable(reason)
    directory = pathlib.Path(tempfile.mkdtemp(prefix="strongroom-keystone-"))
    server = KeystoneServer(directory)
    try:
        server.start()
    except KeystoneError as err:
        _unavailable(f"Keystone could not start: {err}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
