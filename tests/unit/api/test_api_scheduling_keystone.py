"""With ``auth_strategy = keystone``, creating a scheduled operation creates a Keystone trust from the caller to
the ``[trustee]`` service user, and deleting it deletes the trust.  Keystone is FakeKeystone (a fake Keystone
HTTP server); keystonemiddleware's identity headers are given as it would set them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import webob

from strongroom.api import auth, policy
from strongroom.api.app import RootApp, V1App
from strongroom.config import new_conf
from strongroom.db.api import Database
from strongroom.db.scheduling import SchedulingStore
from strongroom.objects.records import Plan, Resource
from tests.servers.fake_keystone import FakeKeystone, fake_keystone  # noqa: F401 - fixture

PROVIDER = "cf56bd3e-97a7-4078-b6d5-f36246333fd9"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'ks.sqlite'}")
    database.sync()
    yield database
    database.dispose()


def app_for(db: Database, trustee: dict[str, str]) -> RootApp:
    conf = new_conf(overrides={"DEFAULT": {"auth_strategy": "keystone"}, "trustee": trustee})
    return RootApp(conf, auth.KeystoneContextMiddleware(V1App(conf, db, None, policy.get_enforcer(conf))))  # type: ignore[arg-type]


def call(app: RootApp, method: str, path: str, token: str, user: str, body: Any = None) -> webob.Response:
    headers = {"X-Identity-Status": "Confirmed", "X-Project-Id": "proj-a", "X-User-Id": user,
               "X-Roles": "member", "X-Auth-Token": token}
    request = webob.Request.blank(f"/v1/proj-a{path}", method=method, headers=headers)
    if body is not None:
        request.body = json.dumps(body).encode()
        request.content_type = "application/json"
    return request.get_response(app)


def create_operation(app: RootApp, db: Database, token: str, user: str) -> webob.Response:
    plan = db.create_plan(Plan(id=str(uuid.uuid4()), name="p", provider_id=PROVIDER, project_id="proj-a",
                               resources=[Resource(id="v", type="OS::Cinder::Volume")]))
    trigger = call(app, "POST", "/triggers", token, user, {"trigger_info": {
        "name": "t", "type": "time", "properties": {"pattern": "0 * * * *"}}})
    assert trigger.status_int == 200, trigger.text
    return call(app, "POST", "/scheduled_operations", token, user, {"scheduled_operation": {
        "name": "s", "operation_type": "protect", "trigger_id": trigger.json["trigger_info"]["id"],
        "operation_definition": {"provider_id": PROVIDER, "plan_id": plan.id}}})


def test_the_operation_holds_a_trust_from_its_creator(db: Database, fake_keystone: FakeKeystone) -> None:  # noqa: F811
    alice = fake_keystone.add_user("alice", "pw", roles={"proj-a": ["member"]})
    token = fake_keystone.issue_token(alice, "proj-a")
    app = app_for(db, {"auth_url": fake_keystone.url, "username": "strongroom", "password": "service-secret"})
    created = create_operation(app, db, token, alice.id)
    assert created.status_int == 200, created.text
    op_id = created.json["scheduled_operation"]["id"]
    op = SchedulingStore(db).get_operation(op_id)
    assert op.user_id == alice.id
    trust = fake_keystone.trusts[op.trust_id]  # type: ignore[index]
    assert (trust["trustor_user_id"], trust["trustee_user_id"], trust["project_id"], trust["roles"]) == (
        alice.id, "strongroom-id", "proj-a", ["member"])
    assert "trust_id" not in created.json["scheduled_operation"]

    deleted = call(app, "DELETE", f"/scheduled_operations/{op_id}", token, alice.id)
    assert deleted.status_int == 204
    assert op.trust_id not in fake_keystone.trusts


def test_keystone_refusing_the_trust_refuses_the_operation(db: Database, fake_keystone: FakeKeystone) -> None:  # noqa: F811
    alice = fake_keystone.add_user("alice", "pw", roles={"proj-a": ["member"]})
    mallory = fake_keystone.add_user("mallory", "pw", roles={"proj-a": ["member"]})
    app = app_for(db, {"auth_url": fake_keystone.url, "username": "strongroom", "password": "service-secret"})
    refused = create_operation(app, db, fake_keystone.issue_token(mallory, "proj-a"), alice.id)
    assert refused.status_int == 403 and "refused a trust" in refused.text
    assert SchedulingStore(db).list_operations(None) == []


def test_a_missing_trustee_section_is_a_clear_503(db: Database) -> None:
    app = app_for(db, {})
    resp = create_operation(app, db, "some-token", "u1")
    assert resp.status_int == 503
    assert "[trustee] auth_url, username and password" in resp.json["serviceUnavailable"]["message"]


def test_resuming_a_suspended_operation_renews_its_trust(db: Database, fake_keystone: FakeKeystone) -> None:  # noqa: F811
    alice = fake_keystone.add_user("alice", "pw", roles={"proj-a": ["member"]})
    bob = fake_keystone.add_user("bob", "pw", roles={"proj-a": ["member"]})
    app = app_for(db, {"auth_url": fake_keystone.url, "username": "strongroom", "password": "service-secret"})
    alice_token = fake_keystone.issue_token(alice, "proj-a")
    op_id = create_operation(app, db, alice_token, alice.id).json["scheduled_operation"]["id"]
    store = SchedulingStore(db)
    first = store.get_operation(op_id).trust_id
    action = f"/scheduled_operations/{op_id}/action"
    # Resuming an operation that runs already changes nothing.
    assert call(app, "POST", action, alice_token, alice.id, {"resume": {}}).status_int == 200
    assert store.get_operation(op_id).trust_id == first
    # Suspended (as the engine does after refused trusts), then resumed by bob: runs act as bob from then on.
    assert call(app, "POST", action, alice_token, alice.id, {"suspend": {}}).json["scheduled_operation"][
        "enabled"] is False
    resumed = call(app, "POST", action, fake_keystone.issue_token(bob, "proj-a"), bob.id, {"resume": {}})
    assert resumed.status_int == 200 and resumed.json["scheduled_operation"]["enabled"] is True
    op = store.get_operation(op_id)
    assert op.user_id == bob.id and op.trust_id != first
    assert fake_keystone.trusts[op.trust_id]["trustor_user_id"] == bob.id  # type: ignore[index]
    # bob's token may not delete alice's trust (nor may it in Keystone): it stays, and a warning names it.
    assert first in fake_keystone.trusts
