"""A real OpenStack Cinder (cinder-api, cinder-scheduler, cinder-volume) on 127.0.0.1, over the test Ceph.

In pytest, ask for the session fixture (Cinder starts once per run, on first use, after the Ceph cluster)::

    def test_something(cinder_service):
        backend = CinderBackend(cinder_service.backend_options(project="demo"))

What it runs, and why so (measured facts in the project's notes on real backends):

* Cinder from PyPI (``cinder==29.*``) in its own virtualenv, built once by ``make cinder-venv`` under
  ``.cache/cinder-venv`` (its pins are not the project's; ``STRONGROOM_CINDER_VENV`` names another one);
* ``auth_strategy = noauth`` by default: REST paths carry no project id and the ``X-Auth-Token:
  user:project`` header is the whole identity, so two projects are two header values;
* or, given a real Keystone (``keystone=`` a :class:`tests.servers.keystone.KeystoneServer`; the session
  fixture ``cinder_keystone_service``), ``auth_strategy = keystone``: keystonemiddleware's ``authtoken``
  validates every token as the service user ``cinder`` (role admin on project ``service``), and Cinder is
  registered in Keystone's catalogue as service type ``block-storage`` at ``http://127.0.0.1:PORT/v3``
  (no project id in the URL: Cinder takes the project from the token).  :meth:`CinderService.api` then
  sends a real token of the project named (its member; Keystone's admin for ``admin``);
* a database of the run's own on the machine's MariaDB (root on 127.0.0.1:3306, or
  ``STRONGROOM_TEST_MYSQL_URL``), made before ``cinder-manage db sync`` and dropped by ``stop()``: on sqlite,
  concurrent creates and snapshots made cinder-api answer 500 "database is locked" now and then, whatever
  its busy timeout.  Where MariaDB cannot be reached, sqlite under the directory (and the old flakiness);
  every state, lock and log path is under the directory;
* the machine's RabbitMQ (guest on 127.0.0.1:5672) on a private vhost made for the run with
  ``rabbitmqctl`` and deleted after it; where ``rabbitmqctl`` cannot be used, the default vhost with a
  control exchange of the run's own, so that no other Cinder on the broker hears its messages;
* ``enabled_backends = ceph``: the RBD driver on a pool of its own of the session's Ceph cluster, as the
  cephx user ``client.strongroom`` (the same caps the rbd backend's tests use).

* Cinder's own waits made short: services report every second, the scheduler waits at most 5 s for the
  volume service's first report (60 s by default; the fixture itself waits until the scheduler lists the
  pool), and the RBD driver counts the pool as its own
  (``rbd_exclusive_cinder_pool``), so stats never walk every image.

``stop()`` stops each daemon by PID (SIGTERM, then SIGKILL).  ``stop_api()`` / ``start_api()`` stop and
start cinder-api alone, for the "Cinder is down" tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import requests

from tests.servers import dying_with_parent, must_not_skip, stop_process, tail_log
from tests.servers.ceph import CLIENT, CephCluster, free_port

if TYPE_CHECKING:  # imported by pytest as a plugin of its own (tests/conftest.py), after this module
    from tests.servers.keystone import Account, KeystoneServer

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_VENV = ROOT / ".cache" / "cinder-venv"
START_TIMEOUT = 90.0
AMQP = ("127.0.0.1", 5672)
#: The MariaDB server the fixture's Cinder keeps its database on (its admin URL, no database).
MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/"
#: The microversion the tests ask for when they talk to Cinder behind the backend's back.
MICROVERSION = "3.60"


class CinderError(RuntimeError):
    """Cinder could not be started or asked."""


def venv_path() -> pathlib.Path:
    return pathlib.Path(os.environ.get("STRONGROOM_CINDER_VENV") or DEFAULT_VENV)


def missing() -> str | None:
    """Why Cinder cannot run here, or None."""
    venv = venv_path()
    for program in ("cinder-api", "cinder-scheduler", "cinder-volume", "cinder-manage"):
        if not (venv / "bin" / program).exists():
            return f"Cinder is not installed in {venv} (`make cinder-venv` builds it)"
    if not list(venv.glob("lib/python3*/site-packages/pymysql")):
        return f"PyMySQL is not installed in {venv} (`make cinder-venv` installs it)"
    try:
        import socket

        socket.create_connection(AMQP, timeout=2).close()
    except OSError as err:
        return f"RabbitMQ is not reachable on {AMQP[0]}:{AMQP[1]}: {err}"
    return None


@dataclasses.dataclass
class CinderService:
    """The three Cinder daemons under ``directory``; ``start()`` returns once the volume service is up."""

    directory: pathlib.Path
    ceph: CephCluster
    pool: str
    venv: pathlib.Path = dataclasses.field(default_factory=venv_path)
    port: int = 0
    run_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:10])
    #: Seconds from the first command to the volume service reported up.
    start_seconds: float = 0.0
    vhost: str | None = None
    #: The MariaDB database of the run (None: sqlite under the directory).
    database: str | None = None
    #: The Keystone that authenticates requests (None: noauth).
    keystone: KeystoneServer | None = None
    #: The Keystone user cinder-api validates tokens as (keystone mode).
    service_account: Account | None = dataclasses.field(default=None, repr=False)
    _tokens: dict[str, tuple[float, str]] = dataclasses.field(default_factory=dict, repr=False)
    _processes: dict[str, subprocess.Popen[bytes]] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def conf_path(self) -> pathlib.Path:
        return self.directory / "cinder.conf"

    @property
    def endpoint(self) -> str:
        """The v3 endpoint, as the cinder backend's ``endpoint`` option takes it and, in keystone mode, as
        the catalogue holds it (no project id: noauth, or the token's)."""
        return f"http://127.0.0.1:{self.port}/v3"

    def log_path(self, daemon: str) -> pathlib.Path:
        return self.directory / "log" / f"{daemon}.log"

    # -- life cycle --------------------------------------------------------------------------------------

    def __enter__(self) -> CinderService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        began = time.monotonic()
        if not self.port:
            self.port = free_port()
        for sub in ("log", "lock", "state"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        try:
            if self.keystone is not None and self.service_account is None:
                self.service_account = self.keystone.service_user("cinder")
                self.keystone.register_endpoint("block-storage", self.endpoint, name="cinder")
            self.vhost = self._make_vhost()
            self.database = _make_database(self.run_id)
            self.conf_path.write_text(self._conf())
            self._run("cinder-manage", "--config-file", str(self.conf_path), "db", "sync")
            for daemon in ("cinder-scheduler", "cinder-volume", "cinder-api"):
                self._spawn(daemon)
            self._wait_until_up(time.monotonic() + START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop every daemon by PID, drop the database and the vhost.  Idempotent; the directory stays for
        the logs."""
        for name in list(self._processes):
            stop_process(self._processes.pop(name), group=True)
        if self.database:
            with contextlib.suppress(Exception):
                _drop_database(self.database)
            self.database = None
        if self.vhost:
            with contextlib.suppress(CinderError, OSError):
                _rabbitmqctl("delete_vhost", self.vhost)
            self.vhost = None

    def stop_api(self) -> None:
        process = self._processes.pop("cinder-api", None)
        if process is not None:
            stop_process(process, group=True)

    def start_api(self) -> None:
        if "cinder-api" not in self._processes:
            self._spawn("cinder-api")
            self._wait_until_up(time.monotonic() + START_TIMEOUT)

    # -- what tests use ----------------------------------------------------------------------------------

    def backend_options(self, project: str = "demo", **extra: Any) -> dict[str, Any]:
        """Options for :class:`strongroom.block.cinder.CinderBackend`: noauth as ``project``, and the
        data path to the same Ceph as client.strongroom."""
        options: dict[str, Any] = {
            "endpoint": self.endpoint, "auth_type": "noauth", "project_id": project,
            "rbd_mon_host": self.ceph.mon_host, "rbd_client_name": CLIENT,
            "rbd_keyring": str(self.ceph.client_keyring), "timeout": 30, "status_timeout": 60,
        }
        return {**options, **extra}

    def keystone_backend_options(self, account: Account, **extra: Any) -> dict[str, Any]:
        """Options for :class:`strongroom.block.cinder.CinderBackend` in keystone mode: ``account``'s
        password, Cinder found in the catalogue (no ``endpoint``), the data path as in
        :meth:`backend_options`."""
        assert self.keystone is not None, "keystone_backend_options needs a Cinder in keystone mode"
        options: dict[str, Any] = {
            "auth_type": "password", "auth_url": self.keystone.url, "username": account.username,
            "password": account.password, "user_domain_name": "Default", "project_name": account.project,
            "project_domain_name": "Default",
            "rbd_mon_host": self.ceph.mon_host, "rbd_client_name": CLIENT,
            "rbd_keyring": str(self.ceph.client_keyring), "timeout": 30, "status_timeout": 60,
        }
        return {**options, **extra}

    def token(self, project: str) -> str:
        """The ``X-Auth-Token`` of a request as ``project``: noauth's ``project:project``; in keystone mode a
        real token of its member (Keystone's admin for ``admin``), kept for 10 minutes."""
        if self.keystone is None:
            return f"{project}:{project}"
        kept = self._tokens.get(project)
        if kept is None or time.monotonic() - kept[0] > 600:
            token = (self.keystone.admin_token() if project == "admin"
                     else self.keystone.token(self.keystone.account(project)))
            kept = self._tokens[project] = (time.monotonic(), token)
        return kept[1]

    def api(self, method: str, path: str, project: str = "admin", **kwargs: Any) -> requests.Response:
        """One request to Cinder's v3 API as ``project`` (see :meth:`token`), behind any backend's back."""
        headers = {"X-Auth-Token": self.token(project), "OpenStack-API-Version": f"volume {MICROVERSION}",
                   **kwargs.pop("headers", {})}
        return requests.request(method, self.endpoint + path, headers=headers, timeout=30, **kwargs)

    def create_volume(self, size_gib: int, name: str, project: str = "demo", timeout: float = 60) -> dict[str, Any]:
        """A volume made through Cinder's API, once ``available``."""
        made = self.api("POST", "/volumes", project, json={"volume": {"size": size_gib, "name": name}})
        if made.status_code != 202:
            raise CinderError(f"creating volume {name}: {made.status_code} {made.text[:500]}")
        return self.wait_volume(made.json()["volume"]["id"], project, timeout=timeout)

    def wait_volume(self, volume_id: str, project: str = "demo", status: str = "available",
                    timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            shown = self.api("GET", f"/volumes/{volume_id}", project).json()["volume"]
            if shown["status"] == status:
                return dict(shown)
            if shown["status"] == "error" or time.monotonic() > deadline:
                raise CinderError(f"volume {volume_id} is {shown['status']}, not {status}: "
                                  f"{tail_log(self.log_path('cinder-volume'))}")
            time.sleep(0.2)

    def delete_volume(self, volume_id: str, project: str = "demo", timeout: float = 60) -> None:
        for snap in self.api("GET", f"/snapshots?volume_id={volume_id}", project).json()["snapshots"]:
            self.api("DELETE", f"/snapshots/{snap['id']}", project)
        deadline = time.monotonic() + timeout
        while True:
            answer = self.api("DELETE", f"/volumes/{volume_id}", project, params={"cascade": "true"})
            if answer.status_code in (202, 404):
                break
            if time.monotonic() > deadline:
                raise CinderError(f"deleting volume {volume_id}: {answer.status_code} {answer.text[:300]}")
            time.sleep(0.3)
        while self.api("GET", f"/volumes/{volume_id}", project).status_code != 404:
            if time.monotonic() > deadline:
                raise CinderError(f"volume {volume_id} was not deleted within {timeout:g} s")
            time.sleep(0.2)

    # -- internals ---------------------------------------------------------------------------------------

    def _make_vhost(self) -> str | None:
        """A vhost of the run's own, or None (then the run's own control exchange keeps it apart)."""
        vhost = f"strongroom-cinder-{self.run_id}"
        try:
            _rabbitmqctl("add_vhost", vhost)
            _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        except (CinderError, OSError):
            return None
        return vhost

    def _conf(self) -> str:
        d = self.directory
        vhost = self.vhost or ""
        exchange = "cinder" if self.vhost else f"cinder-{self.run_id}"
        return f"""[DEFAULT]
auth_strategy = {"noauth" if self.keystone is None else "keystone"}
transport_url = rabbit://guest:guest@{AMQP[0]}:{AMQP[1]}/{vhost}
control_exchange = {exchange}
state_path = {d}/state
log_dir = {d}/log
use_stderr = false
debug = false
host = strongroom-{self.run_id}
my_ip = 127.0.0.1
api_paste_config = {self.venv}/etc/cinder/api-paste.ini
osapi_volume_listen = 127.0.0.1
osapi_volume_listen_port = {self.port}
osapi_volume_workers = 1
enabled_backends = ceph
# Services report every second and count as down after 20 s: the tests wait for "up" once, at start.
report_interval = 1
periodic_interval = 2
service_down_time = 20
scheduler_driver_init_wait_time = 5
resource_query_filters_file = {self.venv}/etc/cinder/resource_filters.json
volume_name_template = volume-%s
snapshot_name_template = snapshot-%s
[database]
connection = {self._database_url()}
[oslo_concurrency]
lock_path = {d}/lock
[oslo_messaging_rabbit]
heartbeat_timeout_threshold = 0
[ceph]
volume_driver = cinder.volume.drivers.rbd.RBDDriver
volume_backend_name = ceph
rbd_pool = {self.pool}
rbd_ceph_conf = {self.ceph.conf_path}
rbd_user = {CLIENT}
rbd_flatten_volume_from_snapshot = false
rados_connect_timeout = 10
rbd_exclusive_cinder_pool = true
report_discard_supported = true
""" + self._authtoken_conf()

    def _authtoken_conf(self) -> str:
        """keystonemiddleware's section (keystone mode): tokens validated as the ``cinder`` service user, kept
        in the process's memory."""
        if self.keystone is None or self.service_account is None:
            return ""
        lines = "".join(f"{k} = {v}\n" for k, v in self.keystone.authtoken_options(self.service_account).items())
        return f"[keystone_authtoken]\n{lines}service_token_roles_required = false\n"

    def _database_url(self) -> str:
        if self.database is None:
            return f"sqlite:///{self.directory}/state/cinder.sqlite?timeout=30"
        url = _mysql_admin_url().set(drivername="mysql+pymysql", database=self.database,
                                     query={"charset": "utf8mb4"})
        return url.render_as_string(hide_password=False)

    def _run(self, program: str, *args: str) -> str:
        argv = [str(self.venv / "bin" / program), *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise CinderError(f"{program} failed: {err}") from err
        if done.returncode != 0:
            raise CinderError(f"{program} {' '.join(args[-2:])} failed ({done.returncode}): "
                              f"{(done.stderr or done.stdout).strip()[-2000:]}")
        return done.stdout

    def _spawn(self, daemon: str) -> None:
        with open(self.directory / "log" / f"{daemon}.out", "ab") as out:
            command = dying_with_parent([str(self.venv / "bin" / daemon), "--config-file", str(self.conf_path)])
            self._processes[daemon] = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_until_up(self, deadline: float) -> None:
        """Until the API answers, the scheduler and the volume service report up, and the scheduler knows
        the volume service's pool (before that, a create ends ``error``: no valid backend)."""
        while True:
            for name, process in self._processes.items():
                if process.poll() is not None:
                    raise CinderError(f"{name} exited with status {process.returncode}: "
                                      f"{tail_log(self.directory / 'log' / f'{name}.out')} "
                                      f"{tail_log(self.log_path(name))}")
            with contextlib.suppress(requests.RequestException, ValueError, KeyError):
                services = self.api("GET", "/os-services").json()["services"]
                up = {s["binary"] for s in services if s["state"] == "up" and s["status"] == "enabled"}
                if {"cinder-scheduler", "cinder-volume"} <= up and self.api(
                        "GET", "/scheduler-stats/get_pools").json()["pools"]:
                    return
            if time.monotonic() > deadline:
                raise CinderError(f"Cinder's services were not up within {START_TIMEOUT:.0f} s: "
                                  f"{tail_log(self.log_path('cinder-volume'))}")
            time.sleep(0.3)


def _mysql_admin_url() -> Any:
    from sqlalchemy.engine import make_url

    return make_url(os.environ.get("STRONGROOM_TEST_MYSQL_URL") or MYSQL_URL)


def _mysql_admin() -> Any:
    import sqlalchemy as sa

    return sa.create_engine(_mysql_admin_url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool,
                            connect_args={"connect_timeout": 3})


def _make_database(run_id: str) -> str | None:
    """A new empty MariaDB database for the run, or None where MariaDB cannot be reached."""
    import sqlalchemy as sa

    name = f"strongroom_cinder_{os.getpid()}_{run_id}"
    engine = _mysql_admin()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    except sa.exc.DBAPIError:
        return None
    finally:
        engine.dispose()
    return name


def _drop_database(name: str) -> None:
    import sqlalchemy as sa

    engine = _mysql_admin()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        engine.dispose()


def _rabbitmqctl(*args: str) -> str:
    program = shutil.which("rabbitmqctl")
    if program is None:
        raise CinderError("rabbitmqctl is not installed")
    try:
        done = subprocess.run([program, "-q", *args], capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired as err:
        raise CinderError(f"rabbitmqctl {args[0]} timed out") from err
    if done.returncode != 0:
        raise CinderError(f"rabbitmqctl {args[0]} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


# -- pytest ------------------------------------------------------------------------------------------------


def _unavailable(reason: str) -> None:
    if must_not_skip():
        pytest.fail(f"{reason} (CI=true: not skipping)", pytrace=False)
    pytest.skip(reason)


def _running(ceph_cluster: CephCluster, pool_name: str, what: str,
             keystone: KeystoneServer | None = None) -> Iterator[CinderService]:
    """A Cinder (``what``, for messages) on a new pool ``pool_name`` of ``ceph_cluster``, stopped and its pool
    deleted afterwards."""
    reason = missing()
    if reason:
        _unavailable(reason)
    pool = ceph_cluster.new_pool(pool_name)
    directory = pathlib.Path(tempfile.mkdtemp(prefix=f"strongroom-{pool_name}-"))
    service = CinderService(directory, ceph_cluster, pool, keystone=keystone)
    try:
        service.start()
    except CinderError as err:
        _unavailable(f"{what} could not start: {err}")
    try:
        yield service
    finally:
        service.stop()
        shutil.rmtree(directory, ignore_errors=True)
        with contextlib.suppress(Exception):
            ceph_cluster.delete_pool(pool)


@pytest.fixture(scope="session")
def cinder_service(ceph_cluster: CephCluster) -> Iterator[CinderService]:
    """One Cinder for the whole session, its RBD driver on a pool of its own of the session's Ceph."""
    yield from _running(ceph_cluster, "cinder", "Cinder")


@pytest.fixture(scope="session")
def cinder_keystone_service(ceph_cluster: CephCluster, keystone_server: KeystoneServer) -> Iterator[CinderService]:
    """One Cinder behind the session's real Keystone (``auth_strategy = keystone``, in its catalogue as
    ``block-storage``), its RBD driver on a pool of its own of the session's Ceph."""
    yield from _running(ceph_cluster, "cinderks", "Cinder (keystone mode)", keystone=keystone_server)
