"""A real Swift all-in-one (PyPI ``swift``) on 127.0.0.1, for tests and benchmarks.

One child process runs the account, container, object and proxy servers of the
installed ``swift`` package, each on its own ephemeral loopback port, as
eventlet green threads (one import of Swift instead of four: it answers about a
second after it is spawned).  ``start_swift(processes=N)`` (or
``STRONGROOM_SWIFT_PROCESSES=N``, 1 to 4) splits them over N forks of that
process instead, which can use more cores on an idle machine.  The proxy's
pipeline has ``tempauth`` (user ``test:tester``, key ``testing``, an admin of
account ``AUTH_test``) and the ``s3api`` middleware (access key ``test:tester``,
secret ``testing``, region ``us-east-1``, path-style addressing), plus
``slo``/``dlo``/``copy``/``versioned_writes``.  A second admin, ``test2:tester2``
(key ``testing2``, account ``AUTH_test2``), is there for tests that need another
account.  ``start_swift(keystone=...)`` (fixture ``swift_keystone_server``) puts
keystonemiddleware's ``authtoken`` and Swift's ``keystoneauth`` in place of
tempauth and s3api, against a real Keystone (:mod:`tests.servers.keystone`),
and registers the proxy as its ``object-store`` endpoint (see
:func:`_keystone_settings`).

Everything lives in one temporary directory: ``etc/`` (``swift.conf``, the four
server configs and the 1-replica rings, written by the child once it has bound
its sockets; the servers get ``swift_dir`` pointing there, never ``/etc/swift``),
``devices/d1`` (the only device; ``mount_check = false``; its filesystem must
support user extended attributes, which is checked first) and ``swift.log``.

Two liberties make the test server fast and self-contained; neither exists in a
real deployment: the proxy's cache is an in-process dictionary instead of
memcached (tempauth needs a cache for its tokens), and the servers do not
``fsync`` (nothing here needs to survive a power cut).  No object expirer runs:
expired objects answer 404 (the object server compares ``X-Delete-At`` with its
clock) and stay in listings.  Servers log warnings and errors to ``swift.log``
(``STRONGROOM_SWIFT_LOG_LEVEL=INFO`` logs every request).

In pytest, ask for the session fixture::

    def test_something(swift_server):
        bank = SwiftBank(swift_server.bank_options(swift_server.new_container("demo")))

Outside pytest (functional tests, benchmarks)::

    from tests.servers.swift import start_swift
    server = start_swift()          # or start_swift(some_directory)
    try:
        ...
    finally:
        server.stop()

The server is stopped by PID (SIGTERM, then SIGKILL) and also exits by itself
within half a second when the process that started it is gone, so a killed test
run leaves nothing behind.  If it cannot start, the fixture skips the tests that
need it, except under ``CI=true`` where a missing server is a failure.

``python -m tests.servers.swift`` starts one in the foreground and prints how to
reach it (Ctrl-C stops it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.servers import must_not_skip, stop_process, tail_log

if TYPE_CHECKING:
    from swiftclient.client import Connection

    from tests.servers.keystone import Account, KeystoneServer

#: How long the servers may take to answer after the child is spawned.
START_TIMEOUT = 60.0
USER = "test:tester"
KEY = "testing"
ACCOUNT = "AUTH_test"
REGION = "us-east-1"
#: Log level of the servers (their log is ``<root>/swift.log``); INFO logs every request.
LOG_LEVEL_ENV = "STRONGROOM_SWIFT_LOG_LEVEL"
_REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
_SERVERS = ("account", "container", "object", "proxy")
#: How the servers are split over processes, by number of processes (the proxy is in the first).
_GROUPS: dict[int, list[tuple[str, ...]]] = {
    1: [("proxy", "account", "container", "object")],
    2: [("proxy",), ("account", "container", "object")],
    3: [("proxy",), ("object",), ("account", "container")],
    4: [("proxy",), ("object",), ("container",), ("account",)],
}
#: Processes the servers run in by default (overridable by ``STRONGROOM_SWIFT_PROCESSES``).
DEFAULT_PROCESSES = 1
PROCESSES_ENV = "STRONGROOM_SWIFT_PROCESSES"
#: Keystone mode: the service user the proxy's ``authtoken`` validates tokens as, and the roles
#: ``keystoneauth`` makes owners of their project's account.
KEYSTONE_SERVICE_USER = "swift"
OPERATOR_ROLES = ("admin", "member")
RESELLER_PREFIX = "AUTH_"
#: Keystone mode: the project whose ``member`` the server's own checks (and :meth:`SwiftServer.bank_options`) use.
KEYSTONE_DEFAULT_PROJECT = "swift-tests"
#: Keystone mode: how long the proxy's ``authtoken`` trusts a token it validated (keystonemiddleware's
#: ``token_cache_time``, 300 s by default); a revoked token is refused at most this long after.
DEFAULT_TOKEN_CACHE_TIME = 2
#: Written by the parent for the child in Keystone mode (mode 0600: it holds the service user's password).
_KEYSTONE_SETTINGS = "keystone.json"


class SwiftServerError(RuntimeError):
    """The Swift all-in-one could not be started."""


@dataclasses.dataclass
class SwiftServer:
    """A running Swift all-in-one and what a test needs to talk to it (Swift API and S3 API)."""

    #: tempauth (v1) authentication URL.
    auth_url: str
    user: str
    key: str = dataclasses.field(repr=False)
    #: The account's storage URL (``.../v1/AUTH_test``).
    storage_url: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str = dataclasses.field(repr=False)
    region: str
    #: Ports of each server (``account``, ``container``, ``object``, ``proxy``).
    ports: dict[str, int]
    #: The directory holding configs, rings, devices and the log.
    root: pathlib.Path
    pid: int
    #: Seconds from spawning the process to its first successful authentication.
    start_seconds: float = 0.0
    process: subprocess.Popen[bytes] | None = dataclasses.field(default=None, repr=False)
    #: Remove ``root`` on stop (it was created by :func:`start_swift`).
    remove_root: bool = dataclasses.field(default=False, repr=False)
    #: Keystone mode: the Keystone the proxy's ``authtoken`` asks (None: tempauth and s3api).
    keystone: KeystoneServer | None = dataclasses.field(default=None, repr=False)
    #: Keystone mode: seconds the proxy trusts a validated token (see :data:`DEFAULT_TOKEN_CACHE_TIME`).
    token_cache_time: int = 0

    @property
    def proxy_port(self) -> int:
        return self.ports["proxy"]

    @property
    def log_path(self) -> pathlib.Path:
        return self.root / "swift.log"

    def new_container(self, prefix: str = "test") -> str:
        """A fresh container name, also valid as an S3 bucket name (not created: banks create it)."""
        cleaned = re.sub(r"[^a-z0-9-]", "-", prefix.lower()).strip("-")[:40] or "test"
        return f"{cleaned}-{uuid.uuid4().hex[:16]}"

    def bank_options(self, container: str, **extra: Any) -> dict[str, Any]:
        """Options for :class:`strongroom.bank_plugins.swift.SwiftBank` on ``container`` of this server
        (Keystone mode: :meth:`bank_options_v3` of the default project's member)."""
        if self.keystone is not None:
            return self.bank_options_v3(container, **extra)
        return {"auth_url": self.auth_url, "auth_version": "1", "user": self.user, "key": self.key,
                "container": container, **extra}

    def keystone_account(self, project: str = KEYSTONE_DEFAULT_PROJECT, role: str = "member") -> Account:
        """Keystone mode: the user holding ``role`` on ``project`` (made on first use)."""
        if self.keystone is None:
            raise SwiftServerError("this Swift server authenticates with tempauth, not Keystone")
        return self.keystone.account(project, role)

    def bank_options_v3(self, container: str, account: Account | None = None, **extra: Any) -> dict[str, Any]:
        """Keystone mode: the swift bank's options on ``container`` of ``account``'s project (default: the
        member of :data:`KEYSTONE_DEFAULT_PROJECT`), authenticating with Keystone v3; the storage URL comes
        from the catalogue."""
        account = account or self.keystone_account()
        assert self.keystone is not None
        return {"auth_url": self.keystone.url, "auth_version": "3", "user": account.username,
                "key": account.password, "project_name": account.project, "project_domain_name": "Default",
                "user_domain_name": "Default", "region_name": "RegionOne", "interface": "public",
                "container": container, **extra}

    def account_url(self, account: Account | None = None) -> str:
        """The storage URL of an account: tempauth's ``AUTH_test``, or (Keystone mode) ``AUTH_<project id>``
        of ``account``'s project."""
        if self.keystone is None:
            return self.storage_url
        account = account or self.keystone_account()
        return f"http://127.0.0.1:{self.proxy_port}/v1/{RESELLER_PREFIX}{account.project_id}"

    def connection(self, account: Account | None = None) -> Connection:
        """A swiftclient connection (no retries) behind the bank's back: tempauth's test user, or (Keystone
        mode) ``account``'s, default the default project's member.  The caller closes it."""
        from swiftclient.client import Connection

        if self.keystone is None:
            return Connection(self.auth_url, self.user, self.key, retries=0)
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        account = account or self.keystone_account()
        auth = v3.Password(auth_url=self.keystone.url, username=account.username, password=account.password,
                           project_name=account.project, project_domain_name="Default", user_domain_name="Default")
        return Connection(session=session.Session(auth=auth), retries=0, auth_version="3",
                          os_options={"service_type": "object-store", "endpoint_type": "public",
                                      "region_name": "RegionOne"})

    def stop(self) -> None:
        """Stop the servers (SIGTERM, then SIGKILL after 10 s).  Idempotent."""
        if self.process is not None:
            stop_process(self.process, group=True)
            self.process = None
        if self.remove_root:
            shutil.rmtree(self.root, ignore_errors=True)
            self.remove_root = False


# -- starting and stopping (the parent side) ---------------------------------


def _default_processes() -> int:
    value = os.environ.get(PROCESSES_ENV, str(DEFAULT_PROCESSES))
    if value not in {str(n) for n in _GROUPS}:
        raise SwiftServerError(f"{PROCESSES_ENV}={value!r}: use one of {sorted(_GROUPS)}")
    return int(value)


def start_swift(root: str | os.PathLike[str] | None = None, timeout: float = START_TIMEOUT,
                processes: int | None = None, keystone: KeystoneServer | None = None,
                token_cache_time: int = DEFAULT_TOKEN_CACHE_TIME) -> SwiftServer:
    """Start a Swift all-in-one with its state under ``root`` and return once it authenticates a user.

    ``root`` must be empty or missing; without it a temporary directory is made
    (and removed by :meth:`SwiftServer.stop`).  With ``keystone`` (a running
    :class:`~tests.servers.keystone.KeystoneServer`) the proxy authenticates
    with keystonemiddleware's ``authtoken`` and Swift's ``keystoneauth`` instead
    of tempauth and s3api (see :func:`_keystone_settings`), and the proxy is
    registered as Keystone's ``object-store`` endpoint.  Raises
    :class:`SwiftServerError` with the reason (and the tail of the servers' log).
    """
    remove_root = root is None
    base = pathlib.Path(tempfile.mkdtemp(prefix="strongroom-swift-") if root is None else root)
    base.mkdir(parents=True, exist_ok=True)
    if keystone is not None:
        settings = base / _KEYSTONE_SETTINGS
        settings.touch(mode=0o600)
        settings.write_text(json.dumps(_keystone_settings(keystone, token_cache_time)))
    ready = base / "ready.json"
    log_path = base / "swift.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(_REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    began = time.monotonic()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-W", "ignore", "-m", "tests.servers.swift", "--serve", str(base),
             "--parent-pid", str(os.getpid()), "--processes", str(processes or _default_processes())]
            + (["--owned-root"] if remove_root else []),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=_REPO_ROOT, env=env,
            start_new_session=True)
    try:
        ports = _wait_until_ready(process, ready, log_path, began + timeout)
        proxy = f"http://127.0.0.1:{ports['proxy']}"
        if keystone is not None:
            return _keystone_server(keystone, process, ports, base, log_path, began, timeout, remove_root,
                                    token_cache_time)
        storage_url = _wait_until_authenticating(process, proxy + "/auth/v1.0", log_path, began + timeout)
    except BaseException:
        stop_process(process, group=True)
        if remove_root:
            shutil.rmtree(base, ignore_errors=True)
        raise
    return SwiftServer(auth_url=proxy + "/auth/v1.0", user=USER, key=KEY, storage_url=storage_url,
                       s3_endpoint=proxy, s3_access_key=USER, s3_secret_key=KEY, region=REGION, ports=ports,
                       root=base, pid=process.pid, start_seconds=time.monotonic() - began, process=process,
                       remove_root=remove_root)


def _keystone_settings(keystone: KeystoneServer, token_cache_time: int) -> dict[str, dict[str, str]]:
    """The proxy's ``authtoken`` and ``keystoneauth`` filter settings in Keystone mode.

    ``authtoken`` validates tokens as the service user ``swift`` (role ``service`` on project ``service``) with
    ``delay_auth_decision`` (``keystoneauth`` decides, so that container ACLs can let other projects in)
    and no service catalogue in the request; ``keystoneauth`` makes ``admin`` and ``member`` of a project
    the owners of account ``AUTH_<project id>``.
    """
    service = keystone.service_account(KEYSTONE_SERVICE_USER)
    return {
        "authtoken": {
            "paste.filter_factory": "keystonemiddleware.auth_token:filter_factory",
            "auth_type": "password", "auth_url": keystone.url, "www_authenticate_uri": keystone.url,
            "username": service.username, "password": service.password, "project_name": service.project,
            "user_domain_name": "Default", "project_domain_name": "Default",
            "delay_auth_decision": "true", "include_service_catalog": "false",
            "token_cache_time": str(token_cache_time), "http_request_max_retries": "1",
        },
        "keystoneauth": {
            "use": "egg:swift#keystoneauth", "operator_roles": ", ".join(OPERATOR_ROLES),
            "reseller_prefix": RESELLER_PREFIX, "reseller_admin_role": "ResellerAdmin",
        },
    }


def _keystone_server(keystone: KeystoneServer, process: subprocess.Popen[bytes], ports: dict[str, int],
                     base: pathlib.Path, log_path: pathlib.Path, began: float, timeout: float,
                     remove_root: bool, token_cache_time: int) -> SwiftServer:
    """Register the proxy in Keystone's catalogue, then wait until a project member's token opens its account."""
    proxy = f"http://127.0.0.1:{ports['proxy']}"
    keystone.register_endpoint("object-store", f"{proxy}/v1/{RESELLER_PREFIX}$(project_id)s", name="swift")
    account = keystone.account(KEYSTONE_DEFAULT_PROJECT)
    storage_url = f"{proxy}/v1/{RESELLER_PREFIX}{account.project_id}"
    token = keystone.token(account)
    last = "no answer"
    while True:
        request = urllib.request.Request(storage_url, method="HEAD", headers={"X-Auth-Token": token})
        try:
            with urllib.request.urlopen(request, timeout=5):
                break
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code}"
        except OSError as err:
            last = str(err)
        if process.poll() is not None:
            raise SwiftServerError(f"the Swift servers exited with status {process.returncode}: "
                                   f"{tail_log(log_path)}")
        if time.monotonic() > began + timeout:
            raise SwiftServerError(f"the proxy did not accept a Keystone token of {account.username} ({last}): "
                                   f"{tail_log(log_path)}")
        time.sleep(0.05)
    return SwiftServer(auth_url=keystone.url, user=account.username, key=account.password,
                       storage_url=storage_url, s3_endpoint="", s3_access_key="", s3_secret_key="",
                       region="RegionOne", ports=ports, root=base, pid=process.pid,
                       start_seconds=time.monotonic() - began, process=process, remove_root=remove_root,
                       keystone=keystone, token_cache_time=token_cache_time)


def _wait_until_ready(process: subprocess.Popen[bytes], ready: pathlib.Path, log_path: pathlib.Path,
                      deadline: float) -> dict[str, int]:
    delay = 0.02
    while True:
        if process.poll() is not None:
            raise SwiftServerError(f"the Swift servers exited with status {process.returncode}: "
                                   f"{tail_log(log_path)}")
        if ready.exists():
            ports = json.loads(ready.read_text())
            return {name: int(ports[name]) for name in _SERVERS}
        if time.monotonic() > deadline:
            raise SwiftServerError(f"the Swift servers were not ready within the start timeout: {tail_log(log_path)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def _wait_until_authenticating(process: subprocess.Popen[bytes], auth_url: str, log_path: pathlib.Path,
                               deadline: float) -> str:
    """Authenticate as the test user until it works; return the storage URL."""
    last = "no answer"
    while True:
        request = urllib.request.Request(auth_url, headers={"X-Auth-User": USER, "X-Auth-Key": KEY})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                storage_url = answer.headers.get("X-Storage-Url")
                if storage_url:
                    return str(storage_url)
                last = "no X-Storage-Url in the answer"
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code}"
        except OSError as err:
            last = str(err)
        if process.poll() is not None:
            raise SwiftServerError(f"the Swift servers exited with status {process.returncode}: "
                                   f"{tail_log(log_path)}")
        if time.monotonic() > deadline:
            raise SwiftServerError(f"tempauth did not authenticate {USER} ({last}): {tail_log(log_path)}")
        time.sleep(0.05)








@pytest.fixture(scope="session")
def swift_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwiftServer]:
    """One Swift all-in-one for the whole test session (each test uses its own containers)."""
    try:
        server = start_swift(tmp_path_factory.mktemp("swift"))
    except (SwiftServerError, OSError) as err:
        if must_not_skip():
            pytest.fail(f"the Swift all-in-one could not start (CI=true: not skipping): {err}", pytrace=False)
        pytest.skip(f"the Swift all-in-one could not start: {err}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def swift_keystone_server(tmp_path_factory: pytest.TempPathFactory,
                          keystone_server: KeystoneServer) -> Iterator[SwiftServer]:
    """A second Swift all-in-one for the session, authenticating with the session's real Keystone
    (``authtoken`` + ``keystoneauth``; registered as its ``object-store`` endpoint)."""
    try:
        server = start_swift(tmp_path_factory.mktemp("swift-keystone"), keystone=keystone_server)
    except (SwiftServerError, OSError) as err:
        if must_not_skip():
            pytest.fail(f"the Keystone-authenticated Swift could not start (CI=true: not skipping): {err}",
                        pytrace=False)
        pytest.skip(f"the Keystone-authenticated Swift could not start: {err}")
    try:
        yield server
    finally:
        server.stop()


# -- the servers (the child side) ---------------------------------------------


def _check_xattr(directory: pathlib.Path) -> None:
    probe = directory / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.strongroom.probe", b"1")
    except OSError as err:
        raise SystemExit(f"the filesystem of {directory} does not support user extended attributes, which "
                         f"the Swift object server needs: {err.strerror}") from None
    finally:
        probe.unlink()


def _write_configs(root: pathlib.Path, ports: dict[str, int], log_level: str) -> pathlib.Path:
    etc, devices = root / "etc", root / "devices"
    etc.mkdir(exist_ok=True)
    (etc / "swift.conf").write_text(
        "[swift-hash]\nswift_hash_path_suffix = strongroom-test-suffix\n"
        "swift_hash_path_prefix = strongroom-test-prefix\n\n"
        "[storage-policy:0]\nname = gold\ndefault = yes\n")
    common = (f"[DEFAULT]\nswift_dir = {etc}\ndevices = {devices}\nmount_check = false\n"
              f"disable_fallocate = true\nbind_ip = 127.0.0.1\nworkers = 0\nlog_level = {log_level}\n")
    for name in ("account", "container", "object"):
        (etc / f"{name}-server.conf").write_text(
            f"{common}bind_port = {ports[name]}\nlog_name = {name}-server\n\n"
            f"[pipeline:main]\npipeline = {name}-server\n\n"
            f"[app:{name}-server]\nuse = egg:swift#{name}\n")
    keystone_file = root / _KEYSTONE_SETTINGS
    keystone: dict[str, dict[str, str]] = json.loads(keystone_file.read_text()) if keystone_file.exists() else {}
    auth = ["authtoken", "keystoneauth"] if keystone else ["s3api", "tempauth"]
    filters = ["catch_errors", "gatekeeper", "healthcheck", "listing_formats", *auth, "copy",
               "slo", "dlo", "versioned_writes"]
    proxy = [common + f"bind_port = {ports['proxy']}\nlog_name = proxy-server\n",
             "[pipeline:main]\npipeline = " + " ".join(filters) + " proxy-server\n",
             "[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n"
             "allow_account_management = true\n"]
    settings = {
        "s3api": f"location = {REGION}\n",
        "tempauth": f"user_test_tester = {KEY} .admin\nuser_test2_tester2 = testing2 .admin\n",
        "versioned_writes": "allow_versioned_writes = true\n",
    }
    for name, values in keystone.items():
        settings[name] = "".join(f"{key} = {value}\n" for key, value in values.items())
    for name in filters:
        use = "" if "use" in keystone.get(name, {}) or name == "authtoken" else f"use = egg:swift#{name}\n"
        proxy.append(f"[filter:{name}]\n{use}{settings.get(name, '')}")
    (etc / "proxy-server.conf").write_text("\n".join(proxy))
    return etc


def _build_rings(etc: pathlib.Path, ports: dict[str, int]) -> None:
    from swift.common.ring import RingBuilder

    for name in ("account", "container", "object"):
        builder = RingBuilder(6, 1, 1)
        builder.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": ports[name],
                         "replication_ip": "127.0.0.1", "replication_port": ports[name],
                         "device": "d1", "weight": 100, "meta": ""})
        builder.rebalance()
        builder.save(str(etc / f"{name}.builder"))
        builder.get_ring().save(str(etc / f"{name}.ring.gz"))


class DictCache:
    """The part of Swift's ``MemcacheRing`` interface the proxy uses, in a dict (one process, green threads).

    Values round-trip through JSON like memcached's, and expire after ``time`` seconds.
    """

    def __init__(self) -> None:
        self._items: dict[str, tuple[float, Any]] = {}

    @staticmethod
    def _deadline(ttl: float) -> float:
        if not ttl:
            return float("inf")
        return ttl if ttl > 30 * 24 * 3600 else time.time() + ttl

    def set(self, key: str, value: Any, serialize: bool = True, time: float = 0, min_compress_len: int = 0,
            raise_on_error: bool = False) -> None:
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        self._items[key] = (self._deadline(time), json.loads(json.dumps(value)) if serialize else value)

    def get(self, key: str, raise_on_error: bool = False) -> Any:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= time.time():
            self._items.pop(key, None)
            return None
        return item[1]

    def incr(self, key: str, delta: int = 1, time: float = 0) -> int:
        value = max(0, int(self.get(key) or 0) + int(delta))
        self.set(key, value, time=time)
        return value

    def decr(self, key: str, delta: int = 1, time: float = 0) -> int:
        return self.incr(key, -delta, time)

    def delete(self, key: str, server_key: str | None = None) -> None:
        self._items.pop(key, None)

    def set_multi(self, mapping: dict[str, Any], server_key: str, serialize: bool = True, time: float = 0,
                  min_compress_len: int = 0) -> None:
        for key, value in mapping.items():
            self.set(key, value, serialize, time)

    def get_multi(self, keys: list[str], server_key: str) -> list[Any]:
        return [self.get(key) for key in keys]


class _WithCache:
    """Puts the cache where Swift's ``cache`` middleware would (``env["swift.cache"]``)."""

    def __init__(self, app: Any, cache: DictCache) -> None:
        self.app = app
        self.cache = cache

    def __call__(self, env: dict[str, Any], start_response: Any) -> Any:
        env["swift.cache"] = self.cache
        return self.app(env, start_response)


def _serve(root: pathlib.Path, parent_pid: int, processes: int, remove_root_when_orphaned: bool) -> None:
    """Run the four servers until SIGTERM or until ``parent_pid`` is gone.

    Swift is imported, the sockets bound and the rings built once; then the
    servers are split over ``processes`` processes (forks of this one, each with
    a fresh eventlet hub), the proxy always in this one.  When ``parent_pid``
    dies without stopping us, ``root`` goes too if ``remove_root_when_orphaned``.
    """
    import warnings

    warnings.simplefilter("ignore")
    import eventlet
    import eventlet.hubs
    import eventlet.wsgi
    from swift.common import utils

    utils.monkey_patch()
    import logging

    from swift.common.http_protocol import SwiftHttpProtocol
    from swift.common.utils import NullLogger, logs
    from swift.common.wsgi import loadapp

    # Test-server liberties (see the module docstring): log to our stderr instead of
    # syslog, and no fsync (Swift calls it through os.fsync and os.fdatasync).
    logs.ThreadSafeSysLogHandler = lambda *args, **kwargs: logging.StreamHandler(sys.stderr)
    os.fsync = os.fdatasync = lambda fd: None

    devices = root / "devices" / "d1"
    devices.mkdir(parents=True, exist_ok=True)
    _check_xattr(devices)
    sockets = {name: eventlet.listen(("127.0.0.1", 0)) for name in _SERVERS}
    for sock in sockets.values():  # as swift.common.wsgi.get_socket does: no Nagle delays
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ports = {name: sock.getsockname()[1] for name, sock in sockets.items()}
    etc = _write_configs(root, ports, os.environ.get(LOG_LEVEL_ENV, "WARNING"))
    _build_rings(etc, ports)
    utils.set_swift_dir(str(etc))

    def run(names: tuple[str, ...]) -> None:
        eventlet.hubs.use_hub(utils.get_hub())  # never share an epoll set with another process
        for name in names:
            app = loadapp(str(etc / f"{name}-server.conf"))
            if name == "proxy":
                app = _WithCache(app, DictCache())
            eventlet.spawn(eventlet.wsgi.server, sockets[name], app, NullLogger(),
                           protocol=SwiftHttpProtocol, capitalize_response_headers=False, socket_timeout=60,
                           custom_pool=eventlet.GreenPool(1024))

    groups = _GROUPS[max(1, min(processes, len(_GROUPS)))]
    master = os.getpid()
    children: list[int] = []
    for names in groups[1:]:
        pid = os.fork()
        if pid == 0:  # a server process: lives as long as the master
            run(names)
            while os.getppid() == master:
                eventlet.sleep(0.5)
            os._exit(0)
        children.append(pid)

    def stop(*_args: Any) -> None:
        """Stop the server processes (SIGTERM, SIGKILL after 5 s), reap them, and exit."""
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                while not os.waitpid(pid, os.WNOHANG)[0]:
                    if time.monotonic() > deadline:
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                        break
                    time.sleep(0.02)
        if remove_root_when_orphaned and os.getppid() != parent_pid:
            shutil.rmtree(root, ignore_errors=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    run(groups[0])
    tmp = root / "ready.json.tmp"
    tmp.write_text(json.dumps(ports))
    tmp.replace(root / "ready.json")
    print(f"swift all-in-one ready in {len(groups)} process(es): {json.dumps(ports)}", flush=True)
    while os.getppid() == parent_pid:
        eventlet.sleep(0.5)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    print(f"server process {pid} died: stopping", flush=True)
                    stop()
    print("the parent process is gone: stopping", flush=True)
    stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", metavar="ROOT", help=argparse.SUPPRESS)
    parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--owned-root", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=_default_processes(),
                        help="processes the four servers are split over (1-4, default %(default)s)")
    parser.add_argument("--root", help="state directory (default: a new temporary one)")
    args = parser.parse_args(argv)
    if args.serve:
        _serve(pathlib.Path(args.serve), args.parent_pid or os.getppid(), args.processes, args.owned_root)
        return
    server = start_swift(args.root, processes=args.processes)
    print(f"Swift all-in-one up in {server.start_seconds:.2f}s (log: {server.log_path})\n"
          f"  swift: auth_url={server.auth_url} user={server.user} key={server.key}\n"
          f"         storage_url={server.storage_url}\n"
          f"  s3:    endpoint={server.s3_endpoint} access_key={server.s3_access_key} "
          f"secret_key={server.s3_secret_key} region={server.region}\nCtrl-C stops it.", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
