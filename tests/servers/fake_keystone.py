"""FakeKeystone: a FAKE Keystone v3 HTTP server with just enough of the API for trusts, for unit tests.

The functional tests run a real Keystone (:mod:`tests.servers.keystone`,
``tests/functional/test_keystone_trusts.py``); this server is for the fast unit tests.  It answers the calls
keystoneauth1 makes for ``v3.Password`` (unscoped, or scoped to a trust) and the trust calls of
:class:`strongroom.operationengine.identity.KeystoneTrusts`, on 127.0.0.1 with a real HTTP stack, so the
code under test is the real keystoneauth1 code path.  It checks what Keystone would refuse: a trust created
with another user's token, a trust for roles the trustor lacks, a revoked trust, and answers as Keystone 30
does (a token for a revoked trust: a bare 401).

    POST   /v3/auth/tokens               password auth; ``scope: {"OS-TRUST:trust": {"id"}}`` for trusts
    POST   /v3/OS-TRUST/trusts           with the trustor's token
    GET    /v3/OS-TRUST/trusts/{id}      with the trustor's or the trustee's token
    DELETE /v3/OS-TRUST/trusts/{id}      with the trustor's token (Keystone: or an administrator's)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclasses.dataclass
class User:
    id: str
    name: str
    password: str
    roles: dict[str, list[str]]  # project id -> role names


class FakeKeystone:
    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.tokens: dict[str, dict[str, Any]] = {}  # token -> {"user", "project", "roles", "trust"}
        self.trusts: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up by tests --------------------------------------------------------

    def add_user(self, name: str, password: str, roles: dict[str, list[str]] | None = None) -> User:
        user = User(id=f"{name}-id", name=name, password=password, roles=roles or {})
        self.users[user.id] = user
        return user

    def issue_token(self, user: User, project_id: str) -> str:
        token = f"tok-{uuid.uuid4().hex}"
        self.tokens[token] = {"user": user, "project": project_id, "roles": user.roles.get(project_id, []),
                              "trust": None}
        return token

    def revoke_trust(self, trust_id: str) -> None:
        with self._lock:
            self.trusts.pop(trust_id, None)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v3"

    # -- server -----------------------------------------------------------------

    def start(self) -> None:
        keystone = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str) -> None:
                self._send(status, {"error": {"code": status, "message": message, "title": "Error"}})

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                keystone.calls.append(f"POST {self.path}")
                if self.path == "/v3/auth/tokens":
                    self._tokens()
                elif self.path == "/v3/OS-TRUST/trusts":
                    self._create_trust()
                else:
                    self._error(404, "not found")

            def do_GET(self) -> None:  # noqa: N802
                keystone.calls.append(f"GET {self.path}")
                prefix = "/v3/OS-TRUST/trusts/"
                caller = keystone.tokens.get(self.headers.get("X-Auth-Token", ""))
                if not self.path.startswith(prefix) or caller is None:
                    self._error(401, "The request you have made requires authentication.")
                    return
                with keystone._lock:
                    trust = keystone.trusts.get(self.path[len(prefix):])
                if trust is None:
                    self._error(404, "Could not find trust.")
                elif caller["user"].id not in (trust["trustor_user_id"], trust["trustee_user_id"]):
                    self._error(403, "You are not authorized to perform the requested action.")
                else:
                    self._send(200, {"trust": {**trust, "roles": [{"name": n} for n in trust["roles"]]}})

            def do_DELETE(self) -> None:  # noqa: N802
                keystone.calls.append(f"DELETE {self.path}")
                prefix = "/v3/OS-TRUST/trusts/"
                caller = keystone.tokens.get(self.headers.get("X-Auth-Token", ""))
                if not self.path.startswith(prefix) or caller is None:
                    self._error(401, "unauthorized")
                    return
                trust_id = self.path[len(prefix):]
                with keystone._lock:
                    trust = keystone.trusts.get(trust_id)
                    if trust is not None and trust["trustor_user_id"] == caller["user"].id:
                        del keystone.trusts[trust_id]
                if trust is None:
                    self._error(404, "Could not find trust.")
                elif trust_id in keystone.trusts:  # Keystone 30: only the trustor (or an administrator)
                    self._error(403, "You are not authorized to perform the requested action.")
                else:
                    self._send(204)

            def _tokens(self) -> None:
                auth = self._body().get("auth", {})
                spec = auth.get("identity", {}).get("password", {}).get("user", {})
                user = next((u for u in keystone.users.values()
                             if spec.get("name") in (u.name, None) and spec.get("id") in (u.id, None)), None)
                if user is None or spec.get("password") != user.password:
                    self._error(401, "The request you have made requires authentication.")
                    return
                trust_id = (auth.get("scope") or {}).get("OS-TRUST:trust", {}).get("id")
                token = f"tok-{uuid.uuid4().hex}"
                now = _dt.datetime.now(_dt.UTC)
                body: dict[str, Any] = {"methods": ["password"], "issued_at": now.isoformat(),
                                        "expires_at": (now + _dt.timedelta(hours=1)).strftime(
                                            "%Y-%m-%dT%H:%M:%S.000000Z"),
                                        "user": {"id": user.id, "name": user.name, "domain": {"id": "default"}}}
                record: dict[str, Any] = {"user": user, "project": None, "roles": [], "trust": None}
                if trust_id:
                    with keystone._lock:
                        trust = keystone.trusts.get(trust_id)
                    if trust is None or trust["trustee_user_id"] != user.id:  # Keystone 30: a bare 401
                        self._error(401, "The request you have made requires authentication.")
                        return
                    trustor = keystone.users[trust["trustor_user_id"]]
                    body["user"] = {"id": trustor.id, "name": trustor.name, "domain": {"id": "default"}}
                    body["project"] = {"id": trust["project_id"], "name": trust["project_id"],
                                       "domain": {"id": "default"}}
                    body["roles"] = [{"id": r, "name": r} for r in trust["roles"]]
                    body["OS-TRUST:trust"] = {"id": trust_id, "impersonation": True,
                                              "trustor_user": {"id": trustor.id}, "trustee_user": {"id": user.id}}
                    body["catalog"] = []
                    record = {"user": trustor, "project": trust["project_id"], "roles": trust["roles"],
                              "trust": trust_id}
                keystone.tokens[token] = record
                self._send(201, {"token": body}, {"X-Subject-Token": token})

            def _create_trust(self) -> None:
                caller = keystone.tokens.get(self.headers.get("X-Auth-Token", ""))
                if caller is None:
                    self._error(401, "The request you have made requires authentication.")
                    return
                trust = self._body().get("trust", {})
                if trust.get("trustor_user_id") != caller["user"].id:
                    self._error(403, "The authenticated user should match the trustor.")
                    return
                project = trust.get("project_id")
                names = [r.get("name") for r in trust.get("roles", [])]
                missing = set(names) - set(caller["user"].roles.get(project, []))
                if missing:
                    self._error(403, f"trustor lacks roles {sorted(missing)} in project {project}")
                    return
                trust_id = uuid.uuid4().hex
                record = {"id": trust_id, "trustor_user_id": caller["user"].id,
                          "trustee_user_id": trust.get("trustee_user_id"), "project_id": project,
                          "roles": names, "impersonation": bool(trust.get("impersonation"))}
                with keystone._lock:
                    keystone.trusts[trust_id] = record
                self._send(201, {"trust": {**record, "roles": [{"name": n} for n in names]}})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def fake_keystone() -> Iterator[FakeKeystone]:
    """A FakeKeystone on 127.0.0.1 with the ``strongroom`` service user (the trustee)."""
    keystone = FakeKeystone()
    keystone.add_user("strongroom", "service-secret")
    keystone.start()
    try:
        yield keystone
    finally:
        keystone.stop()
