"""Secure RBAC with real tokens: the all-in-one under keystonemiddleware's ``auth_token``, validating tokens
against a real Keystone (:mod:`tests.servers.keystone`) with a reader and a member on each of two projects and
Keystone's admin.  A reader lists and shows plans and checkpoints of its project but is refused (403) creating,
deleting and restoring; a member can; the admin lists across projects (``all_tenants``); project B's tokens
get 403 or 404 on project A's objects, by its URL or by id through its own: every route of the table that takes
an id, with one of each of A's objects (plan, checkpoint, restore, verification, trigger, scheduled operation,
operation log, A's quotas), and every creation whose body names them, as B's member and B's reader; lists
filtered by A's ids list nothing, and nothing B gets names anything of A."""

from __future__ import annotations

import collections
import json
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from strongroom.api.routes import ROUTES
from tests.functional.harness import PROVIDER_ID, AllInOne, keystone_all_in_one
from tests.servers.keystone import KeystoneServer

pytestmark = [pytest.mark.functional, pytest.mark.slow]

VOLUME = "OS::Cinder::Volume"
SOURCE_TREE = Path(__file__).resolve().parents[2]


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
    _add_second_provider(root, service)
    service.start()
    try:
        for name, token in tokens.items():
            project = project_ids["a" if name.startswith("a-") or name == "admin" else "b"]
            callers[name] = Caller(service.url, project, token)
        yield {"callers": callers, "projects": project_ids, "tokens": tokens, "keystone": ks, "service": service}
    finally:
        if service.process is not None and service.process.poll() is None:
            service.stop()


#: A second provider (a filesystem bank of its own): what a copy of a checkpoint goes to.
SECOND_PROVIDER_ID = "5d0e8a3c-6b2f-4e71-9c4a-2f8b1d7e3a60"


def _add_second_provider(root: Path, service: AllInOne) -> None:
    """The shipped ``local`` provider and :data:`SECOND_PROVIDER_ID` in a providers directory of the test's."""
    providers = root / "providers.d"
    providers.mkdir()
    (providers / "local.conf").write_text((SOURCE_TREE / "providers.d" / "local.conf").read_text())
    (providers / "second.conf").write_text(
        f"[provider]\nname = Second\nid = {SECOND_PROVIDER_ID}\nplugin = volume\nbank = fs\n"
        "[fs]\npath = {state_dir}/bank2\n[volume]\nblock_backend = loopback\n[loopback]\npath = {state_dir}/volumes\n")
    conf = service.config_file
    conf.write_text(conf.read_text().replace("[DEFAULT]\n", f"[DEFAULT]\nproviders_dir = {providers}\n", 1))


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


def _plan(call: Caller, name: str, resource_name: str = "disk.img") -> requests.Response:
    return call("POST", "/plans", json={"plan": {
        "name": name, "provider_id": PROVIDER_ID, "parameters": {},
        "resources": [{"id": "disk.img", "type": VOLUME, "name": resource_name}]}})


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


#: Path parameters naming what every project shares (providers, protectable types, volumes): not A's.
SHARED_PARAMETERS = {"provider_id", "protectable_type", "instance_id"}


def _parameters(path: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(path) if name}


def _a_objects(member: Caller, admin: Caller, a_id: str) -> dict[str, Any]:
    """One of each of project A's objects, by the name of the parameter that takes its id, and its names."""
    secret = "a-secret"
    plan = _plan(member, f"{secret}-plan", f"{secret}-volume").json()["plan"]
    cps = f"/providers/{PROVIDER_ID}/checkpoints"
    made = member("POST", cps, json={"checkpoint": {"plan_id": plan["id"]}}).json()["checkpoint"]
    cp = _wait(member, f"{cps}/{made['id']}", "checkpoint", {"available", "error"})
    assert cp["status"] == "available", cp
    restore = member("POST", "/restores", json={"restore": {
        "provider_id": PROVIDER_ID, "checkpoint_id": cp["id"], "restore_target": None,
        "parameters": {VOLUME: {"restore_name": f"{secret}-restored.img"}}}}).json()["restore"]
    verification = member("POST", "/verifications", json={"verification": {
        "provider_id": PROVIDER_ID, "checkpoint_id": cp["id"], "parameters": {}}}).json()["verification"]
    trigger = member("POST", "/triggers", json={"trigger_info": {
        "name": f"{secret}-trigger", "type": "time",
        "properties": {"pattern": "0 3 * * *", "format": "crontab"}}}).json()["trigger_info"]
    operation = member("POST", "/scheduled_operations", json={"scheduled_operation": {
        "name": f"{secret}-operation", "description": f"{secret}-description", "operation_type": "protect",
        "trigger_id": trigger["id"], "operation_definition": {"provider_id": PROVIDER_ID, "plan_id": plan["id"]}}}
    ).json()["scheduled_operation"]
    assert _wait(member, f"/restores/{restore['id']}", "restore", {"success", "fail"})["status"] == "success"
    assert _wait(member, f"/verifications/{verification['id']}", "verification",
                 {"success", "fail"})["status"] == "success"
    logs = member("GET", "/operation_logs").json()["operation_logs"]
    assert logs, "project A has no operation log"
    services = admin("GET", "/os-services").json()["services"]
    ids = {"provider_id": PROVIDER_ID, "protectable_type": VOLUME, "instance_id": "disk.img",
           "plan_id": plan["id"], "checkpoint_id": cp["id"], "restore_id": restore["id"],
           "verification_id": verification["id"], "trigger_id": trigger["id"],
           "scheduled_operation_id": operation["id"], "operation_log_id": logs[0]["id"],
           "resource_key": f"{VOLUME}#disk.img", "quota_project_id": a_id, "project_id": a_id,
           "service_id": str(services[0]["id"]), "quota_class_name": "default"}
    # What an answer to B must not hold: every id of A's objects and of A, and every name A gave.
    leaks = {ids[key] for key in ("plan_id", "checkpoint_id", "restore_id", "verification_id", "trigger_id",
                                  "scheduled_operation_id", "project_id")}
    leaks |= {str(log["id"]) for log in logs} | {f"{secret}-{name}" for name in (
        "plan", "volume", "restored.img", "trigger", "operation", "description")}
    leaks.add(secret)
    return {"ids": ids, "leaks": leaks, "logs": logs}


def _bodies(ids: dict[str, str]) -> dict[str, Any]:
    """A valid body for each request schema, naming A's objects wherever it names one (so an answer comes
    from looking them up, not from a schema check)."""
    cp = {"provider_id": PROVIDER_ID, "checkpoint_id": ids["checkpoint_id"]}
    return {
        "PlanUpdate": {"plan": {"name": "renamed-by-b"}},
        "CheckpointCreate": {"checkpoint": {"plan_id": ids["plan_id"]}},
        "CheckpointResetState": {"os-resetState": {"state": "error"}},
        "CheckpointAction": {"copy": {"plan_id": ids["plan_id"], "parameters": {
            "target_provider_id": SECOND_PROVIDER_ID, "checkpoint_id": ids["checkpoint_id"]}}},
        "RestoreCreate": {"restore": {**cp, "restore_target": None,
                                      "parameters": {VOLUME: {"restore_name": "stolen-by-b.img"}}}},
        "VerificationCreate": {"verification": {**cp, "parameters": {}}},
        "TriggerUpdate": {"trigger_info": {"name": "renamed-by-b"}},
        "ScheduledOperationCreate": {"scheduled_operation": {
            "name": "by-b", "operation_type": "protect", "trigger_id": ids["trigger_id"],
            "operation_definition": {"provider_id": PROVIDER_ID, "plan_id": ids["plan_id"]}}},
        "ScheduledOperationAction": {"suspend": {}},
        "ServiceUpdate": {"status": "disabled", "disabled_reason": "by-b"},
        "QuotaUpdate": {"quota": {"plans": 1}},
        "QuotaClassUpdate": {"quota_class": {"plans": 1}},
    }


def _named(value: Any) -> set[str]:
    """Every string in a body or query: what the caller named itself."""
    if isinstance(value, dict):
        return set().union(*(_named(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_named(v) for v in value)) if value else set()
    return {value} if isinstance(value, str) else set()


def test_project_b_is_refused_every_route_naming_project_a_objects(rbac: dict[str, Any]) -> None:
    """B's member and reader, through B's own URL, try every route of the table that takes an id with A's
    ids, every creation whose body names A's plan, checkpoint or trigger, every list filtered by A's ids or
    paged from A's objects, and every list across projects: 403 or 404 naming nothing of A (a filter naming
    A's object lists nothing, exactly as one naming no object at all)."""
    c = rbac["callers"]
    a_id = rbac["projects"]["a"]
    made = _a_objects(c["a-member"], c["admin"], a_id)
    ids, leaks = made["ids"], made["leaks"]
    bodies = _bodies(ids)
    users = ("b-member", "b-reader")
    attempts: list[tuple[str, str, str, int]] = []

    def attempt(name: str, method: str, path: str, expected: set[int], body: Any = None,
                params: dict[str, str] | None = None) -> requests.Response:
        answer = c[name](method, path, json=body, params=params)
        attempts.append((name, method, path, answer.status_code))
        where = (name, method, path, params, answer.status_code, answer.text[:500])
        assert answer.status_code in expected, where
        named = {path, *path.split("/"), *_named(body), *_named(params)}
        leaked = {value for value in leaks - named if value in answer.text}
        assert not leaked, (leaked, *where)
        return answer

    # Every route taking an id of a project's object, with A's.
    by_id = [route for route in ROUTES if _parameters(route.path) - SHARED_PARAMETERS]
    for route in by_id:
        path = route.path.format_map(_Ids(ids))
        body = bodies.get(route.request_schema) if route.request_schema else None
        params = {name: ids["checkpoint_id"] for name in route.naming if name in ("to",)} or None
        for name in users:
            attempt(name, route.method, path, {403, 404}, body, params)

    # Every creation whose body names A's objects (restore, verify, copy, protect, schedule): 403 or 404, or
    # the 400 naming the field that a made-up id gets, word for word.
    made_up = _Ids()["made-up"]
    for route in ROUTES:
        if route.method == "POST" and route.request_schema in bodies and not _parameters(route.path) - {
                "provider_id"}:
            path = route.path.format_map(_Ids(ids))
            body = bodies[route.request_schema]
            for name in users:
                answer = attempt(name, "POST", path, {400, 403, 404}, body)
                if answer.status_code == 400:
                    text = json.dumps(body)
                    for key in ("plan_id", "checkpoint_id", "trigger_id"):
                        text = text.replace(ids[key], made_up)
                    unknown = c[name]("POST", path, json=json.loads(text))
                    assert unknown.status_code == 400, unknown.text
                    said = answer.json()["badRequest"]["message"]
                    for key in ("plan_id", "checkpoint_id", "trigger_id"):
                        said = said.replace(ids[key], made_up)
                    assert said == unknown.json()["badRequest"]["message"], (answer.text, unknown.text)

    # Every list: across projects (an administrator's), filtered by A's ids, paged from A's objects.
    listed = [route for route in ROUTES if route.listing and not _parameters(route.path) - {"provider_id"}]
    a_ids_of = {"plans": "plan_id", "checkpoints": "checkpoint_id", "restores": "restore_id",
                "verifications": "verification_id", "triggers": "trigger_id", "operations": "scheduled_operation_id",
                "operation_logs": "operation_log_id"}
    for route in listed:
        path = route.path.format_map(_Ids(ids))
        for name in users:
            if "all_tenants" in route.query:
                attempt(name, "GET", path, {403}, params={"all_tenants": "1"})
            if "project_id" in route.query:
                attempt(name, "GET", path, {403}, params={"project_id": a_id})
            filters = [key for key in route.query if key in ids and key not in {*SHARED_PARAMETERS, "project_id"}]
            if route.paged and route.response_key in a_ids_of:
                filters.append("marker")
            for key in filters:
                value = ids[a_ids_of[route.response_key or ""]] if key == "marker" else ids[key]
                answer = attempt(name, "GET", path, {200, 400, 404}, params={key: value})
                unknown = c[name]("GET", path, params={key: made_up})
                assert (answer.status_code, answer.json().get(route.response_key)) == (
                    unknown.status_code, unknown.json().get(route.response_key)), (name, path, key, answer.text)
                if answer.status_code == 200:
                    assert answer.json()[route.response_key] == [], (name, path, key, answer.text)

    # B's own objects beside A's in one body: B's plan with A's checkpoint, B's trigger with A's plan and the
    # other way round.
    b_member = c["b-member"]
    b_plan = _plan(b_member, "b-plan").json()["plan"]["id"]
    b_trigger = b_member("POST", "/triggers", json={"trigger_info": {
        "name": "b-trigger", "type": "time", "properties": {"pattern": "0 4 * * *", "format": "crontab"}}}
    ).json()["trigger_info"]["id"]
    copy = {"copy": {"plan_id": b_plan, "parameters": {
        "target_provider_id": SECOND_PROVIDER_ID, "checkpoint_id": ids["checkpoint_id"]}}}
    attempt("b-member", "POST", f"/providers/{PROVIDER_ID}/checkpoints/action", {404}, copy)
    for trigger, plan in ((b_trigger, ids["plan_id"]), (ids["trigger_id"], b_plan)):
        answer = attempt("b-member", "POST", "/scheduled_operations", {400, 404}, {"scheduled_operation": {
            "name": "by-b", "operation_type": "protect", "trigger_id": trigger,
            "operation_definition": {"provider_id": PROVIDER_ID, "plan_id": plan}}})
        assert ("trigger_id" if trigger != b_trigger else "plan_id") in answer.text, answer.text
    assert b_member("DELETE", f"/triggers/{b_trigger}").status_code == 204  # B as the test above expects it
    assert b_member("DELETE", f"/plans/{b_plan}").status_code == 202

    # Nothing of A's changed.
    member = c["a-member"]
    assert member("GET", f"/plans/{ids['plan_id']}").json()["plan"]["name"] == "a-secret-plan"
    cp = member("GET", f"/providers/{PROVIDER_ID}/checkpoints/{ids['checkpoint_id']}").json()["checkpoint"]
    assert cp["status"] == "available" and cp["copies"] == [], cp
    assert member("GET", f"/triggers/{ids['trigger_id']}").json()["trigger_info"]["name"] == "a-secret-trigger"
    operation = member("GET", f"/scheduled_operations/{ids['scheduled_operation_id']}").json()
    assert operation["scheduled_operation"]["enabled"], operation
    assert [o["id"] for o in c["b-member"]("GET", "/scheduled_operations").json()["operations"]] == []

    statuses = collections.Counter(status for *_, status in attempts)
    print(f"\nproject B tried project A's objects {len(attempts)} times ({len(by_id)} routes taking an id, "
          f"{len(users)} users): {statuses[403]} answered 403, {statuses[404]} 404, {statuses[400]} the 400 of a "
          f"made-up id, {statuses[200]} (lists filtered by A's ids) an empty list")
    assert len(attempts) >= 2 * len(by_id)
