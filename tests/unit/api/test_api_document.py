"""The OpenAPI document says what the server does, and the server does what it says.

Over the real app on a real HTTP server (``stack``, noauth) and, for the keystone document, the app built
with ``auth_strategy = keystone``.  ``tests/functional/test_api_schemathesis.py`` fuzzes the whole contract;
these are the defects it and a tester found, each pinned by the behaviour a client sees.
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.parse
from typing import Any

import pytest
import webob
from apiharness import ADMIN_TOKEN, PROVIDER_ID, VOLUME, Stack

from strongroom.api import auth, openapi, policy, routes
from strongroom.api.app import RootApp, V1App
from strongroom.config import new_conf
from strongroom.validation import MAX_DEPTH

CP = f"/providers/{PROVIDER_ID}/checkpoints"
UNKNOWN_PROVIDER = "no-such-provider"


def _error(resp: Any, code: int) -> str:
    assert resp.status_code == code, resp.text
    (err,) = resp.json().values()
    assert err["code"] == code
    return str(err["message"])


def _raw(stack: Stack, method: str, target: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """A request sent exactly as given: bytes a client library would re-encode stay as they are."""
    url = urllib.parse.urlsplit(stack.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(method, target, body=body, headers={"X-Auth-Token": ADMIN_TOKEN, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def _message(answer: tuple[int, dict[str, Any]], code: int = 400) -> str:
    status, body = answer
    assert status == code, body
    (err,) = body.values()
    return str(err["message"])


# -- per authentication mode ---------------------------------------------------------------------------


def _keystone_document() -> dict[str, Any]:
    conf = new_conf(overrides={"DEFAULT": {"auth_strategy": "keystone"}})
    app = RootApp(conf, auth.KeystoneContextMiddleware(V1App(conf, None, None, policy.get_enforcer(conf))))  # type: ignore[arg-type]
    resp = webob.Request.blank("/v1/openapi.json").get_response(app)
    assert resp.status_int == 200
    return resp.json  # type: ignore[no-any-return]


def test_noauth_document_does_not_require_a_token(stack: Stack) -> None:
    doc = stack.call("GET", "/v1/openapi.json", token="").json()
    assert "security" not in doc and "securitySchemes" not in doc["components"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            token = [p for p in op["parameters"] if p["name"] == "X-Auth-Token"]
            assert token and token[0]["in"] == "header" and token[0]["required"] is False, (method, path)
            assert "401" not in op["responses"], (method, path)
    # and indeed: no token at all is a member of the URL's project
    assert stack.call("GET", "/plans", token="", headers={"X-Auth-Token": ""}).status_code == 200


def test_keystone_document_requires_a_token_and_declares_401() -> None:
    doc = _keystone_document()
    assert doc["security"] == [{"token": []}]
    assert doc["components"]["securitySchemes"]["token"] == {
        "type": "apiKey", "in": "header", "name": "X-Auth-Token",
        "description": "a Keystone token scoped to the URL's project"}
    for item in doc["paths"].values():
        for op in item.values():
            assert "401" in op["responses"]
            assert not [p for p in op["parameters"] if p["name"] in ("X-Auth-Token", "X-User-Id")]


def test_no_document_declares_a_500() -> None:
    for mode in ("noauth", "keystone"):
        for item in openapi.build(routes.ROUTES, mode)["paths"].values():
            for op in item.values():
                assert "500" not in op["responses"]


# -- limit ---------------------------------------------------------------------------------------------

PAGED = [route for route in routes.ROUTES if "limit" in route.query]


def _concrete(route: routes.Route, stack: Stack) -> str:
    values = {"provider_id": PROVIDER_ID, "protectable_type": VOLUME,
              "scheduled_operation_id": _scheduled_operation(stack)}
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], route.path)


def _scheduled_operation(stack: Stack) -> str:
    from strongroom.db.scheduling import SchedulingStore
    from strongroom.objects.scheduling import ScheduledOperation, Trigger

    store = SchedulingStore(stack.db)
    existing = store.list_operations("proj-a", filters={}, marker=None, limit=1, sort=[("id", "asc")])
    if existing:
        return str(existing[0].id)
    trigger = store.create_trigger(Trigger(id="trigger-for-limit", project_id="proj-a", name="t", type="time",
                                           properties={"format": "crontab", "pattern": "0 * * * *",
                                                       "start_time": "2030-01-01T00:00:00", "end_time": None,
                                                       "window": 3600}))
    plan = stack.add_plan()
    op = store.create_operation(ScheduledOperation(
        id="operation-for-limit", project_id="proj-a", user_id="u", name="s", description="",
        operation_type="protect", trigger_id=trigger.id, plan_id=plan.id, provider_id=PROVIDER_ID,
        operation_definition={"provider_id": PROVIDER_ID, "plan_id": plan.id}, enabled=True))
    return str(op.id)


@pytest.mark.parametrize("route", PAGED, ids=lambda r: r.path)
def test_every_list_documents_and_enforces_a_non_negative_limit(stack: Stack, route: routes.Route) -> None:
    doc = openapi.build(routes.ROUTES)
    op = doc["paths"][route.full_path]["get"]
    (limit,) = [p for p in op["parameters"] if p["name"] == "limit"]
    assert limit["schema"]["anyOf"] == [{"type": "string", "maxLength": 0}, {"type": "integer", "minimum": 0}]
    assert "0 answers an empty page" in limit["description"]
    path = _concrete(route, stack)
    assert _error(stack.call("GET", path, params={"limit": "-1"}), 400).startswith("limit: ")
    assert stack.call("GET", path, params={"limit": ""}).status_code == 200  # empty: as if absent
    zero = stack.call("GET", path, params={"limit": "0"})
    assert zero.status_code == 200, zero.text
    assert zero.json() == {route.response_key: []}  # an empty page, and no link to a next one


# -- an unknown provider -------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "", None),
    ("GET", "/any-checkpoint", None),
    ("DELETE", "/any-checkpoint", None),
    ("POST", "", {"checkpoint": {"plan_id": "any-plan"}}),
    ("POST", "/action", {"copy": {"plan_id": "any-plan", "parameters": {"target_provider_id": "any-provider"}}}),
])
def test_every_checkpoint_route_under_an_unknown_provider_is_a_404_naming_it(
        stack: Stack, method: str, path: str, body: Any) -> None:
    resp = stack.call(method, f"/providers/{UNKNOWN_PROVIDER}/checkpoints{path}", token=ADMIN_TOKEN, body=body)
    assert UNKNOWN_PROVIDER in _error(resp, 404)


def test_a_known_provider_with_an_unknown_checkpoint_names_the_checkpoint(stack: Stack) -> None:
    message = _error(stack.call("GET", f"{CP}/no-such-checkpoint"), 404)
    assert "no-such-checkpoint" in message and PROVIDER_ID not in message


@pytest.mark.parametrize(("method", "path"), [("POST", "/plans"), ("PUT", "/plans/{plan_id}")])
def test_a_plan_naming_a_resource_its_provider_cannot_find_is_a_declared_404(
        stack: Stack, method: str, path: str) -> None:
    operation = stack.call("GET", "/v1/openapi.json").json()["paths"][f"/v1/{{project_id}}{path}"][method.lower()]
    assert {"404", "503"} <= set(operation["responses"]), sorted(operation["responses"])
    plan = {"name": "p", "provider_id": PROVIDER_ID, "resources": [{"id": "vol-01", "type": VOLUME}]}
    target = "/plans"
    if method == "PUT":
        created = stack.call("POST", "/plans", body={"plan": plan})
        assert created.status_code == 200, created.text
        target, plan = f"/plans/{created.json()['plan']['id']}", {}
    missing = {**plan, "resources": [{"id": "no-such-volume", "type": VOLUME}]}
    message = _error(stack.call(method, target, body={"plan": missing}), 404)
    assert message.startswith(f"plan.resources[0]: {VOLUME} 'no-such-volume' could not be found"), message


# -- hostile text ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "field"), [
    (b'{"checkpoint": {"plan_id": "p", "extra_info": {"note": "a\\u0000b"}}}', "checkpoint.extra_info.note"),
    (b'{"checkpoint": {"plan_id": "p", "extra_info": {"note": "\\ud800"}}}', "checkpoint.extra_info.note"),
    (b'{"checkpoint": {"plan_id": "p", "extra_info": {"n\\u0000": 1}}}', "checkpoint.extra_info: a key"),
    (b'{"checkpoint": {"plan_id": "p", "extra_info": {"a": ["x", "\\udfff"]}}}', "checkpoint.extra_info.a[1]"),
])
def test_nul_and_lone_surrogates_in_free_fields_are_400s_naming_the_field(stack: Stack, raw: bytes,
                                                                           field: str) -> None:
    plan = stack.add_plan()
    raw = raw.replace(b'"plan_id": "p"', f'"plan_id": "{plan.id}"'.encode())
    message = _error(stack.call("POST", CP, raw=raw, headers={"Content-Type": "application/json"}), 400)
    assert message.startswith(f"{field}: must not hold "), message
    assert "protect" not in stack.endpoint.calls[-1:]


def test_absurd_nesting_is_a_400_not_a_500(stack: Stack) -> None:
    deep = b'{"plan": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    big = stack.call("POST", "/plans", raw=deep, headers={"Content-Type": "application/json"})
    assert big.status_code in (400, 413), big.text  # the body cap may refuse it first
    nested: Any = "x"
    for _ in range(MAX_DEPTH + 5):
        nested = {"n": nested}
    plan = stack.add_plan()
    resp = stack.call("POST", CP, body={"checkpoint": {"plan_id": plan.id, "extra_info": nested}})
    assert _error(resp, 400) == f"checkpoint.extra_info: nested more than {MAX_DEPTH} levels deep"


def test_absurd_nesting_past_the_parser_is_a_400_naming_the_body(stack: Stack) -> None:
    from strongroom.api import common

    request = webob.Request.blank("/", method="POST", body=b"[" * 50_000 + b"]" * 50_000,
                                  content_type="application/json")
    with pytest.raises(common.BadRequest, match=f"body: nested more than {MAX_DEPTH} levels deep"):
        common.parse_json_body(request, 10**6)


def test_nested_json_in_a_query_parameter_is_checked_too(stack: Stack) -> None:
    deep = "[" * 5000 + "]" * 5000
    url = f"/protectables/{VOLUME}/instances"
    assert _error(stack.call("GET", url, params={"parameters": deep}), 400).startswith("parameters: ")
    assert _error(stack.call("GET", url, params={"parameters": '{"a": "b\\u0000"}'}), 400) \
        .startswith("parameters.a: must not hold NUL")


@pytest.mark.parametrize(("target", "field"), [
    ("/v1/proj-a/plans/%FF", "plan_id"),
    ("/v1/%FF%FE/plans", "project_id"),
    ("/v1/proj-a/plans/%ED%A0%80", "plan_id"),  # an encoded surrogate: no valid UTF-8
    ("/v1/proj-a/plans?name=%FF", "name"),
    ("/v1/proj-a/plans?all_tenants=%C3", "all_tenants"),
    ("/v1/proj-a/providers?%FF=1", "query"),
])
def test_bytes_that_are_not_utf8_are_a_400_naming_the_field(stack: Stack, target: str, field: str) -> None:
    assert _message(_raw(stack, "GET", target)).startswith(f"{field}: ")


def test_marker_is_checked_like_an_id(stack: Stack) -> None:
    assert _error(stack.call("GET", "/plans", params={"marker": "a\x00b"}), 400).startswith("marker: ")
    assert "marker no-such-plan could not be found" in _error(stack.call("GET", "/plans",
                                                                      params={"marker": "no-such-plan"}), 400)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_a_body_declared_as_something_else_than_json_is_a_415(stack: Stack, content_type: str) -> None:
    body = json.dumps({"plan": {"name": "p"}}).encode()
    message = _message(_raw(stack, "POST", "/v1/proj-a/plans", body, {"Content-Type": content_type}), 415)
    assert message == f"body: the request body must be application/json, not {content_type}"


def test_json_bodies_with_or_without_a_content_type_are_read(stack: Stack) -> None:
    body = json.dumps({"plan": {"name": "p", "provider_id": PROVIDER_ID,
                                "resources": [{"id": "vol-01", "type": VOLUME}]}}).encode()
    for headers in ({}, {"Content-Type": "application/json; charset=utf-8"}):
        status, answer = _raw(stack, "POST", "/v1/proj-a/plans", body, headers)
        assert status == 200, answer


# -- sort -----------------------------------------------------------------------------------------------

SORTED = [route for route in routes.ROUTES if route.sort_keys]


@pytest.mark.parametrize("route", SORTED, ids=lambda r: r.path)
def test_every_sort_key_the_document_names_is_one_the_server_sorts_by(stack: Stack, route: routes.Route) -> None:
    op = openapi.build(routes.ROUTES)["paths"][route.full_path]["get"]
    params = {p["name"]: p["schema"] for p in op["parameters"]}
    assert params["sort_key"]["anyOf"][1]["enum"] == list(route.sort_keys)
    pattern = re.compile(params["sort"]["anyOf"][1]["pattern"])
    path = _concrete(route, stack)
    for i, key in enumerate(route.sort_keys):
        other = route.sort_keys[(i + 1) % len(route.sort_keys)]
        for value in (key, f"{key}:asc", f"{key}:desc,{other}"):
            assert pattern.match(value)
            assert stack.call("GET", path, params={"sort": value}).status_code == 200, value
        assert stack.call("GET", path, params={"sort_key": key, "sort_dir": "asc"}).status_code == 200
    assert "at most once" in [p for p in op["parameters"] if p["name"] == "sort"][0]["description"]
    twice = f"{route.sort_keys[0]},{route.sort_keys[0]}"
    assert _error(stack.call("GET", path, params={"sort": twice}), 400).startswith("sort")
    assert not pattern.match("nonsense")
    assert _error(stack.call("GET", path, params={"sort": "nonsense"}), 400).startswith("sort: ")


def test_sort_and_sort_key_together_are_a_400_not_one_silently_ignored(stack: Stack) -> None:
    resp = stack.call("GET", "/plans", params={"sort": "name", "sort_key": "no-such-key"})
    assert _error(resp, 400).startswith("sort_key: ")


def test_empty_query_values_and_user_id_are_documented_as_the_server_reads_them(stack: Stack) -> None:
    """An empty filter or marker is as if absent, an empty X-User-Id is noauth: the document allows both."""
    doc = openapi.build(routes.ROUTES)
    op = doc["paths"]["/v1/{project_id}/scheduled_operations"]["get"]
    params = {p["name"]: p["schema"] for p in op["parameters"]}
    for name in ("operation_type", "marker", "sort", "sort_key"):
        assert params[name]["anyOf"][0] == {"type": "string", "maxLength": 0}, name
    assert params["X-User-Id"]["minLength"] == 0
    resp = stack.call("GET", "/scheduled_operations", params={"operation_type": "", "marker": "", "sort": ""},
                      headers={"X-User-Id": ""})
    assert resp.status_code == 200, resp.text
