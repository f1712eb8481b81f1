"""SwiftBank: what the conformance suite does not cover.

Two kinds of tests here:

* against the real Swift all-in-one (``swift_server``): expiry by ``X-Delete-After``,
  the server's clock, a server that is down or refuses the key, and secrets kept out
  of ``repr()``, error messages and log records;
* with ``FakeSwiftConnection`` / ``FakeKeystoneSession`` (clearly fakes, injected through
  the bank's ``connection_factory`` / ``session_factory``), for what the real servers
  cannot show on cue: the arguments a Keystone v3 bank hands swiftclient (a real
  Keystone and Swift are in ``tests/functional/test_swift_keystone.py``) and exact
  failures (5xx, timeouts, resets, TLS) at exact moments.
"""

from __future__ import annotations

import datetime as _dt
import io
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
from hypothesis import given
from hypothesis import strategies as st
from swiftclient.client import get_auth
from swiftclient.exceptions import ClientException

from strongroom import exceptions
from strongroom.bank_plugins.retry import RetryingBank
from strongroom.bank_plugins.swift import (
    MiB,
    SwiftBank,
    connection_kwargs,
    decode_metadata_value,
    encode_metadata_value,
    keystone_auth_kwargs,
)
from strongroom.protection.providers import Provider, parse_ini
from tests.servers.swift import SwiftServer

KEYSTONE_V3 = {
    "auth_url": "https://keystone.example.test:5000/v3", "auth_version": "3", "user": "backup-svc",
    "key": "pa55-KEYSTONE-never-shown", "project_name": "backups", "project_domain_name": "Default",
    "user_domain_id": "default", "region_name": "RegionTwo", "interface": "internal",
    "container": "checkpoints", "timeout": 7.5, "cacert": "/etc/ssl/private-ca.pem",
}
FAKE_STORAGE_URL = "https://swift.example.test:8080/v1/AUTH_backups"
FAKE_TOKEN = "gAAAAAB-fake-token-never-shown"


# -- fakes ------------------------------------------------------------------------


class FakeKeystoneSession:
    """Stands in for a keystoneauth1 session; records the options it was made from."""

    made: list[FakeKeystoneSession] = []

    def __init__(self, options: Any) -> None:
        self.options = dict(options)
        self.tokens = 0
        FakeKeystoneSession.made.append(self)

    def get_token(self) -> str:
        self.tokens += 1
        return FAKE_TOKEN


class FakeSwiftConnection:
    """Stands in for ``swiftclient.client.Connection``: records its kwargs and calls.

    ``behaviour`` maps a method name to an exception to raise or a function giving
    the result; other calls succeed with an empty answer.
    """

    def __init__(self, behaviour: dict[str, Any], **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.behaviour = behaviour
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.url = FAKE_STORAGE_URL
        self.token = FAKE_TOKEN
        self.closed = False

    def _do(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((name, args, kwargs))
        action = self.behaviour.get(name)
        if isinstance(action, BaseException):
            raise action
        if callable(action):
            return action(*args, **kwargs)
        return {"head_object": {}, "head_container": {}, "get_object": ({}, b""),
                "get_container": ({}, [])}.get(name, "")

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith(("put_", "get_", "head_", "delete_")):
            return lambda *args, **kwargs: self._do(name, *args, **kwargs)
        raise AttributeError(name)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake() -> Iterator[tuple[Callable[..., SwiftBank], list[FakeSwiftConnection], dict[str, Any]]]:
    """(make a bank on fakes, the connections it made, the behaviour they follow)."""
    made: list[FakeSwiftConnection] = []
    behaviour: dict[str, Any] = {}
    FakeKeystoneSession.made.clear()

    def factory(**kwargs: Any) -> FakeSwiftConnection:
        conn = FakeSwiftConnection(behaviour, **kwargs)
        made.append(conn)
        return conn

    def make(options: dict[str, Any] | None = None) -> SwiftBank:
        return SwiftBank(options or KEYSTONE_V3, connection_factory=factory, session_factory=FakeKeystoneSession)

    yield make, made, behaviour


def http_error(status: int, reason: str = "", body: bytes = b"") -> ClientException:
    return ClientException("Object PUT failed", http_scheme="https", http_host="swift.example.test",
                           http_port=8080, http_path="/v1/AUTH_backups/checkpoints/k", http_status=status,
                           http_reason=reason, http_response_content=body)


def assert_no_secrets(text: str, *secrets: str) -> None:
    for secret in (KEYSTONE_V3["key"], FAKE_TOKEN, *secrets):
        assert secret not in text


# -- options --------------------------------------------------------------------


V1 = {"auth_url": "http://127.0.0.1:8080/auth/v1.0", "user": "test:tester", "key": "k3y-never-shown",
      "container": "c"}


@pytest.mark.parametrize(("change", "option"), [
    ({"container": None}, "container"),
    ({"colour": "blue"}, "colour"),
    ({"auth_version": "2"}, "auth_version"),
    ({"key": None}, "key"),
    ({"key": 12345}, "key"),
    ({"user": ""}, "user"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": "soon"}, "timeout"),
    ({"insecure": "yes"}, "insecure"),
    ({"segment_size": 1000}, "segment_size"),
    ({"large_object_threshold": 6 << 30}, "large_object_threshold"),
    ({"project_name": "p"}, "project_name"),
    ({"region_name": "r"}, "region_name"),
    ({"preauth_url": "http://127.0.0.1:8080/v1/AUTH_x"}, "preauth_token"),
    ({"preauth_token": "t0k"}, "preauth_url"),
    ({"container": "a/b"}, "container"),
    ({"container": "c" * 257}, "container"),
    ({"segment_container": "c"}, "segment_container"),
    ({"lease_renew_window": 0}, "lease_renew_window"),
    ({"auth_url": "http://test:k3y-never-shown@127.0.0.1:8080/auth/v1.0"}, "auth_url"),
    ({"auth_url": "127.0.0.1:8080"}, "auth_url"),
])
def test_bad_options_are_refused_naming_the_option(change: dict[str, Any], option: str) -> None:
    options = {k: v for k, v in {**V1, **change}.items() if v is not None}
    with pytest.raises(exceptions.ConfigError) as excinfo:
        SwiftBank(options)
    message = str(excinfo.value)
    assert f"'{option}'" in message
    assert "k3y-never-shown" not in message and "12345" not in message


@pytest.mark.parametrize(("change", "option"), [
    ({"project_name": None}, "project_name"),
    ({"project_domain_name": None}, "project_domain_name"),
    ({"user_domain_id": None}, "user_domain_name"),
    ({"interface": "private"}, "interface"),
    ({"key": None}, "key"),
])
def test_bad_keystone_options_are_refused_naming_the_option(change: dict[str, Any], option: str) -> None:
    options = {k: v for k, v in {**KEYSTONE_V3, **change}.items() if v is not None}
    with pytest.raises(exceptions.ConfigError) as excinfo:
        SwiftBank(options)
    assert f"'{option}'" in str(excinfo.value)


def test_good_options_need_no_server() -> None:
    SwiftBank(V1)
    SwiftBank(KEYSTONE_V3)
    SwiftBank({"preauth_url": "http://127.0.0.1:8080/v1/AUTH_x", "preauth_token": "t", "container": "c"})
    by_id = {k: v for k, v in KEYSTONE_V3.items() if not k.startswith("project_")}
    SwiftBank({**by_id, "project_id": "0123abcd"})


def test_the_sample_provider_file_is_valid() -> None:
    sample = Path(__file__).resolve().parents[3] / "providers.d" / "swift.conf"
    provider = Provider(parse_ini(str(sample), {"state_dir": "/nonexistent"}))
    assert not provider.enabled
    bank = SwiftBank(provider.bank_options)  # also the checks that span several options
    assert bank.container == "strongroom-checkpoints"


# -- Keystone v3 (no Keystone here: fakes) ------------------------------------------


def test_keystone_v3_options_become_a_password_plugin() -> None:
    from keystoneauth1.identity import v3

    kwargs = keystone_auth_kwargs(KEYSTONE_V3)
    assert kwargs == {"auth_url": "https://keystone.example.test:5000/v3", "username": "backup-svc",
                      "password": "pa55-KEYSTONE-never-shown", "project_name": "backups",
                      "project_domain_name": "Default", "user_domain_id": "default"}
    v3.Password(**kwargs)  # the real plugin accepts these names (it connects only when asked)


def test_keystone_v3_connections_share_one_session(fake: Any) -> None:
    make, made, behaviour = fake
    bank = make()
    behaviour["head_object"] = lambda *args, **kwargs: {"content-length": "3", "x-timestamp": "1700000000.5"}
    threads = [threading.Thread(target=bank.head_object, args=(f"k{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bank.head_object("again")  # a connection taken from the pool gets the session's current token
    assert len(FakeKeystoneSession.made) == 1
    session = FakeKeystoneSession.made[0]
    assert session.options["key"] == KEYSTONE_V3["key"]
    assert session.tokens >= 1
    for conn in made:
        assert conn.kwargs["session"].shared is session  # each connection's view of the one session
        assert conn.kwargs == {
            "retries": 0, "starting_backoff": 0, "max_backoff": 0, "retry_on_ratelimit": False,
            "timeout": 7.5, "insecure": False, "cacert": "/etc/ssl/private-ca.pem", "auth_version": "3",
            "session": conn.kwargs["session"],
            "os_options": {"service_type": "object-store", "endpoint_type": "internal", "region_name": "RegionTwo"},
        }


def test_v1_and_preauth_connection_kwargs() -> None:
    assert connection_kwargs(V1) == {
        "retries": 0, "starting_backoff": 0, "max_backoff": 0, "retry_on_ratelimit": False, "timeout": 30.0,
        "insecure": False, "authurl": V1["auth_url"], "user": "test:tester", "key": "k3y-never-shown",
        "auth_version": "1"}
    preauth = connection_kwargs({"preauth_url": "https://s/v1/AUTH_a", "preauth_token": "t", "container": "c",
                                 "insecure": True})
    assert preauth["preauthurl"] == "https://s/v1/AUTH_a" and preauth["preauthtoken"] == "t"
    assert preauth["insecure"] is True and "authurl" not in preauth


# -- error mapping (fakes) -------------------------------------------------------------


@pytest.mark.parametrize(("error", "transient"), [
    (http_error(500, "Internal Error"), True),
    (http_error(503, "Service Unavailable", b"<html><h1>Service Unavailable</h1></html>"), True),
    (http_error(507, "Insufficient Storage"), True),
    (http_error(408, "Request Timeout"), True),
    (http_error(429, "Too Many Requests"), True),
    (http_error(499, "Client Disconnect"), True),
    (http_error(401, "Unauthorized"), False),
    (http_error(403, "Forbidden"), False),
    (http_error(400, "Bad Request", b"Metadata value longer than 256"), False),
    (ClientException("put_object('c', 'k', ...) failure and no ability to reset contents for reupload."), True),
    (requests.exceptions.ReadTimeout("HTTPSConnectionPool(host='swift.example.test', port=8080): Read timed out."),
     True),
    (requests.exceptions.ConnectTimeout("connect timed out"), True),
    (requests.exceptions.ConnectionError("Connection refused"), True),
    (requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"), True),
    (requests.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), False),
    (ConnectionResetError(104, "Connection reset by peer"), True),
    (TimeoutError("timed out"), True),
    (urllib3.exceptions.ProtocolError("Connection aborted."), True),
])
def test_failures_map_to_transient_or_permanent_bank_errors(fake: Any, error: BaseException,
                                                            transient: bool) -> None:
    make, made, behaviour = fake
    bank = make()
    behaviour["put_object"] = error
    with pytest.raises(exceptions.BankError) as excinfo:
        bank.put_object("k", b"value")
    assert isinstance(excinfo.value, exceptions.BankTransientError) is transient
    message = str(excinfo.value)
    assert "'checkpoints'" in message and "swift.example.test:8080" in message and "'k'" in message
    assert "<html" not in message
    assert_no_secrets(message)


def test_keystone_failures_map_too(fake: Any) -> None:
    from keystoneauth1 import exceptions as ks

    make, made, behaviour = fake
    bank = make()
    behaviour["head_object"] = ks.ConnectFailure("Unable to establish connection to keystone.example.test")
    with pytest.raises(exceptions.BankTransientError):
        bank.head_object("k")
    behaviour["head_object"] = ks.Unauthorized("The request you have made requires authentication.")
    with pytest.raises(exceptions.BankError) as excinfo:
        bank.head_object("k")
    assert not isinstance(excinfo.value, exceptions.TransientError)


def test_retrying_bank_retries_5xx_until_it_passes(fake: Any) -> None:
    make, made, behaviour = fake
    failures = [http_error(503, "Service Unavailable"), requests.exceptions.ReadTimeout("read timed out")]

    def put(*args: Any, **kwargs: Any) -> str:
        if failures:
            raise failures.pop(0)
        return ""

    behaviour["put_object"] = put
    RetryingBank(make(), sleep=lambda seconds: None).put_object("k", b"value")
    assert not failures


def test_a_transport_failure_discards_the_connection_an_http_error_does_not(fake: Any) -> None:
    make, made, behaviour = fake
    bank = make()
    behaviour["head_object"] = http_error(404, "Not Found")
    for _ in range(3):
        assert not bank.object_exists("k")
    assert len(made) == 1 and not made[0].closed
    behaviour["head_object"] = requests.exceptions.ConnectionError("reset")
    with pytest.raises(exceptions.BankTransientError):
        bank.head_object("k")
    assert made[0].closed
    behaviour.pop("head_object")
    bank.object_exists("k")
    assert len(made) == 2


def test_read_failure_mid_stream_is_transient(fake: Any) -> None:
    make, made, behaviour = fake
    bank = make()

    class BreakingBody:
        def __init__(self) -> None:
            self.sent = 0

        def read(self, n: int) -> bytes:
            if self.sent:
                raise urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead(100 bytes read)")
            self.sent = 100
            return b"x" * 100

        def close(self) -> None:
            pass

    behaviour["get_object"] = lambda *args, **kwargs: ({}, BreakingBody())
    stream = bank.open_object("k")
    with pytest.raises(exceptions.BankTransientError) as excinfo:
        stream.read()
    stream.close()
    assert "'k'" in str(excinfo.value)
    assert made[0].closed


def test_failed_manifest_removes_the_uploaded_segments(fake: Any) -> None:
    make, made, behaviour = fake
    bank = make({**KEYSTONE_V3, "large_object_threshold": MiB, "segment_size": MiB})

    def put(container: str, name: str, contents: Any, **kwargs: Any) -> str:
        if kwargs.get("query_string") == "multipart-manifest=put":
            raise http_error(503, "Service Unavailable")
        import hashlib

        md5 = hashlib.md5(usedforsecurity=False)
        while piece := contents.read(65536):
            md5.update(piece)
        return md5.hexdigest()

    behaviour["put_object"] = put
    behaviour["head_object"] = http_error(404, "Not Found")
    with pytest.raises(exceptions.BankTransientError):
        bank.put_object("big", io.BytesIO(b"z" * (3 * MiB)))
    calls = [call for conn in made for call in conn.calls]
    segments = [args[1] for name, args, _ in calls if name == "put_object" and args[0] == "checkpoints_segments"]
    deleted = [args[1] for name, args, _ in calls if name == "delete_object"]
    assert len(segments) == 3 and deleted == segments


def test_metadata_too_big_for_swift_is_refused_before_sending(fake: Any) -> None:
    make, made, behaviour = fake
    bank = make()
    with pytest.raises(exceptions.BankError) as excinfo:
        bank.put_object("k", b"v", {"note": "\u00e9" * 100})  # 600 bytes once encoded
    assert "'note'" in str(excinfo.value) and "256" in str(excinfo.value)
    assert not [call for conn in made for call in conn.calls if call[0] == "put_object"]


@given(st.text())
def test_metadata_values_encode_reversibly_into_header_safe_text(value: str) -> None:
    stored = encode_metadata_value(value)
    assert stored and all("!" <= ch <= "~" for ch in stored)
    assert decode_metadata_value(stored) == value


def test_repr_and_options_hide_secrets() -> None:
    bank = SwiftBank({**V1, "preauth_url": "http://127.0.0.1:8080/v1/AUTH_x", "preauth_token": "t0k3n-never-shown"})
    for text in (repr(bank), str(bank.options), repr(bank.options), repr(RetryingBank(bank))):
        assert "k3y-never-shown" not in text and "t0k3n-never-shown" not in text
    assert "'c'" in repr(bank) and "127.0.0.1:8080" in repr(bank)


# -- against the real server ------------------------------------------------------


def test_a_server_that_is_down_fails_on_first_use_not_at_construction(swift_server: SwiftServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bank = SwiftBank({**swift_server.bank_options("c"), "auth_url": f"http://127.0.0.1:{port}/auth/v1.0",
                      "timeout": 2})
    for attempt in (lambda: bank.put_object("k", b"v"), lambda: bank.get_object("k"), bank.list_objects):
        with pytest.raises(exceptions.BankTransientError) as excinfo:
            attempt()
        assert f"127.0.0.1:{port}" in str(excinfo.value) and "'c'" in str(excinfo.value)
        assert swift_server.key not in str(excinfo.value)
    bank.close()


def test_a_wrong_key_is_a_permanent_error_that_does_not_quote_it(swift_server: SwiftServer) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    bank = SwiftBank(swift_server.bank_options(swift_server.new_container("wrong-key"), key=wrong))
    with pytest.raises(exceptions.BankError) as excinfo:
        bank.put_object("k", b"v")
    assert not isinstance(excinfo.value, exceptions.TransientError)
    assert "authentication failed" in str(excinfo.value) and wrong not in str(excinfo.value)


def test_expiring_object_is_gone_by_the_server_clock(swift_server: SwiftServer) -> None:
    bank = SwiftBank(swift_server.bank_options(swift_server.new_container("expiry")))
    try:
        bank.put_object("lasting", b"stays")
        now = bank.server_time()
        assert now is not None
        # Three seconds: a loaded machine may take more than one between the put and the head.
        bank.put_expiring_object("lease", b"held", {"owner": "svc-1"}, delete_after=3)
        info = bank.head_object("lease")
        assert info.expires_at is not None and info.expires_at.tzinfo is not None
        assert now <= info.expires_at <= now + _dt.timedelta(seconds=5)
        assert dict(info.metadata) == {"owner": "svc-1"}
        assert bank.head_object("lasting").expires_at is None
        # No object expirer runs with this server: the 404 comes from the object server
        # comparing X-Delete-At with its own clock.
        deadline = time.monotonic() + 10
        while bank.object_exists("lease"):
            assert time.monotonic() < deadline, "the object did not expire"
            time.sleep(0.2)
        server_now = bank.server_time()
        assert server_now is not None and server_now >= info.expires_at
        for attempt in (bank.get_object, bank.head_object, bank.open_object):
            with pytest.raises(exceptions.BankObjectNotFound):
                attempt("lease")
        assert bank.get_object("lasting") == b"stays"
        with pytest.raises(exceptions.InvalidInput):
            bank.put_expiring_object("lease", b"x", None, delete_after=0)
    finally:
        bank.close()


def test_server_time_is_the_servers_and_close_to_now(swift_server: SwiftServer) -> None:
    bank = SwiftBank(swift_server.bank_options(swift_server.new_container("never-created")))
    server_now = bank.server_time()  # a missing container answers too, with its Date
    assert server_now is not None and server_now.tzinfo is not None
    assert abs(server_now - _dt.datetime.now(_dt.UTC)) < _dt.timedelta(seconds=5)
    assert bank.list_objects() == []  # reading does not create the container
    with pytest.raises(exceptions.BankObjectNotFound):
        bank.head_object("k")


def test_no_credentials_in_debug_logs(swift_server: SwiftServer, caplog: pytest.LogCaptureFixture) -> None:
    bank = SwiftBank(swift_server.bank_options(swift_server.new_container("log-check")))
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="swiftclient"):
        bank.put_object("k", b"value", {"a": "b"})
        bank.put_object("k", b"value 2")
        assert bank.get_object("k") == b"value 2"
        with pytest.raises(exceptions.BankObjectNotFound):
            bank.head_object("missing")
        bank.delete_object("k")
    bank.close()
    _, token = get_auth(swift_server.auth_url, swift_server.user, swift_server.key)  # tempauth hands out the same
    assert token and token.startswith("AUTH_tk")
    logged = "\n".join(f"{record.name}: {record.getMessage()}" for record in caplog.records)
    assert "swiftclient" in logged and "X-Auth-Token" in logged, "swiftclient logged nothing: the test is void"
    assert swift_server.key not in logged.replace("test:tester", "")
    assert token not in logged and token[7:19] not in logged


def test_connections_refused_one_revoked_token_at_once_all_authenticate_again() -> None:
    """swiftclient retries a 401 only if its session's ``invalidate()`` says True; keystoneauth's plugin says it
    to the first caller only, so each connection's view answers for itself (a real revocation, with
    concurrent connections, is in tests/functional/test_swift_keystone.py)."""
    from types import SimpleNamespace

    from strongroom.bank_plugins.swift.pool import ConnectionSession

    class Shared:
        def __init__(self) -> None:
            self.auth = SimpleNamespace(auth_ref=SimpleNamespace(auth_token="old"))
            self.issued = 0

        def get_token(self) -> str:
            if self.auth.auth_ref is None:
                self.issued += 1
                self.auth.auth_ref = SimpleNamespace(auth_token=f"new-{self.issued}")
            return str(self.auth.auth_ref.auth_token)

        def invalidate(self) -> bool:
            self.auth.auth_ref = None
            return True

    shared, lock = Shared(), threading.Lock()
    first, second = ConnectionSession(shared, lock), ConnectionSession(shared, lock)
    assert first.get_token() == second.get_token() == "old"
    assert first.invalidate() is True        # drops "old"
    assert first.get_token() == "new-1"
    assert second.invalidate() is True       # also refused "old": retries, but keeps first's new token
    assert second.get_token() == "new-1" and shared.issued == 1
    assert second.invalidate() is True and second.get_token() == "new-2"  # "new-1" refused too: dropped
