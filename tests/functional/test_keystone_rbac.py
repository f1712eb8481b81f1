"""Secure RBAC with real tokens: the all-in-one under keystonemiddleware's ``auth_token``, validating tokens
against a real Keystone (:mod:`tests.servers.keystone`) with a reader and a member on each of two projects and
Keystone's admin.  A reader lists and shows plans and checkpoints of its project but is refused (403) creating,
deleting and restoring; a member can; the admin lists across projects (``all_tenants``); project B's tokens
get 403 or 404 on project A's objects, by its URL or by id through its own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from strongroom.api.routes import ROUTES
from tests.functional.harness import PROVIDER_ID, keystone_all_in_one
from tests.servers.keystone import KeystoneServer

pytestmark = [pytest.mark.functional, pytest.mark.slow]

VOLUME = "OS::Cinder::Volume"


class Caller:
    def __init__(self, base: str, project_id: str, token: str) -> None:
        self.base, self.project_id, self.token = base, project_id, token

    def __call__(self, method: str, path: str, project_id: str | None = None, **kwargs: Any) -> requests.Response:
        url = f"{self.base}/v1/{project_id or self.project_id}{path}"
        return requests.request(method, url, headers={"X-Auth-Token": self.token}, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def rbac(keystone_server: KeystoneServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ks = keystone_server
    callers: dict[str, Any] = {}
    tokens: dict[str, str] = {}
    project_ids: dict[str, str] = {}
    for project in ("rbac-a", "rbac-b"):
        for role in ("member", "reader"):
            account = ks.account(project, role)
            tokens[f"{project[-1]}-{role}"] = ks.token(account)
            project_ids[project[-1]] = account.project_id
    tokens["admin"] = ks.admin_token()
    root = tmp_path_factory.mktemp("keystone-rbac")
    service = keystone_all_in_one(ks, root)
    service.start()
    try:
        for name, token in tokens.items():
            project = project_ids["a" if name.startswith("a-") or name == "admin" else "b"]
            callers[name] = Caller(service.url, project, token)
        yield {"callers": callers, "projects": project_ids, "tokens": tokens, "keystone": ks, "service": service}
    finally:
        if service.process is not None and service.process.poll() is None:
            service.stop()


class _Ids(dict[str, str]):
    """A's ids by path parameter name; any other parameter a made-up id."""

    def __missing__(self, key: str) -> str:
        return "0b5c3e4a-1d2f-4a6b-8c9d-0e1f2a3b4c5d"


def _wait(call: Caller, path: str, key: str, done: set[str], timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = call("GET", path).json()[key]
        if body["status"] in done or time.monotonic() > deadline:
            return body  # type: ignore[no-any-return]
        time.sleep(0.2)


def _plan(call: Caller, name: str) -> requests.Response:
    return call("POST", "/plans", json={"plan": {
        "name": name, "provider_id": PROVIDER_ID, "parameters": {},
        "resources": [{"id": "disk.img", "type": VOLUME, "name": "disk.img"}]}})


def test_keystone_tokens_carry_the_implied_reader_role(rbac: dict[str, Any]) -> None:
    ks: KeystoneServer = rbac["keystone"]
    assert ks.token_roles(rbac["tokens"]["a-member"]) == ["member", "reader"]
    assert ks.token_roles(rbac["tokens"]["a-reader"]) == ["reader"]
    assert {"admin", "member", "reader"} <= set(ks.token_roles(rbac["tokens"]["admin"]))


def test_reader_member_admin_and_the_other_project(rbac: dict[str, Any], tmp_path: Path) -> None:
    c = rbac["callers"]
    member, reader, admin = c["a-member"], c["a-reader"], c["admin"]
    a_id = rbac["projects"]["a"]

    assert requests.get(f"{member.base}/v1/{a_id}/plans", timeout=10).status_code == 401  # no token
    # The reader may not create; the member may.
    refused = _plan(reader, "by-reader")
    assert refused.status_code == 403, refused.text
    assert "plan:create" in refused.text
    made = _plan(member, "by-member")
    assert made.status_code == 200, made.text
    plan = made.json()["plan"]
    assert plan["project_id"] == a_id

    cps = f"/providers/{PROVIDER_ID}/checkpoints"
    refused = reader("POST", cps, json={"checkpoint": {"plan_id": plan["id"]}})
    assert refused.status_code == 403, refused.text
    created = member("POST", cps, json={"checkpoint": {"plan_id": plan["id"]}})
    assert created.status_code == 200, created.text
    cp = _wait(member, f"{cps}/{created.json()['checkpoint']['id']}", "checkpoint", {"available", "error"})
    assert cp["status"] == "available", cp

    # The reader lists and shows them all.
    assert [p["id"] for p in reader("GET", "/plans").json()["plans"]] == [plan["id"]]
    assert reader("GET", f"/plans/{plan['id']}").json()["plan"]["name"] == "by-member"
    assert [x["id"] for x in reader("GET", cps).json()["checkpoints"]] == [cp["id"]]
    assert reader("GET", f"{cps}/{cp['id']}").json()["checkpoint"]["status"] == "available"
    for path in ("/providers", "/protectables", f"/protectables/{VOLUME}/instances", "/restores", "/verifications",
                 "/triggers", "/scheduled_operations", "/operation_logs"):
        assert reader("GET", path).status_code == 200, path

    # ... but changes nothing.
    restore_body = {"restore": {"provider_id": PROVIDER_ID, "checkpoint_id": cp["id"], "restore_target": None,
                                "parameters": {VOLUME: {"restore_name": "by-reader.img"}}}}
    for method, path, body in (
            ("POST", "/restores", restore_body),
            ("POST", "/verifications", {"verification": {"provider_id": PROVIDER_ID, "checkpoint_id": cp["id"],
                                                         "parameters": {}}}),
            ("PUT", f"/plans/{plan['id']}", {"plan": {"name": "renamed"}}),
            ("DELETE", f"{cps}/{cp['id']}", None),
            ("DELETE", f"/plans/{plan['id']}", None),
            ("POST", "/triggers", {"trigger_info": {"name": "t", "type": "time",
                                                    "properties": {"pattern": "0 * * * *", "format": "crontab"}}})):
        answer = reader(method, path, json=body)
        assert answer.status_code == 403, (method, path, answer.status_code, answer.text)
    # all_tenants is an administrator's.
    assert reader("GET", "/plans", params={"all_tenants": "1"}).status_code == 403
    assert member("GET", "/plans", params={"all_tenants": "1"}).status_code == 403

    # Project B's reader and member: refused by A's URL, and A's ids are not found through B's own URL.
    for name in ("b-reader", "b-member"):
        other = c[name]
        assert other("GET", "/plans", project_id=a_id).status_code == 403
        assert other("GET", f"/plans/{plan['id']}", project_id=a_id).status_code == 403
        assert other("DELETE", f"/plans/{plan['id']}", project_id=a_id).status_code == 403
        assert other("GET", f"/plans/{plan['id']}").status_code == 404
        assert other("GET", f"{cps}/{cp['id']}").status_code == 404
        assert other("GET", "/plans").json()["plans"] == []
        assert other("GET", "/plans", params={"all_tenants": "1"}).status_code == 403
        assert other("GET", cps, params={"project_id": a_id}).status_code == 403
    stolen = c["b-member"]("POST", "/restores", json=restore_body)
    assert stolen.status_code in (403, 404), stolen.text
    assert "by-reader" not in stolen.text and plan["id"] not in stolen.text

    # The admin (of project admin) sees every project's with all_tenants, and may act in A.
    every = admin("GET", "/plans", params={"all_tenants": "1"})
    assert every.status_code == 200, every.text
    assert plan["id"] in [p["id"] for p in every.json()["plans"]]
    assert admin("GET", f"/plans/{plan['id']}", project_id=a_id).status_code == 200

    # Every route, generated from the route table, with A's ids: a reader is refused every one that is not a
    # GET (nothing changed: the plan and the checkpoint are still there), B's tokens every one by A's URL.
    ids = {"provider_id": PROVIDER_ID, "plan_id": plan["id"], "checkpoint_id": cp["id"],
           "protectable_type": VOLUME, "instance_id": "disk.img"}
    for route in ROUTES:
        path = route.path.format_map(_Ids(ids))
        if route.method != "GET":
            answer = reader(route.method, path, json={})
            assert answer.status_code == 403, (route.method, route.path, answer.status_code, answer.text)
        for name in ("b-reader", "b-member"):
            answer = c[name](route.method, path, project_id=a_id, json={} if route.method != "GET" else None)
            assert answer.status_code == 403, (name, route.method, route.path, answer.status_code, answer.text)
    assert reader("GET", f"{cps}/{cp['id']}").json()["checkpoint"]["status"] == "available"

    # The member restores and deletes.
    restored = member("POST", "/restores", json={"restore": {**restore_body["restore"], "parameters": {
        VOLUME: {"restore_name": "by-member.img"}}}})
    assert restored.status_code == 200, restored.text
    done = _wait(member, f"/restores/{restored.json()['restore']['id']}", "restore", {"success", "fail"})
    assert done["status"] == "success", done
    assert member("DELETE", f"{cps}/{cp['id']}").status_code == 202
