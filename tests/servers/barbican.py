"""A real OpenStack Barbican, and the Keystone it authenticates against, on 127.0.0.1, for castellan.

In pytest, ask for the session fixture (both start once per run, on first use)::

    def test_something(barbican_server):
        conf = barbican_server.castellan_conf()       # a fresh oslo.config ConfigOpts, castellan's options set
        km = key_manager.API(conf)
        ctx = utils.credential_factory(conf)          # castellan's KeystonePassword credential
        key_id = km.create_key(ctx, algorithm="AES", length=256)

What it runs, and why so:

* Barbican (``barbican==23.*``) and Keystone (``keystone==30.*``) from PyPI in one virtualenv of their own,
  built once by ``make barbican-venv`` under ``.cache/barbican-venv`` (their pins are one OpenStack release's,
  not the project's; ``STRONGROOM_BARBICAN_VENV`` names another one).  Each is served by gunicorn (one sync
  worker) from its own WSGI entry point: Keystone's ``keystone.server.wsgi.initialize_public_application()``,
  Barbican's paste pipeline loaded from the venv's ``barbican-api-paste.ini``, each by a few lines written
  into the run's directory (Barbican's own entry point reads ``/etc/barbican`` only; Keystone's would parse
  gunicorn's command line as its own); no control socket (gunicorn's is one per user, in ``~/.gunicorn``).
* Barbican: sqlite under the directory (tables made at start, ``db_auto_create``), secrets stored by the
  ``store_crypto`` plugin with ``simple_crypto`` and a KEK made up for the run, orders handled inside the API
  process (no queue, no worker), the ``barbican-api-keystone`` pipeline (keystonemiddleware's ``authtoken``).
  Its configuration file is ``~/.barbican/barbican.conf`` with HOME the run's ``home``: Barbican's crypto
  plugins each parse a configuration of their own from the default places, so no ``--config-file`` reaches
  them (``/etc/barbican`` would come after and is not read once the first place has the file).
* Keystone (:class:`tests.servers.keystone.KeystoneServer`, in the same directory): sqlite, fernet tokens
  (keys made by the fixture, as ``keystone-manage fernet_setup`` would),
  ``keystone-manage db_sync`` then ``bootstrap`` (admin, the catalogue's identity endpoint on its port); the
  fixture then makes a project ``strongroom`` with a user ``strongroom`` holding ``member`` (what Barbican's
  default policy asks of a creator of secrets and orders); ``account(name)`` makes another such pair on first
  use, for tests that need two tenants.  castellan authenticates with the password on every call, so bcrypt's
  work factor is the least (4) and Keystone caches in memory (dogpile): a token took 0.2 s and its validation
  by Barbican 0.5 s without them, 0.02 s and 0.01 s with them.

Why Keystone and not Barbican's unauthenticated pipeline (``barbican_api``, where ``X-Project-Id`` is the
identity), checked against these versions:

* castellan's ``BarbicanKeyManager`` accepts only a ``KeystonePassword`` or ``KeystoneToken`` credential,
  both turned into keystoneauth ``identity`` plugins that fetch a token from ``auth_url``, or an oslo.context
  ``RequestContext`` (its token sent to Keystone the same way, unless the context carries its own
  ``get_auth_plugin``).  ``credential_factory``'s plain ``token``/``password`` credentials are refused
  ("context must be of type KeystonePassword, KeystoneToken, or RequestContext").  So without Keystone only
  code of the caller's own (a context with a hand-made auth plugin that adds ``X-Project-Id``) could talk to
  Barbican: nothing a deployment's configuration can express.
* And the unauthenticated pipeline itself answers 500 to every ``/v1`` request with this Barbican and
  oslo.middleware 8.2: ``UnauthenticatedContextMiddleware`` reads ``req.request_id``, which the ``request_id``
  filter no longer sets (``AttributeError: request_id``).

How the credential is obtained: the caller's configuration says ``[key_manager] auth_type =
keystone_password`` with the user, password, project and Keystone URL, and
``castellan.common.utils.credential_factory(conf)`` makes the ``KeystonePassword`` from it; castellan then
gets a project-scoped token from Keystone for each key manager call, and Barbican's ``authtoken`` validates it
(as Keystone's admin).  ``[barbican] barbican_endpoint`` is given, so no catalogue lookup is made for
Barbican.  :meth:`BarbicanServer.castellan_options` is that configuration, group by group.

``python -m tests.servers.barbican`` runs one by hand and writes castellan's configuration for it to a file.

``stop()`` stops both by PID (SIGTERM, then SIGKILL).  ``start_seconds`` is the time from the first command to
both answering, with the first user made: 4.5-5.8 s on two busy cores (Keystone's ``db_sync`` then
``bootstrap`` are most of it; Barbican and Keystone's gunicorn start meanwhile); stopping takes about 1.3 s.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import pathlib
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.servers import dying_with_parent, must_not_skip, stop_process, tail_log
from tests.servers.keystone import Account, KeystoneError, KeystoneServer, program

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_VENV = ROOT / ".cache" / "barbican-venv"
START_TIMEOUT = 60.0
#: The project (and user) a caller's key manager uses by default (``castellan_options()``).
PROJECT = "strongroom"
#: The role Barbican's default policy asks of whoever creates secrets and orders in a project.
ROLE = "member"
_LISTENING = re.compile(rb"Listening at: http://127\.0\.0\.1:(\d+)")

#: Barbican's WSGI entry point: its paste pipeline from the venv (its configuration: ``~/.barbican``).
_BARBICAN_WSGI = """\
import os

from paste import deploy

application = deploy.loadapp("config:" + os.environ["STRONGROOM_BARBICAN_PASTE"])
"""

class BarbicanError(RuntimeError):
    """Barbican or its Keystone could not be started or asked."""


def venv_path() -> pathlib.Path:
    return pathlib.Path(os.environ.get("STRONGROOM_BARBICAN_VENV") or DEFAULT_VENV)


def missing() -> str | None:
    """Why Barbican cannot run here, or None."""
    venv = venv_path()
    for script in ("gunicorn", "keystone-manage", "barbican-manage"):
        if not (venv / "bin" / script).exists():
            return f"{script} is not installed in {venv} (`make barbican-venv` builds it)"
    if not (venv / "etc" / "barbican" / "barbican-api-paste.ini").exists():
        return f"Barbican's barbican-api-paste.ini is not in {venv}/etc/barbican (`make barbican-venv`)"
    return None


@dataclasses.dataclass
class BarbicanServer:
    """Keystone and Barbican under ``directory``; ``start()`` returns once both answer."""

    directory: pathlib.Path
    venv: pathlib.Path = dataclasses.field(default_factory=venv_path)
    keystone_port: int = 0
    barbican_port: int = 0
    #: Seconds from the first command to both servers answering, the accounts made.
    start_seconds: float = 0.0
    admin_password: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    accounts: dict[str, Account] = dataclasses.field(default_factory=dict)
    _processes: dict[str, subprocess.Popen[bytes]] = dataclasses.field(default_factory=dict, repr=False)
    _keystone: KeystoneServer = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._keystone = KeystoneServer(self.directory, venv=self.venv, port=self.keystone_port,
                                        admin_password=self.admin_password)
        self.keystone_port = self._keystone.port

    @property
    def keystone_url(self) -> str:
        """Keystone's v3 endpoint (castellan's ``auth_url``)."""
        return self._keystone.url

    @property
    def barbican_url(self) -> str:
        """Barbican's root (castellan's ``barbican_endpoint``; the API version is a separate option)."""
        return f"http://127.0.0.1:{self.barbican_port}"

    def log_path(self, name: str) -> pathlib.Path:
        return self.directory / "log" / f"{name}.log"

    # -- life cycle --------------------------------------------------------------------------------------

    def __enter__(self) -> BarbicanServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        began = time.monotonic()
        for sub in ("log", "state", "home/.barbican"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._write_files()
            # Barbican needs nothing of Keystone until the first request: it starts while Keystone is made.
            self._spawn("barbican", "barbican_wsgi:application", HOME=str(self.directory / "home"),
                        STRONGROOM_BARBICAN_PASTE=str(self.venv / "etc" / "barbican" / "barbican-api-paste.ini"))
            self._keystone.start(check_running=self._check_running)
            deadline = time.monotonic() + START_TIMEOUT
            self.barbican_port = self._wait_listening("barbican", deadline)
            self._wait_answering("barbican", self.barbican_url + "/", deadline)
            self.account(PROJECT)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop both servers by PID.  Idempotent; the directory stays for the logs."""
        for name in list(self._processes):
            stop_process(self._processes.pop(name), group=True)
        self._keystone.stop()

    # -- what tests use ----------------------------------------------------------------------------------

    def castellan_options(self, project: str = PROJECT) -> dict[str, dict[str, str]]:
        """castellan's configuration for the Barbican of this server as ``project``'s user: group -> option
        -> value, as strings, as they would stand in a configuration file.

        ``[key_manager]`` chooses the ``barbican`` backend and the credential ``credential_factory`` makes
        (``keystone_password``); ``[barbican]`` says where Barbican is (no catalogue lookup) and where
        Keystone is."""
        account = self.account(project)
        return {
            "key_manager": {
                "backend": "barbican",
                "auth_type": "keystone_password",
                "auth_url": self.keystone_url,
                "username": account.username,
                "password": account.password,
                "user_domain_name": "Default",
                "project_name": account.project,
                "project_domain_name": "Default",
            },
            "barbican": {
                "barbican_endpoint": self.barbican_url,
                "barbican_api_version": "v1",
                "auth_endpoint": self.keystone_url,
                # Orders are done inside the API call: the first poll finds them active.
                "retry_delay": "1",
                "number_of_retries": "10",
            },
        }

    def castellan_conf(self, project: str = PROJECT) -> Any:
        """A fresh ``oslo_config.cfg.ConfigOpts`` with castellan's options registered and
        :meth:`castellan_options` set: what ``key_manager.API(conf)`` and ``credential_factory(conf)`` take."""
        return castellan_conf(self.castellan_options(project))

    def castellan_config_text(self, project: str = PROJECT) -> str:
        """:meth:`castellan_options` as the sections of a configuration file."""
        lines: list[str] = []
        for group, values in self.castellan_options(project).items():
            lines.append(f"[{group}]")
            lines.extend(f"{name} = {value}" for name, value in values.items())
            lines.append("")
        return "\n".join(lines)

    def account(self, project: str = PROJECT) -> Account:
        """The user with ``member`` on ``project`` (both made in Keystone on first use)."""
        if project not in self.accounts:
            self.accounts[project] = self._keystone.account(project, ROLE)
        return self.accounts[project]

    def admin_token(self) -> str:
        """A project-scoped token of Keystone's admin (for checks behind castellan's back)."""
        return self._keystone.admin_token()

    def barbican_api(self, method: str, path: str, project: str = PROJECT, **kwargs: Any) -> requests.Response:
        """One request to Barbican's v1 API as ``project``'s user."""
        account = self.account(project)
        headers = {"X-Auth-Token": self._token(account.username, account.password, account.project),
                   "Accept": "application/json", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.barbican_url}/v1{path}", headers=headers, timeout=30, **kwargs)

    # -- internals ---------------------------------------------------------------------------------------

    @property
    def _barbican_conf(self) -> pathlib.Path:
        """Where every one of Barbican's configurations looks first: its plugins' modules each parse one of
        their own, from the default places, at import (``~/.barbican/barbican.conf``; HOME is the directory's
        ``home``)."""
        return self.directory / "home" / ".barbican" / "barbican.conf"

    def _write_files(self) -> None:
        d = self.directory
        kek = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        self._barbican_conf.write_text(f"""[DEFAULT]
sql_connection = sqlite:///{d}/state/barbican.sqlite
db_auto_create = true
log_file = {self.log_path('barbican')}
use_stderr = false
[secretstore]
enabled_secretstore_plugins = store_crypto
[crypto]
enabled_crypto_plugins = simple_crypto
[simple_crypto_plugin]
kek = {kek}
[queue]
enable = false
[keystone_authtoken]
auth_type = password
auth_url = {self.keystone_url}
www_authenticate_uri = {self.keystone_url}
username = admin
password = {self.admin_password}
project_name = admin
user_domain_name = Default
project_domain_name = Default
service_token_roles_required = true
""")
        (d / "barbican_wsgi.py").write_text(_BARBICAN_WSGI)

    def _spawn(self, name: str, app: str, **env: str) -> None:
        port = 0  # the kernel's, read from the log
        command = dying_with_parent([
            *program(self.venv, "gunicorn"), "--chdir", str(self.directory), "--bind", f"127.0.0.1:{port}",
            "--workers", "1", "--timeout", "120", "--graceful-timeout", "3", "--log-level", "info",
            "--no-control-socket", app])
        with open(self.log_path(f"{name}-gunicorn"), "ab") as out:
            self._processes[name] = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=self.directory,
                env={**os.environ, "PYTHONWARNINGS": "ignore", **env}, start_new_session=True)

    def _check_running(self) -> None:
        self._keystone.check_running()
        for name, process in self._processes.items():
            if process.poll() is not None:
                raise BarbicanError(f"{name} exited with status {process.returncode}: "
                                    f"{tail_log(self.log_path(f'{name}-gunicorn'))} {tail_log(self.log_path(name))}")

    def _wait_listening(self, name: str, deadline: float) -> int:
        while True:
            self._check_running()
            with contextlib.suppress(OSError):
                match = _LISTENING.search(self.log_path(f"{name}-gunicorn").read_bytes())
                if match:
                    return int(match.group(1))
            if time.monotonic() > deadline:
                raise BarbicanError(f"{name} did not listen within {START_TIMEOUT:.0f} s: "
                                    f"{tail_log(self.log_path(f'{name}-gunicorn'))}")
            time.sleep(0.05)

    def _wait_answering(self, name: str, url: str, deadline: float) -> None:
        while True:
            self._check_running()
            with contextlib.suppress(requests.RequestException):
                if requests.get(url, timeout=5).status_code < 500:
                    return
            if time.monotonic() > deadline:
                raise BarbicanError(f"{name} did not answer within {START_TIMEOUT:.0f} s: "
                                    f"{tail_log(self.log_path(f'{name}-gunicorn'))} {tail_log(self.log_path(name))}")
            time.sleep(0.1)

    def _token(self, username: str, password: str, project: str) -> str:
        return self._keystone.password_token(username, password, project)


def castellan_conf(options: dict[str, dict[str, str]]) -> Any:
    """A fresh ``ConfigOpts`` with every option castellan may read registered (``castellan.options.list_opts()``:
    the backend choice, ``credential_factory``'s options and each driver's) and ``options`` set as overrides.

    ``list_opts()`` instantiates castellan's drivers on the global ``cfg.CONF`` to ask them their options, which
    registers (not sets) them there too.  A service reading castellan's options from its configuration file
    needs none of this: ``key_manager.API(conf)`` and ``credential_factory(conf)`` register what they read."""
    from castellan import options as castellan_options
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    for group, opts in castellan_options.list_opts():
        conf.register_opts(opts, group=group)
    conf([], default_config_files=[])
    for group, values in options.items():
        for name, value in values.items():
            conf.set_override(name, value, group=group)
    return conf


def main() -> None:
    """``python -m tests.servers.barbican``: start both, write castellan's configuration to a file of mode 0600
    (it holds the run's password: not printed), say where, serve until ^C."""
    directory = pathlib.Path(tempfile.mkdtemp(prefix="strongroom-barbican-"))
    server = BarbicanServer(directory)
    try:
        server.start()
        conf_path = directory / "castellan.conf"
        conf_path.touch(mode=0o600)
        conf_path.write_text(server.castellan_config_text())
        print(f"up in {server.start_seconds:.1f} s: Keystone {server.keystone_url}, Barbican {server.barbican_url};"
              f" castellan's options in {conf_path}, logs in {directory}/log", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


# -- pytest ------------------------------------------------------------------------------------------------


def _unavailable(reason: str) -> None:
    if must_not_skip():
        pytest.fail(f"{reason} (CI=true: not skipping)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def barbican_server() -> Iterator[BarbicanServer]:
    """One Keystone and one Barbican for the whole session (tests make their own keys)."""
    reason = missing()
    if reason:
        _unavailable(reason)
    directory = pathlib.Path(tempfile.mkdtemp(prefix="strongroom-barbican-"))
    server = BarbicanServer(directory)
    try:
        server.start()
    except (BarbicanError, KeystoneError) as err:
        _unavailable(f"Barbican could not start: {err}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
