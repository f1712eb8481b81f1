"""The v1 API over HTTP: real app on APIServer, real sqlite Database, fake protection over fake:// RPC."""

from __future__ import annotations

import datetime as _dt
import json
import re
import uuid
from typing import Any

import pytest
import requests
from apiharness import (
    ADMIN_TOKEN,
    MAX_BODY,
    MAX_LIMIT,
    OTHER_PROVIDER_ID,
    PROJECT_TYPE,
    PROVIDER_ID,
    VOLUME,
    Stack,
)

CP = f"/providers/{PROVIDER_ID}/checkpoints"


def _error(resp: Any, code: int) -> str:
    assert resp.status_code == code, resp.text
    body = resp.json()
    assert len(body) == 1
    (key, err), = body.items()
    assert err["code"] == code
    assert key == err["title"][0].lower() + err["title"].title().replace(" ", "")[1:]
    return str(err["message"])


def _plan_body(**overrides: Any) -> dict[str, Any]:
    plan = {"name": "My app", "provider_id": PROVIDER_ID,
            "resources": [{"id": "vol-01", "type": VOLUME, "name": "volume 1"}],
            "parameters": {VOLUME: {"backup_mode": "full"}}}
    plan.update(overrides)
    return {"plan": plan}


# -- generic behaviour -------------------------------------------------------


def test_versions_and_request_id(stack: Stack) -> None:
    resp = stack.call("GET", "/")
    assert resp.status_code == 200
    assert resp.json()["versions"][0]["id"] == "v1.0"
    assert resp.json()["versions"][0]["status"] == "CURRENT"
    ids = {stack.call("GET", "/plans").headers["X-Openstack-Request-Id"] for _ in range(2)}
    assert len(ids) == 2
    assert all(re.fullmatch(r"req-[0-9a-f-]{36}", i) for i in ids)
    # errors carry it too
    assert stack.call("GET", "/plans/nope").headers["X-Openstack-Request-Id"].startswith("req-")


def test_unknown_path_and_method(stack: Stack) -> None:
    assert "/nowhere" in _error(stack.call("GET", "/nowhere"), 404)
    resp = stack.call("PATCH", "/plans")
    assert "PATCH" in _error(resp, 405)
    assert "GET" in resp.headers["Allow"] and "POST" in resp.headers["Allow"]


def test_openapi_document(stack: Stack) -> None:
    resp = stack.call("GET", "/v1/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["openapi"].startswith("3.")
    assert "post" in doc["paths"]["/v1/{project_id}/plans"]
    assert "PlanCreate" in doc["components"]["schemas"]
    assert "put" in doc["paths"]["/v1/{project_id}/providers/{provider_id}/checkpoints/{checkpoint_id}"]


def test_malformed_json_and_missing_body(stack: Stack) -> None:
    assert "malformed JSON" in _error(stack.call("POST", "/plans", raw=b"{not json"), 400)
    assert "JSON request body is required" in _error(stack.call("POST", "/plans"), 400)
    assert _error(stack.call("POST", "/plans", body=[1, 2]), 400).startswith("body: ")


def test_body_too_large_is_413(stack: Stack) -> None:
    big = _plan_body(description="x" * (MAX_BODY + 10))
    msg = _error(stack.call("POST", "/plans", body=big), 413)
    assert str(MAX_BODY) in msg
    # chunked upload without Content-Length is bounded too
    chunks = iter([b'{"plan": {"description": "', b"y" * (MAX_BODY + 10), b'"}}'])
    assert stack.call("POST", "/plans", raw=chunks).status_code == 413  # type: ignore[arg-type]


# -- providers and protectables ----------------------------------------------


def test_providers(stack: Stack) -> None:
    resp = stack.call("GET", "/providers")
    assert resp.status_code == 200
    providers = resp.json()["providers"]
    assert [p["name"] for p in providers] == ["OS Infra Provider", "Second Provider"]
    schema = providers[0]["extended_info_schema"]
    assert set(schema) == {"options_schema", "restore_schema", "saved_info_schema", "verify_schema"}
    assert VOLUME in schema["options_schema"]
    shown = stack.call("GET", f"/providers/{PROVIDER_ID}").json()["provider"]
    assert shown["id"] == PROVIDER_ID
    assert "Provider nope could not be found" in _error(stack.call("GET", "/providers/nope"), 404)
    page = stack.call("GET", "/providers?limit=1").json()
    assert len(page["providers"]) == 1
    assert page["providers_links"][0]["rel"] == "next"


def test_provider_block_backends_shown_to_admins_only(stack: Stack) -> None:
    shown = stack.call("GET", f"/providers/{PROVIDER_ID}").json()["provider"]
    assert "extra_info" not in shown, "a member must not see the provider's backends"
    assert all("extra_info" not in p for p in stack.admin("GET", "/providers").json()["providers"])
    admin = stack.admin("GET", f"/providers/{PROVIDER_ID}").json()["provider"]
    (backend,) = admin["extra_info"]["block_backends"]
    assert backend["driver"] == "loopback"
    assert backend["pools"] == [{"name": "/srv/volumes", "total_bytes": 10 << 30, "free_bytes": 6 << 30,
                                 "allocated_bytes": 3 << 30}]


def test_pools_are_listed_to_admins_only_in_cinders_get_pools_shape(stack: Stack) -> None:
    assert "pool:get_all" in _error(stack.call("GET", "/pools"), 403)
    pools = stack.admin("GET", "/pools").json()["pools"]
    assert [p["name"] for p in pools] == ["loopback#/srv/volumes", "rbd-a"]
    assert pools[0] == {"name": "loopback#/srv/volumes", "pool": "/srv/volumes", "provider_id": PROVIDER_ID,
                        "provider_name": "Local", "block_backend": "loopback", "driver": "loopback",
                        "total_bytes": 10 << 30, "free_bytes": 6 << 30, "allocated_bytes": 3 << 30, "error": None}
    # A backend that cannot answer is listed with its error, and hides no other.
    assert pools[1]["pool"] is None and pools[1]["total_bytes"] is None
    assert pools[1]["error"] == "cluster ceph-a is unreachable"


def test_usage_is_the_projects_and_every_projects_for_admins(stack: Stack) -> None:
    rows = stack.call("GET", "/usage").json()["usage"]
    assert [(r["provider_id"], r["project_id"]) for r in rows] == [(PROVIDER_ID, "proj-a")]
    assert rows[0]["stored_bytes"] == 15 and rows[0]["checkpoints"] == {"available": 2}
    assert "all_tenants" in _error(stack.call("GET", "/usage?all_tenants=1"), 403)
    every = stack.admin("GET", "/usage?all_tenants=1").json()["usage"]
    assert [r["project_id"] for r in every] == ["proj-a", "proj-b"]
    assert "Provider nope could not be found" in _error(stack.call("GET", "/usage?provider_id=nope"), 404)


def test_protectables(stack: Stack) -> None:
    assert stack.call("GET", "/protectables").json() == {"protectable_type": [PROJECT_TYPE, VOLUME]}
    shown = stack.call("GET", f"/protectables/{PROJECT_TYPE}").json()["protectable_type"]
    assert shown == {"name": PROJECT_TYPE, "dependent_types": [VOLUME]}
    _error(stack.call("GET", "/protectables/OS::Nope"), 404)
    page = stack.call("GET", f"/protectables/{VOLUME}/instances?limit=3").json()
    assert [i["id"] for i in page["instances"]] == ["vol-01", "vol-02", "vol-03"]
    nxt = page["instances_links"][0]["href"]
    page2 = stack.call("GET", nxt).json()
    assert [i["id"] for i in page2["instances"]] == ["vol-04", "vol-05", "vol-06"]
    filtered = stack.call("GET", f"/protectables/{VOLUME}/instances",
                          params={"parameters": json.dumps({"name": "volume 2"})}).json()
    assert [i["id"] for i in filtered["instances"]] == ["vol-02"]
    assert "parameters" in _error(stack.call("GET", f"/protectables/{VOLUME}/instances?parameters=[1"), 400)
    inst = stack.call("GET", f"/protectables/{VOLUME}/instances/vol-02").json()["instance"]
    assert inst["name"] == "volume 2" and inst["dependent_resources"] == []
    assert "vol-99" in _error(stack.call("GET", f"/protectables/{VOLUME}/instances/vol-99"), 404)


# -- plans -------------------------------------------------------------------


def test_plan_lifecycle(stack: Stack) -> None:
    resp = stack.call("POST", "/plans", body=_plan_body())
    assert resp.status_code == 200, resp.text
    plan = resp.json()["plan"]
    assert plan["status"] == "suspended"
    assert plan["project_id"] == "proj-a"
    assert plan["resources"] == [{"id": "vol-01", "type": VOLUME, "name": "volume 1", "extra_info": {}}]
    uuid.UUID(plan["id"])
    assert stack.call("GET", f"/plans/{plan['id']}").json()["plan"]["name"] == "My app"

    upd = stack.call("PUT", f"/plans/{plan['id']}", body={"plan": {"status": "started", "name": "renamed"}})
    assert upd.status_code == 200, upd.text
    assert upd.json()["plan"]["status"] == "started"
    back = stack.call("PUT", f"/plans/{plan['id']}", body={"plan": {"status": "suspended"}}).json()["plan"]
    assert back["status"] == "suspended" and back["name"] == "renamed"
    res = stack.call("PUT", f"/plans/{plan['id']}", body={"plan": {"resources": [
        {"id": "vol-02", "type": VOLUME}, {"id": "vol-03", "type": VOLUME}]}}).json()["plan"]
    assert sorted(r["id"] for r in res["resources"]) == ["vol-02", "vol-03"]
    bad_status = stack.call("PUT", f"/plans/{plan['id']}", body={"plan": {"status": "gone"}})
    assert "plan.status" in _error(bad_status, 400)

    # another project cannot see it
    _error(stack.call("GET", f"/plans/{plan['id']}", project="proj-b"), 404)
    delete = stack.call("DELETE", f"/plans/{plan['id']}")
    assert delete.status_code == 202
    assert plan["id"] in _error(stack.call("GET", f"/plans/{plan['id']}"), 404)


@pytest.mark.parametrize(("body", "expected"), [
    ({"plan": {"name": "x", "provider_id": PROVIDER_ID, "resources": [{"id": "v"}]}},
     "plan.resources[0].type: 'type' is a required property"),
    ({"plan": {"provider_id": PROVIDER_ID, "resources": [{"id": "v", "type": VOLUME}]}},
     "plan.name: 'name' is a required property"),
    ({"plan": {"name": "x", "provider_id": PROVIDER_ID, "resources": [{"id": "v", "type": VOLUME}],
               "colour": "red"}},
     "plan.colour: unknown field 'colour'"),
    ({"plan": {"name": "x", "provider_id": PROVIDER_ID, "resources": "vol"}},
     "plan.resources: 'vol' is not of type 'array'"),
])
def test_plan_schema_errors_name_the_field(stack: Stack, body: dict[str, Any], expected: str) -> None:
    assert _error(stack.call("POST", "/plans", body=body), 400) == expected


def test_plan_semantic_errors(stack: Stack) -> None:
    msg = _error(stack.call("POST", "/plans", body=_plan_body(provider_id="no-such-provider")), 400)
    assert msg == "plan.provider_id: provider no-such-provider not found"
    unknown_type = _plan_body(resources=[{"id": "x", "type": "OS::Nope"}])
    msg = _error(stack.call("POST", "/plans", body=unknown_type), 400)
    assert "plan.resources[0].type" in msg and "OS::Nope" in msg
    msg = _error(stack.call("POST", "/plans", body=_plan_body(parameters={VOLUME: {"bogus": 1}})), 400)
    assert "bogus" in msg
    twice = [{"id": "v", "type": VOLUME}, {"id": "v", "type": VOLUME}]  # refused before anything is looked up
    assert "plan.resources[1]" in _error(stack.call("POST", "/plans", body=_plan_body(resources=twice)), 400)


def test_plan_resources_must_exist_for_the_provider(stack: Stack) -> None:
    missing = [{"id": "vol-01", "type": VOLUME}, {"id": "no-such-volume", "type": VOLUME, "name": "n"}]
    msg = _error(stack.call("POST", "/plans", project="proj-missing", body=_plan_body(resources=missing)), 404)
    assert msg == (f"plan.resources[1]: {VOLUME} 'no-such-volume' could not be found by provider "
                   f"'OS Infra Provider' ({PROVIDER_ID})")
    assert stack.call("GET", "/plans", project="proj-missing").json()["plans"] == []
    # No name given: the plan keeps the one the protectable shows; a name given is kept as given.
    created = stack.call("POST", "/plans", body=_plan_body(resources=[
        {"id": "vol-01", "type": VOLUME}, {"id": "vol-02", "type": VOLUME, "name": "what I call it"}]))
    assert created.status_code == 200, created.text
    plan_id = created.json()["plan"]["id"]
    shown = stack.call("GET", f"/plans/{plan_id}").json()["plan"]["resources"]
    assert [(r["id"], r["name"]) for r in shown] == [("vol-01", "volume 1"), ("vol-02", "what I call it")]
    # Changing the resources is checked the same way, and a refused change leaves the plan as it was.
    msg = _error(stack.call("PUT", f"/plans/{plan_id}", body={"plan": {"resources": [
        {"id": "vol-03", "type": VOLUME}, {"id": "vol-99", "type": VOLUME}]}}), 404)
    assert msg.startswith(f"plan.resources[1]: {VOLUME} 'vol-99' could not be found by provider"), msg
    assert stack.call("GET", f"/plans/{plan_id}").json()["plan"]["resources"] == shown
    changed = stack.call("PUT", f"/plans/{plan_id}", body={"plan": {"resources": [{"id": "vol-03", "type": VOLUME}]}})
    assert changed.json()["plan"]["resources"][0]["name"] == "volume 3"


def test_plan_list_pagination_filters_and_sorting(stack: Stack) -> None:
    project = "proj-list"
    made = [stack.add_plan(project=project, name=f"plan-{i:02d}",
                           status="started" if i % 3 == 0 else "suspended") for i in range(12)]
    seen: list[str] = []
    url: str | None = "/plans?limit=5&sort=name:asc"
    pages = 0
    while url:
        resp = stack.call("GET", url, project=project)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        seen += [p["name"] for p in body["plans"]]
        links = body.get("plans_links")
        url = links[0]["href"] if links else None
        pages += 1
    assert seen == sorted(p.name for p in made)
    assert pages == 3

    started = stack.call("GET", "/plans?status=started", project=project).json()["plans"]
    assert {p["name"] for p in started} == {"plan-00", "plan-03", "plan-06", "plan-09"}
    newest = stack.call("GET", "/plans?sort_key=name&sort_dir=desc&limit=2", project=project).json()
    assert [p["name"] for p in newest["plans"]] == ["plan-11", "plan-10"]
    assert stack.call("GET", "/plans?name=plan-04", project=project).json()["plans"][0]["name"] == "plan-04"
    # default cap
    for i in range(MAX_LIMIT - 12 + 3):
        stack.add_plan(project=project, name=f"extra-{i}")
    capped = stack.call("GET", "/plans?limit=1000", project=project).json()
    assert len(capped["plans"]) == MAX_LIMIT
    assert "limit=20" in capped["plans_links"][0]["href"]


@pytest.mark.parametrize(("query", "field"), [
    ("limit=abc", "limit"), ("limit=-1", "limit"), ("sort=colour:asc", "sort"),
    ("sort=name:sideways", "sort"),
])
def test_bad_list_parameters(stack: Stack, query: str, field: str) -> None:
    assert _error(stack.call("GET", f"/plans?{query}"), 400).startswith(f"{field}:")


def test_unknown_marker_is_400(stack: Stack) -> None:
    msg = _error(stack.call("GET", "/plans?marker=does-not-exist"), 400)
    assert "does-not-exist" in msg


def test_all_tenants_is_admin_only(stack: Stack) -> None:
    stack.add_plan(project="proj-x", name="x-plan")
    stack.add_plan(project="proj-y", name="y-plan")
    assert "all_tenants" in _error(stack.call("GET", "/plans?all_tenants=1"), 403)
    names = {p["name"] for p in stack.admin("GET", "/plans?all_tenants=1&limit=1000").json()["plans"]}
    assert {"x-plan", "y-plan"} <= names
    own = {p["name"] for p in stack.call("GET", "/plans", project="proj-x").json()["plans"]}
    assert own == {"x-plan"}


# -- checkpoints -------------------------------------------------------------


def test_checkpoint_create_show_list(stack: Stack) -> None:
    plan = stack.add_plan(project="proj-cp", name="cp-plan")
    resp = stack.call("POST", CP, project="proj-cp",
                      body={"checkpoint": {"plan_id": plan.id, "extra-info": {"reason": "nightly"}}})
    assert resp.status_code == 200, resp.text
    cp = resp.json()["checkpoint"]
    assert stack.endpoint.request_ids[-1] == resp.headers["X-Openstack-Request-Id"]  # same id over RPC
    assert cp["status"] == "protecting"
    assert cp["extra_info"] == {"reason": "nightly"}
    assert cp["protection_plan"]["id"] == plan.id
    assert cp["protection_plan"]["provider_id"] == PROVIDER_ID
    assert cp["protection_plan"]["resources"][0]["id"] == "vol-01"
    assert json.loads(cp["resource_graph"])[0]["id"] == "vol-01"
    assert cp["progress"] == {"bytes_total": 4 * 1024 * 1024, "bytes_done": 0}
    assert set(cp) >= {"id", "project_id", "status", "protection_plan", "resource_graph", "created_at",
                       "extra_info", "status_reason", "progress"}

    shown = stack.call("GET", f"{CP}/{cp['id']}", project="proj-cp").json()["checkpoint"]
    assert shown["id"] == cp["id"]
    listed = stack.call("GET", CP, project="proj-cp").json()["checkpoints"]
    assert [c["id"] for c in listed] == [cp["id"]]
    _error(stack.call("GET", f"{CP}/{cp['id']}", project="proj-other"), 404)


def test_checkpoint_show_lists_each_resource_with_its_size_stored_bytes_and_seconds(stack: Stack) -> None:
    # Karbor's packed graph: a project with one volume under it, as the protection service writes it.
    graph = json.dumps([{"0x0": ["OS::Keystone::Project", "proj-r", "proj-r", {}],
                         "0x1": [VOLUME, "vol-01", "volume 1", {}]}, [["0x0", ["0x1"]]]])
    protected = {f"{VOLUME}#vol-01": {"mode": "full", "size_bytes": 25165824, "bytes_read": 25165824,
                                      "bytes_stored": 1048576, "status": "available", "seconds": 1.25},
                 "OS::Keystone::Project#proj-r": {"status": "available", "seconds": 0.002}}
    cp = stack.add_checkpoint(project="proj-r", resource_graph=graph, extra_info={"protected": protected})
    shown = stack.call("GET", f"{CP}/{cp.id}", project="proj-r").json()["checkpoint"]
    assert shown["resource_graph"] == graph  # Karbor's field as it is
    assert shown["resources"] == [
        {"id": "proj-r", "type": "OS::Keystone::Project", "name": "proj-r", "depth": 0, "status": "available",
         "size_bytes": None, "stored_bytes": None, "seconds": 0.002},
        {"id": "vol-01", "type": VOLUME, "name": "volume 1", "depth": 1, "status": "available",
         "size_bytes": 25165824, "stored_bytes": 1048576, "seconds": 1.25}]
    listed = stack.call("GET", CP, project="proj-r").json()["checkpoints"]
    assert listed[0]["resources"] == shown["resources"]

    # A checkpoint from before these figures: every resource shown, its figures null.
    old = stack.add_checkpoint(project="proj-r", resource_graph=graph)
    resources = stack.call("GET", f"{CP}/{old.id}", project="proj-r").json()["checkpoint"]["resources"]
    assert [(r["id"], r["status"], r["size_bytes"], r["stored_bytes"], r["seconds"]) for r in resources] == [
        ("proj-r", "available", None, None, None), ("vol-01", "available", None, None, None)]
    failed = stack.add_checkpoint(project="proj-r", status="error", resource_graph=graph)
    resources = stack.call("GET", f"{CP}/{failed.id}", project="proj-r").json()["checkpoint"]["resources"]
    assert [r["status"] for r in resources] == [None, None]  # a failed run says nothing per resource
    unreadable = stack.add_checkpoint(project="proj-r", resource_graph="not json")
    assert stack.call("GET", f"{CP}/{unreadable.id}", project="proj-r").json()["checkpoint"]["resources"] == []


def test_checkpoint_create_errors(stack: Stack) -> None:
    plan = stack.add_plan(project="proj-cpe")
    empty = stack.call("POST", CP, project="proj-cpe", body={"checkpoint": {}})
    assert "checkpoint.plan_id" in _error(empty, 400)
    missing = str(uuid.uuid4())
    assert missing in _error(stack.call("POST", CP, project="proj-cpe",
                                        body={"checkpoint": {"plan_id": missing}}), 404)
    # other project's plan is not found either
    _error(stack.call("POST", CP, project="proj-zzz", body={"checkpoint": {"plan_id": plan.id}}), 404)
    msg = _error(stack.call("POST", f"/providers/{OTHER_PROVIDER_ID}/checkpoints", project="proj-cpe",
                            body={"checkpoint": {"plan_id": plan.id}}), 400)
    assert PROVIDER_ID in msg and OTHER_PROVIDER_ID in msg


def test_checkpoint_list_filters_and_dates(stack: Stack) -> None:
    project = "proj-dates"
    plan_a, plan_b = stack.add_plan(project=project), stack.add_plan(project=project)
    day = _dt.datetime(2026, 3, 10, 12, 0, tzinfo=_dt.UTC)
    made = [stack.add_checkpoint(project=project, plan_id=(plan_a if i % 2 else plan_b).id,
                                 created_at=day + _dt.timedelta(days=i)) for i in range(6)]
    listed = [c["id"] for c in stack.call("GET", CP, project=project).json()["checkpoints"]]
    assert listed == [c.id for c in reversed(made)]  # newest first
    by_plan = stack.call("GET", f"{CP}?plan_id={plan_a.id}", project=project).json()["checkpoints"]
    assert {c["id"] for c in by_plan} == {made[1].id, made[3].id, made[5].id}
    window = stack.call("GET", f"{CP}?start_date=2026-03-11&end_date=2026-03-13", project=project).json()
    assert {c["id"] for c in window["checkpoints"]} == {made[1].id, made[2].id, made[3].id}
    bad_month = stack.call("GET", f"{CP}?start_date=2026-13-01", project=project)
    assert _error(bad_month, 400).startswith("start_date")
    assert _error(stack.call("GET", f"{CP}?end_date=yesterday", project=project), 400).startswith("end_date")
    page = stack.call("GET", f"{CP}?limit=4", project=project).json()
    assert len(page["checkpoints"]) == 4
    rest = stack.call("GET", page["checkpoints_links"][0]["href"]).json()["checkpoints"]
    assert [c["id"] for c in rest] == [made[1].id, made[0].id]
    # project_id filter is admin only
    assert _error(stack.call("GET", f"{CP}?project_id={project}", project="proj-a"), 403)
    assert len(stack.admin("GET", f"{CP}?project_id={project}", project="proj-a").json()["checkpoints"]) == 6


def test_checkpoint_delete_and_reset_state(stack: Stack) -> None:
    cp = stack.add_checkpoint(project="proj-del", status="available")
    assert stack.call("DELETE", f"{CP}/{cp.id}", project="proj-del").status_code == 202
    assert stack.db.get_checkpoint(cp.id).status == "deleting"
    _error(stack.call("DELETE", f"{CP}/{uuid.uuid4()}", project="proj-del"), 404)
    protecting = stack.add_checkpoint(project="proj-del", status="protecting")
    msg = _error(stack.call("DELETE", f"{CP}/{protecting.id}", project="proj-del"), 409)
    assert "protecting" in msg

    reset = {"os-resetState": {"state": "error"}}
    _error(stack.call("PUT", f"{CP}/{protecting.id}", project="proj-del", body=reset), 403)
    assert stack.admin("PUT", f"{CP}/{protecting.id}", project="proj-del", body=reset).status_code == 202
    assert stack.db.get_checkpoint(protecting.id).status == "error"
    bad = {"os-resetState": {"state": "deleted"}}
    assert "os-resetState.state" in _error(stack.admin("PUT", f"{CP}/{protecting.id}", project="proj-del",
                                                       body=bad), 400)


def test_checkpoint_copy_action_validates_and_copies_what_the_target_lacks(stack: Stack) -> None:
    project = "proj-copy"
    plan = stack.add_plan(project=project)
    older = stack.add_checkpoint(project=project, plan_id=plan.id,
                                 created_at=_dt.datetime(2026, 5, 1, tzinfo=_dt.UTC))
    newer = stack.add_checkpoint(project=project, plan_id=plan.id,
                                 created_at=_dt.datetime(2026, 5, 2, tzinfo=_dt.UTC))
    stack.add_checkpoint(project=project, plan_id=plan.id, status="protecting")

    def copy(parameters: dict[str, Any], plan_id: str = plan.id, **kwargs: Any) -> requests.Response:
        body = {"copy": {"plan_id": plan_id, "parameters": parameters}}
        return stack.call("POST", f"{CP}/action", body=body, project=kwargs.pop("project", project), **kwargs)

    assert "unknown field 'explode'" in _error(stack.call("POST", f"{CP}/action", body={"explode": {}}), 400)
    assert _error(copy({}), 400).startswith("copy.parameters")
    assert "target_provider_id" in _error(copy({}), 400)
    assert "unknown field 'bogus'" in _error(copy({"target_provider_id": OTHER_PROVIDER_ID, "bogus": 1}), 400)
    msg = _error(copy({"target_provider_id": PROVIDER_ID}), 400)
    assert msg.startswith("copy.parameters.target_provider_id") and "provider in the URL" in msg
    msg = _error(copy({"target_provider_id": str(uuid.uuid4())}), 400)
    assert msg.startswith("copy.parameters.target_provider_id: provider ") and msg.endswith(" not found")
    _error(copy({"target_provider_id": OTHER_PROVIDER_ID}, plan_id=str(uuid.uuid4())), 404)
    assert "Plan" in _error(copy({"target_provider_id": OTHER_PROVIDER_ID}, project="proj-other"), 404)
    foreign = stack.add_checkpoint(project="proj-other", plan_id=plan.id)
    _error(copy({"target_provider_id": OTHER_PROVIDER_ID, "checkpoint_id": foreign.id}), 404)
    other_plan = stack.add_plan(project=project, name="other")
    stray = stack.add_checkpoint(project=project, plan_id=other_plan.id)
    msg = _error(copy({"target_provider_id": OTHER_PROVIDER_ID, "checkpoint_id": stray.id}), 400)
    assert msg.startswith("copy.parameters.checkpoint_id")

    answer = copy({"target_provider_id": OTHER_PROVIDER_ID, "checkpoint_id": older.id})
    assert answer.status_code == 200, answer.text
    assert answer.json()["copy"] == {"project_id": project, "provider_id": PROVIDER_ID, "plan_id": plan.id,
                                     "parameters": {"target_provider_id": OTHER_PROVIDER_ID,
                                                    "checkpoint_id": older.id},
                                     "checkpoints": [older.id]}
    msg = _error(copy({"target_provider_id": OTHER_PROVIDER_ID, "checkpoint_id": older.id}), 409)
    assert msg.startswith("copy.checkpoint_id")
    # By plan: every available checkpoint the target does not hold yet, oldest first.
    answer = copy({"target_provider_id": OTHER_PROVIDER_ID})
    assert answer.json()["copy"]["checkpoints"] == [newer.id]
    assert copy({"target_provider_id": OTHER_PROVIDER_ID}).json()["copy"]["checkpoints"] == []

    # Each copy is a checkpoint of the target: listed there, shown with its copies at the source.
    target_cp = f"/providers/{OTHER_PROVIDER_ID}/checkpoints"
    listed = stack.call("GET", target_cp, project=project).json()["checkpoints"]
    assert {c["id"]: c["status"] for c in listed} == {older.id: "copying", newer.id: "copying"}
    shown = stack.call("GET", f"{CP}/{older.id}", project=project).json()["checkpoint"]
    assert shown["copies"] == [{"provider_id": OTHER_PROVIDER_ID, "status": "copying", "status_reason": None}]
    assert shown["status"] == "available"
    there = stack.call("GET", f"{target_cp}/{older.id}", project=project).json()["checkpoint"]
    assert there["copies"] == [{"provider_id": PROVIDER_ID, "status": "available", "status_reason": None}]


# -- restores and verifications ----------------------------------------------


def test_restore_lifecycle_and_password_never_echoed(stack: Stack) -> None:
    cp = stack.add_checkpoint(project="proj-r", status="available")
    body = {"restore": {"provider_id": PROVIDER_ID, "checkpoint_id": cp.id,
                        "restore_auth": {"type": "password", "username": "admin",
                                         "password": "hunter2-secret"},
                        "parameters": {VOLUME: {"restore_name": "copy"}}}}
    resp = stack.call("POST", "/restores", project="proj-r", body=body)
    assert resp.status_code == 200, resp.text
    restore = resp.json()["restore"]
    assert restore["status"] == "in_progress"
    assert restore["checkpoint_id"] == cp.id and restore["provider_id"] == PROVIDER_ID
    assert restore["resources_status"] == {f"{VOLUME}#vol-01": "restoring"}
    assert set(restore) >= {"id", "project_id", "provider_id", "checkpoint_id", "restore_target",
                            "parameters",
                            "status", "resources_status", "resources_reason", "extra_info"}
    texts = [resp.text,
             stack.call("GET", f"/restores/{restore['id']}", project="proj-r").text,
             stack.call("GET", "/restores", project="proj-r").text]
    assert all("hunter2-secret" not in t for t in texts)
    assert "hunter2-secret" not in json.dumps(stack.db.get_restore(restore["id"]).to_dict())
    listed = json.loads(texts[2])["restores"]
    assert [r["id"] for r in listed] == [restore["id"]]
    _error(stack.call("GET", f"/restores/{restore['id']}", project="proj-other"), 404)


def test_restore_errors(stack: Stack) -> None:
    missing = str(uuid.uuid4())
    body = {"restore": {"provider_id": PROVIDER_ID, "checkpoint_id": missing, "parameters": {}}}
    assert missing in _error(stack.call("POST", "/restores", project="proj-re", body=body), 404)
    busy = stack.add_checkpoint(project="proj-re", status="protecting")
    body["restore"]["checkpoint_id"] = busy.id
    assert "not available" in _error(stack.call("POST", "/restores", project="proj-re", body=body), 409)
    assert "restore.checkpoint_id" in _error(stack.call("POST", "/restores", project="proj-re",
                                                        body={"restore": {"provider_id": PROVIDER_ID}}), 400)
    # protection refuses the target: 400 and no record left behind
    ok = stack.add_checkpoint(project="proj-re", status="available")
    body = {"restore": {"provider_id": PROVIDER_ID, "checkpoint_id": ok.id, "restore_target": "http://x"}}
    assert "restore_target" in _error(stack.call("POST", "/restores", project="proj-re", body=body), 400)
    assert stack.call("GET", "/restores", project="proj-re").json()["restores"] == []


def test_verification(stack: Stack) -> None:
    cp = stack.add_checkpoint(project="proj-v", status="available")
    body = {"verification": {"provider_id": PROVIDER_ID, "checkpoint_id": cp.id, "parameters": {}}}
    resp = stack.call("POST", "/verifications", project="proj-v", body=body)
    assert resp.status_code == 200, resp.text
    ver = resp.json()["verification"]
    assert ver["status"] == "in_progress" and "restore_target" not in ver
    assert stack.call("GET", f"/verifications/{ver['id']}", project="proj-v").json()["verification"]["id"] \
        == ver["id"]
    assert [v["id"] for v in stack.call("GET", "/verifications", project="proj-v").json()["verifications"]] \
        == [ver["id"]]
    # a verification is not a restore
    assert stack.call("GET", "/restores", project="proj-v").json()["restores"] == []
    _error(stack.call("GET", f"/restores/{ver['id']}", project="proj-v"), 404)
    body["verification"]["restore_target"] = "x"
    assert "restore_target" in _error(stack.call("POST", "/verifications", project="proj-v", body=body), 400)


# -- operation logs ----------------------------------------------------------


def test_operation_logs(stack: Stack) -> None:
    from strongroom.objects.records import OperationLog

    cp_id = str(uuid.uuid4())
    for i, op in enumerate(["protect", "restore", "protect"]):
        stack.db.create_operation_log(OperationLog(
            id=str(uuid.uuid4()), project_id="proj-log", operation_type=op,
            status="success" if i else "error", provider_id=PROVIDER_ID, checkpoint_id=cp_id))
    logs = stack.call("GET", "/operation_logs", project="proj-log").json()["operation_logs"]
    assert len(logs) == 3
    protects = stack.call("GET", "/operation_logs?operation_type=protect", project="proj-log").json()
    assert {log["operation_type"] for log in protects["operation_logs"]} == {"protect"}
    assert len(protects["operation_logs"]) == 2
    query = f"/operation_logs?status=error&checkpoint_id={cp_id}"
    errors = stack.call("GET", query, project="proj-log").json()
    assert len(errors["operation_logs"]) == 1
    one = stack.call("GET", f"/operation_logs/{logs[0]['id']}", project="proj-log").json()["operation_log"]
    assert one["id"] == logs[0]["id"]
    _error(stack.call("GET", f"/operation_logs/{logs[0]['id']}", project="proj-b"), 404)


def test_admin_token_grants_admin_only_with_exact_token(stack: Stack) -> None:
    assert stack.call("GET", "/plans?all_tenants=1", token=ADMIN_TOKEN + "x").status_code == 403
    assert stack.call("GET", "/plans?all_tenants=1", token=ADMIN_TOKEN).status_code == 200


def test_concurrent_requests_are_served_in_parallel(stack: Stack) -> None:
    from concurrent.futures import ThreadPoolExecutor

    for i in range(3):
        stack.add_plan(project="proj-par", name=f"par-{i}")
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _i: stack.call("GET", "/plans", project="proj-par"), range(16)))
    assert all(r.status_code == 200 and len(r.json()["plans"]) == 3 for r in results)
    assert len({r.headers["X-Openstack-Request-Id"] for r in results}) == 16


def test_remote_errors_carry_no_traceback(stack: Stack) -> None:
    msg = _error(stack.call("GET", "/protectables/OS::Nope"), 404)
    assert msg == "Protectable type OS::Nope could not be found."


def test_deleted_checkpoints_are_listed_only_when_asked_for(stack: Stack) -> None:
    project = "proj-hidden"
    kept = stack.add_checkpoint(project=project)
    gone = stack.add_checkpoint(project=project, status="deleted")
    failed = stack.add_checkpoint(project=project, status="error")

    def listed(**params: str) -> set[str]:
        answer = stack.call("GET", CP, project=project, params=params)
        assert answer.status_code == 200, answer.text
        return {c["id"] for c in answer.json()["checkpoints"]}

    assert listed() == {kept.id, failed.id}
    assert listed(status="deleted") == {gone.id}
    assert listed(status="error") == {failed.id}
    assert stack.call("GET", f"{CP}/{gone.id}", project=project).json()["checkpoint"]["status"] == "deleted"
