"""The cinder backend without a cloud: its options, the microversion it negotiates, and what it refuses.

These run against :class:`FakeCinder`, a few lines of HTTP on 127.0.0.1 that answer only what each test
needs (a versions document, a volume, a snapshot that never leaves ``creating``, a connection of another
driver type).  Everything a real Cinder does is in tests/conformance/test_block_cinder.py; what is here
is what a real Cinder will not do on demand.  Waiting uses an injected clock, so nothing sleeps.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from strongroom import exceptions
from strongroom.block.cinder import CinderBackend
from strongroom.block.cinder.api import _negotiate
from strongroom.block.cinder.options import MAX_MICROVERSION, cinder_config, rbd_options

GiB = 1 << 30
KEY = "AQCj2YpRiAe6CxAA7/ETt7Hcl9IyxyYciVs47w=="
DATA = {"rbd_mon_host": "v1:127.0.0.1:6789", "rbd_client_name": "strongroom"}


class FakeCinder:
    """A stand-in Cinder v3 API: ``volumes`` and ``snapshots`` by id; every request is recorded with the
    microversion it named.  ``snapshot_status`` is what a new snapshot stays in; ``driver_volume_type``
    what ``os-initialize_connection`` answers."""

    def __init__(self, versions: list[dict[str, str]] | None = None) -> None:
        self.versions = versions if versions is not None else [{"id": "v3.0", "version": "3.71", "status": "CURRENT"}]
        self.volumes: dict[str, dict[str, Any]] = {}
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.snapshot_status = "available"
        self.driver_volume_type = "rbd"
        self.requests: list[tuple[str, str, str | None]] = []
        #: The ``X-Auth-Token`` of each request, and the tokens answered 401.
        self.tokens: list[str | None] = []
        self.refused_tokens: set[str] = set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, code: int, body: Any = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append((method, self.path, self.headers.get("OpenStack-API-Version")))
                fake.tokens.append(self.headers.get("X-Auth-Token"))
                if self.headers.get("X-Auth-Token") in fake.refused_tokens:
                    self._answer(401, {"error": {"message": "The request you have made requires authentication."}})
                    return
                code, answer = fake.route(method, self.path.split("?")[0], body)
                self._answer(code, answer)

            def do_GET(self) -> None:  # noqa: N802 - http.server's names
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def do_DELETE(self) -> None:  # noqa: N802
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v3"

    def add_volume(self, name: str = "db", **extra: Any) -> str:
        volume_id = str(uuid.uuid4())
        self.volumes[volume_id] = {"id": volume_id, "name": name, "size": 1, "status": "available",
                                   "metadata": {}, "attachments": [], **extra}
        return volume_id

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.removeprefix("/v3").strip("/").split("/")
        if parts == [""]:
            return 300, {"versions": self.versions}
        if parts[0] == "volumes" and len(parts) == 1 and method == "GET" or parts == ["volumes", "detail"]:
            return 200, {"volumes": list(self.volumes.values())}
        if parts[0] == "volumes" and len(parts) == 2 and parts[1] in self.volumes:
            return 200, {"volume": self.volumes[parts[1]]}
        if parts[0] == "volumes" and parts[-1] == "action" and "os-initialize_connection" in (body or {}):
            data = ({"name": f"volumes/volume-{parts[1]}"} if self.driver_volume_type == "rbd"
                    else {"target_iqn": "iqn.2010-10.org.openstack:x"})
            return 200, {"connection_info": {"driver_volume_type": self.driver_volume_type, "data": data}}
        if parts == ["snapshots"] and method == "POST":
            made = {**body["snapshot"], "id": str(uuid.uuid4()), "status": self.snapshot_status, "size": 1,
                    "created_at": "2024-01-01T00:00:00.000000"}
            self.snapshots[made["id"]] = made
            return 202, {"snapshot": made}
        if parts[0] == "snapshots" and len(parts) == 2 and parts[1] in self.snapshots:
            if method == "DELETE":
                del self.snapshots[parts[1]]
                return 202, None
            return 200, {"snapshot": self.snapshots[parts[1]]}
        if parts[0] in ("snapshots",) and parts[-1] in ("detail", "snapshots"):
            return 200, {"snapshots": list(self.snapshots.values())}
        return 404, {"itemNotFound": {"message": f"no {path}", "code": 404}}


@pytest.fixture
def fake() -> Iterator[FakeCinder]:
    cinder = FakeCinder()
    cinder.thread.start()
    try:
        yield cinder
    finally:
        cinder.server.shutdown()
        cinder.server.server_close()


class FakeClock:
    """Time that passes only when the backend sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def backend_on(fake: FakeCinder, clock: FakeClock | None = None, **extra: Any) -> CinderBackend:
    options = {"endpoint": fake.endpoint, "project_id": "demo", "timeout": 5, **DATA, **extra}
    if clock is None:
        return CinderBackend(options)
    return CinderBackend(options, clock=clock, sleep=clock.sleep)


# -- options ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "named"), [
    ({"endpoint": "http://c/v3"}, "rbd_conf_file"),  # no data path
    ({**DATA}, "endpoint"),  # noauth needs the endpoint
    ({**DATA, "auth_url": "http://k/v3", "username": "u"}, "password"),
    ({**DATA, "auth_url": "http://k/v3", "password": "pw"}, "username"),
    ({**DATA, "auth_type": "v3applicationcredential", "auth_url": "http://k/v3",
      "application_credential_id": "i"}, "application_credential_secret"),
    ({**DATA, "endpoint": "http://c/v3", "status_timeout": 0}, "status_timeout"),
    ({**DATA, "endpoint": "http://c/v3", "interface": "private"}, "interface"),
    ({**DATA, "endpoint": "http://c/v3", "volume_typ": "fast"}, "volume_typ"),
])
def test_bad_options_are_named(options: dict[str, Any], named: str) -> None:
    with pytest.raises(exceptions.ConfigError, match=named) as err:
        CinderBackend(options)
    assert "cinder block backend" in str(err.value)


@pytest.mark.parametrize("secret", ["rbd_key", "password", "application_credential_secret"])
def test_an_invalid_secret_is_named_never_quoted(secret: str) -> None:
    value = ["s3cr3t-" + secret]
    with pytest.raises(exceptions.ConfigError, match=secret) as err:
        CinderBackend({**DATA, "endpoint": "http://c/v3", secret: value})
    assert "s3cr3t" not in str(err.value)


def test_keystone_options_become_the_config_and_the_data_path_options() -> None:
    options = {**DATA, "auth_url": "http://keystone:5000/v3", "username": "backup", "password": "s3cr3t",
               "project_name": "ops", "rbd_key": KEY, "rbd_op_timeout": 7, "read_workers": 2}
    config = cinder_config(options)
    assert (config.auth_type, config.where, config.status_timeout) == (
        "password", "the catalogue of http://keystone:5000/v3", 300.0)
    assert "s3cr3t" not in repr(config)
    assert rbd_options(options, "volumes") == {"mon_host": DATA["rbd_mon_host"], "client_name": "strongroom",
                                               "key": KEY, "op_timeout": 7, "read_workers": 2, "pool": "volumes"}
    assert rbd_options({**options, "rbd_pool": "fast"}, "volumes")["pool"] == "fast"


# -- microversion ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("versions", "expected"), [
    ([{"id": "v3.0", "version": "3.71"}], MAX_MICROVERSION),  # a newer server: what we know
    ([{"id": "v3.0", "version": "3.59"}], (3, 59)),  # an older one: what it has
    ([{"id": "v2.0", "version": ""}, {"id": "v3.0", "version": "3.27"}], (3, 27)),
    ([{"id": "v3.0", "version": ""}], (3, 0)),  # announces none
    ([{"id": "v3.0", "version": "three"}], (3, 0)),
    ([], (3, 0)),
])
def test_microversion_is_the_lower_of_ours_and_the_servers(versions: list[dict[str, str]],
                                                          expected: tuple[int, int]) -> None:
    assert _negotiate({"versions": versions}) == expected


def test_every_request_names_the_negotiated_microversion_read_once(fake: FakeCinder) -> None:
    fake.versions = [{"id": "v3.0", "version": "3.50"}]
    volume_id = fake.add_volume()
    backend = backend_on(fake)
    assert [v.id for v in backend.list_volumes()] == [volume_id]
    assert backend.get_volume(volume_id).name == "db"
    assert [r for r in fake.requests if r[1] == "/v3/"] == [("GET", "/v3/", None)]
    assert {r[2] for r in fake.requests if r[1] != "/v3/"} == {"volume 3.50"}
    backend.close()


# -- refusals ---------------------------------------------------------------------------------------------


def test_a_volume_not_on_rbd_is_refused_naming_its_driver_type(fake: FakeCinder) -> None:
    fake.driver_volume_type = "iscsi"
    volume_id = fake.add_volume()
    backend = backend_on(fake)
    with pytest.raises(exceptions.BlockError) as err:
        backend.open_volume_reader(volume_id)
    assert "iscsi" in str(err.value) and volume_id in str(err.value) and "'rbd'" in str(err.value)
    backend.close()


def test_a_snapshot_stuck_creating_fails_within_the_timeout_naming_the_volume(fake: FakeCinder) -> None:
    fake.snapshot_status = "creating"
    volume_id = fake.add_volume(name="database")
    clock = FakeClock()
    backend = backend_on(fake, clock, status_timeout=30)
    with pytest.raises(exceptions.BlockError) as err:
        backend.create_snapshot(volume_id)
    message = str(err.value)
    assert "database" in message and volume_id in message and "still creating after 30 s" in message
    assert 30 <= clock.now <= 32  # gave up once the timeout passed, not long after
    assert fake.snapshots == {}, "the stuck snapshot is deleted, not left behind"
    backend.close()


def test_the_rbd_location_is_asked_again_once_the_volume_record_changes(
        fake: FakeCinder, monkeypatch: pytest.MonkeyPatch) -> None:
    volume_id = fake.add_volume(updated_at="2024-01-01T00:00:00.000000")
    backend = backend_on(fake)
    monkeypatch.setattr(backend, "_connection", lambda pool: pool)  # no Ceph: the location is the point

    def asked() -> int:
        return sum(1 for method, path, _ in fake.requests if path.endswith("/action"))

    assert backend._rbd_image(backend._raw_volume(volume_id)) == ("volumes", f"volume-{volume_id}")
    backend._rbd_image(backend._raw_volume(volume_id))
    assert asked() == 1  # the same record: asked once
    fake.volumes[volume_id]["updated_at"] = "2024-01-02T00:00:00.000000"  # migrated, retyped, attached...
    backend._rbd_image(backend._raw_volume(volume_id))
    assert asked() == 2
    backend.close()


# -- projects and the user's token ---------------------------------------------------------------------------

#: Keystone options whose identity is never asked for here: the endpoint is given, and every request below is
#: made with a user's token (act_as_user) or by a noauth backend.
KEYSTONE = {**DATA, "auth_url": "http://127.0.0.1:9/v3", "username": "backup", "password": "pw-never-shown",
            "project_id": "alpha"}


@pytest.mark.parametrize(("options", "named"), [
    ({**DATA, "endpoint": "http://c/v3", "act_as_user": True}, "act_as_user"),  # noauth has no user tokens
    ({**KEYSTONE, "act_as_user": "yes"}, "act_as_user"),
])
def test_bad_act_as_user_is_named(options: dict[str, Any], named: str) -> None:
    with pytest.raises(exceptions.ConfigError, match=named) as err:
        CinderBackend(options)
    assert "cinder block backend" in str(err.value)


def test_act_as_user_sends_the_users_token_in_the_users_project(fake: FakeCinder) -> None:
    mine = fake.add_volume("mine")
    backend = CinderBackend({**KEYSTONE, "endpoint": fake.endpoint, "act_as_user": True})
    token = "gAAAAB-the-users-token"
    as_user = backend.for_project("beta", token)
    assert as_user is backend.for_project("beta", token), "the user's backend is kept"
    assert as_user is not backend.for_project("beta", "gAAAAB-another-token")
    assert [v.id for v in as_user.list_volumes()] == [mine]
    assert as_user.api.project_id == "beta"
    assert set(fake.tokens) == {token}, "a request went without the user's token (or with the other one)"
    assert token not in repr(as_user) and token not in repr(as_user.api) and token not in str(as_user.describe())
    assert as_user._connections is backend._connections, "the data path is shared, not reopened per token"
    # Without a token (a job board's run, reclaim), or without act_as_user, the configured identity acts.
    assert backend.for_project("alpha") is backend
    plain = CinderBackend({**KEYSTONE, "endpoint": fake.endpoint})
    assert plain.for_project("beta", token) is not as_user and plain.for_project("beta", token)._foreign == "beta"
    backend.close()
    plain.close()


def test_a_token_cinder_refuses_is_forbidden_naming_no_token(fake: FakeCinder) -> None:
    fake.add_volume()
    fake.refused_tokens.add("gAAAAB-expired")
    backend = CinderBackend({**KEYSTONE, "endpoint": fake.endpoint, "act_as_user": True})
    with pytest.raises(exceptions.Forbidden) as err:
        backend.for_project("beta", "gAAAAB-expired").list_volumes()
    assert "user's token" in str(err.value) and "gAAAAB-expired" not in str(err.value)
    backend.close()


def test_another_projects_view_shows_only_records_naming_that_project(fake: FakeCinder) -> None:
    """An admin's all_tenants listing is filtered by Cinder; were it not (or for a record without the project
    attribute, which a non-admin sees of its own project), nothing of another project is shown."""
    theirs = fake.add_volume("theirs", **{"os-vol-tenant-attr:tenant_id": "beta"})
    fake.add_volume("ours", **{"os-vol-tenant-attr:tenant_id": "alpha"})
    unnamed = fake.add_volume("unnamed")
    backend = backend_on(fake, project_id="alpha")
    backend._foreign = "beta"  # what for_project gives with Keystone for another project
    assert [v.name for v in backend.list_volumes()] == ["theirs"]
    assert backend.get_volume(theirs).name == "theirs"
    with pytest.raises(exceptions.VolumeNotFound):
        backend.get_volume(unnamed)
    for make in (lambda: backend.create_volume(GiB, "new"), lambda: backend.create_snapshot(theirs)):
        with pytest.raises(exceptions.Forbidden) as err:
            make()
        assert "alpha" in str(err.value) and "beta" in str(err.value)
    assert not any(method == "POST" for method, _, _ in fake.requests), "something was made for beta"
    backend.close()
