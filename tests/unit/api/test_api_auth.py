"""Policy decisions and the keystone pipeline, without a Keystone: the token-free path is exercised by
giving the app the identity headers keystonemiddleware would set, and policy is checked directly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import webob
from apiharness import ADMIN_TOKEN

from strongroom import exceptions
from strongroom.api import auth, policy, rules
from strongroom.api.app import RootApp, V1App, make_app
from strongroom.config import new_conf
from strongroom.context import get_context


@pytest.fixture()
def conf() -> Any:
    return new_conf(overrides={"DEFAULT": {"admin_token": ADMIN_TOKEN}})


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Any]:
    from strongroom.db.api import Database

    database = Database(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    database.sync()
    yield database
    database.dispose()


def _member(project: str) -> Any:
    return get_context(project, user_id="u1", roles=["member"])


def _admin(project: str) -> Any:
    return get_context(project, user_id="root", is_admin=True)


@pytest.mark.parametrize("action", ["plan:get", "plan:update", "checkpoint:delete", "restore:create"])
def test_admin_or_owner_rules(conf: Any, action: str) -> None:
    enforcer = policy.get_enforcer(conf)
    rules.authorize(enforcer, _member("p1"), action, {"project_id": "p1"})
    with pytest.raises(exceptions.Forbidden, match=action):
        rules.authorize(enforcer, _member("p1"), action, {"project_id": "p2"})
    rules.authorize(enforcer, _admin("p1"), action, {"project_id": "p2"})


@pytest.mark.parametrize("action", ["checkpoint:reset_state", "all_tenants"])
def test_admin_only_rules(conf: Any, action: str) -> None:
    enforcer = policy.get_enforcer(conf)
    with pytest.raises(exceptions.Forbidden):
        rules.authorize(enforcer, _member("p1"), action)
    rules.authorize(enforcer, _admin("p1"), action)
    assert rules.is_admin(enforcer, _admin("p1"))
    assert not rules.is_admin(enforcer, _member("p1"))


def test_policy_defaults_are_documented() -> None:
    names = {rule.name for rule in policy.list_rules()}
    assert {"context_is_admin", "admin_or_owner", "checkpoint:reset_state", "all_tenants",
            "plan:create"} <= names


def _keystone_app(conf: Any, db: Any) -> RootApp:
    """The keystone-mode app minus auth_token itself (which would need a Keystone to validate tokens)."""
    v1 = V1App(conf, db, None, policy.get_enforcer(conf))  # type: ignore[arg-type]
    return RootApp(conf, auth.KeystoneContextMiddleware(v1))


def _get(app: Any, path: str, **headers: str) -> webob.Response:
    return webob.Request.blank(path, headers=headers).get_response(app)


def test_keystone_identity_headers(conf: Any, db: Any) -> None:
    conf.set_override("auth_strategy", "keystone")
    app = _keystone_app(conf, db)
    ok = _get(app, "/v1/p1/plans", **{"X-Identity-Status": "Confirmed", "X-Project-Id": "p1",
                                      "X-User-Id": "u1", "X-Roles": "member"})
    assert ok.status_int == 200, ok.text
    assert ok.headers["X-Openstack-Request-Id"].startswith("req-")

    other = _get(app, "/v1/p2/plans", **{"X-Identity-Status": "Confirmed", "X-Project-Id": "p1",
                                         "X-User-Id": "u1", "X-Roles": "member"})
    assert other.status_int == 403
    assert "p2" in other.json["forbidden"]["message"]

    admin = _get(app, "/v1/p2/plans?all_tenants=1", **{"X-Identity-Status": "Confirmed", "X-Project-Id": "p1",
                                                      "X-User-Id": "root", "X-Roles": "admin,member"})
    assert admin.status_int == 200

    invalid = _get(app, "/v1/p1/plans", **{"X-Identity-Status": "Invalid"})
    assert invalid.status_int == 401
    assert invalid.headers["X-Openstack-Request-Id"].startswith("req-")


def test_keystone_pipeline_builds_and_rejects_missing_token(conf: Any, db: Any) -> None:
    from keystonemiddleware import auth_token

    conf.set_override("auth_strategy", "keystone")
    for group, opts in auth_token.list_opts():
        conf.register_opts(opts, group=group)
    conf.set_override("www_authenticate_uri", "http://keystone.invalid:5000/v3", group="keystone_authtoken")
    app = make_app(conf, db, None)  # type: ignore[arg-type]
    resp = _get(app, "/v1/p1/plans")  # no X-Auth-Token: auth_token refuses without asking Keystone
    assert resp.status_int == 401
    assert resp.headers["X-Openstack-Request-Id"].startswith("req-")
    versions = _get(app, "/")  # versions need no token
    assert versions.status_int == 200


class FakeBrokenDatabase:
    """A FAKE database whose listing fails with an internal error."""

    def list_plans(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals /etc/strongroom password=hunter2")


def test_unexpected_error_is_generic_500_with_request_id(conf: Any, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(conf, FakeBrokenDatabase(), None)  # type: ignore[arg-type]
    resp = _get(app, "/v1/p1/plans", **{"X-Auth-Token": "x"})
    assert resp.status_int == 500
    body = json.loads(resp.body)
    message = body["internalServerError"]["message"]
    request_id = resp.headers["X-Openstack-Request-Id"]
    assert request_id in message
    assert "secret" not in resp.text and "hunter2" not in resp.text and "Traceback" not in resp.text
    assert any(request_id in r.getMessage() for r in caplog.records)  # logged server-side


def test_noauth_identity(conf: Any) -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen["identity"] = environ[auth.ENV_IDENTITY]
        start_response("204 No Content", [])
        return []

    mw = auth.NoAuthMiddleware(app, ADMIN_TOKEN)
    webob.Request.blank("/", headers={"X-Auth-Token": "anything", "X-User-Id": "alice"}).get_response(mw)
    assert seen["identity"].user_id == "alice" and seen["identity"].roles == ("member", "reader")
    webob.Request.blank("/", headers={"X-Auth-Token": ADMIN_TOKEN}).get_response(mw)
    assert seen["identity"].user_id == "noauth" and seen["identity"].roles == ("admin", "member", "reader")


class FakeProtection:
    """A FAKE protection service: records the context of each call and answers an empty list."""

    def __init__(self) -> None:
        self.contexts: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        def call(ctxt: Any, *args: Any, **kwargs: Any) -> list[Any]:
            self.contexts.append(ctxt)
            return []

        return call


@pytest.mark.parametrize("strategy", ["keystone", "noauth"])
def test_the_callers_keystone_token_is_in_the_context_only_under_keystone(conf: Any, db: Any,
                                                                         strategy: str) -> None:
    """keystonemiddleware confirmed the token: the context the protection service gets carries it (a block
    backend may act with it); under noauth the header is no Keystone token and is never passed on."""
    conf.set_override("auth_strategy", strategy)
    protection = FakeProtection()
    v1 = V1App(conf, db, protection, policy.get_enforcer(conf))  # type: ignore[arg-type]
    inner = auth.KeystoneContextMiddleware(v1) if strategy == "keystone" else auth.NoAuthMiddleware(v1, "")
    app = RootApp(conf, inner)
    resp = _get(app, "/v1/p1/protectables/OS::Cinder::Volume/instances",
                **{"X-Auth-Token": "gAAAAB-users-token", "X-Identity-Status": "Confirmed", "X-Project-Id": "p1",
                   "X-User-Id": "u1", "X-Roles": "member,reader"})
    assert resp.status_int == 200, resp.text
    assert [c.auth_token for c in protection.contexts] == (
        ["gAAAAB-users-token"] if strategy == "keystone" else [None])
    assert "auth_token" not in protection.contexts[0].to_dict()
    if strategy == "keystone":  # an admin's token of another project: not passed on (its project is not p2)
        admin = _get(app, "/v1/p2/protectables/OS::Cinder::Volume/instances",
                     **{"X-Auth-Token": "gAAAAB-admins-token", "X-Identity-Status": "Confirmed",
                        "X-Project-Id": "p1", "X-User-Id": "root", "X-Roles": "admin,member,reader"})
        assert admin.status_int == 200, admin.text
        assert protection.contexts[-1].project_id == "p2" and protection.contexts[-1].auth_token is None
