"""Hostile names and ids are refused at the API's edge with a 400 naming the field, and never reach a log.

Every name and id field of every request body, every path parameter of every route and every query
filter of every list, each with control characters (newline, ESC, NUL, DEL, C1), bidi overrides and,
for ids and file names, path-like values.  Over the real app on a real HTTP server (``stack``).
"""

from __future__ import annotations

import copy
import http.client
import json
import logging
import re
import urllib.parse
import uuid
from typing import Any

import pytest
from apiharness import ADMIN_TOKEN, PROVIDER_ID, VOLUME, Stack

from strongroom.api import routes
from strongroom.api.v1 import checkpoints, operation_logs, plans, restores, scheduled_operations, services, triggers
from strongroom.validation import Rule, problem

CONTROL = {"newline": "a\nb", "esc": "a\x1b[31mred", "nul": "a\x00b", "del": "a\x7fb", "c1": "a\x85b",
           "rlo": "txt\u202egpj.exe", "isolate": "a\u2066b", "line-separator": "a\u2028b"}
#: What an id may not be beyond that: a path, a dot, characters outside the id charset.
NOT_IDS = {"dotdot": "..", "dot": ".", "slash": "a/b", "space": "a b", "absolute": "/etc/passwd"}
#: What restore_name (a file the backend creates) may not be beyond the name rules.
NOT_FILE_NAMES = {"traversal": "../..", "absolute": "/etc/passwd", "dot": ".", "dotdot": "..",
                  "hidden": ".hidden", "option": "-rf", "inner-slash": "a/b"}
TEXT_CONTROL = {k: v for k, v in CONTROL.items() if k != "newline"}  # a description may hold lines

PLAN = {"plan": {"name": "p", "description": "d", "provider_id": PROVIDER_ID,
                 "resources": [{"id": "vol-01", "type": VOLUME, "name": "volume 1"}],
                 "parameters": {VOLUME: {"backup_mode": "full"}}}}
PLAN_UPDATE = {"plan": {key: PLAN["plan"][key] for key in ("name", "description", "resources")}}
TRIGGER = {"trigger_info": {"name": "t", "type": "time",
                            "properties": {"format": "crontab", "pattern": "0 * * * *",
                                           "start_time": "2030-01-01 00:00:00"}}}
SCHEDULED = {"scheduled_operation": {"name": "s", "description": "d", "operation_type": "protect",
                                     "trigger_id": str(uuid.uuid4()),
                                     "operation_definition": {"provider_id": PROVIDER_ID,
                                                              "plan_id": str(uuid.uuid4())}}}
RESTORE = {"restore": {"provider_id": PROVIDER_ID, "checkpoint_id": str(uuid.uuid4()),
                       "restore_target": "http://target", "restore_auth": {"type": "password", "username": "u"},
                       "parameters": {VOLUME: {"restore_name": "copy"}}}}
VERIFY = {"verification": {"provider_id": PROVIDER_ID, "checkpoint_id": str(uuid.uuid4())}}
ANY_ID = str(uuid.uuid4())
CP = f"/providers/{PROVIDER_ID}/checkpoints"

# (method, path, valid body, the field's path in the body, its rule: "name" | "text" | "id" | "file")
FIELDS: list[tuple[str, str, dict[str, Any], tuple[str | int, ...], str]] = [
    ("POST", "/plans", PLAN, ("plan", "name"), "name"),
    ("POST", "/plans", PLAN, ("plan", "description"), "text"),
    ("POST", "/plans", PLAN, ("plan", "provider_id"), "id"),
    ("POST", "/plans", PLAN, ("plan", "resources", 0, "id"), "segment"),
    ("POST", "/plans", PLAN, ("plan", "resources", 0, "type"), "id"),
    ("POST", "/plans", PLAN, ("plan", "resources", 0, "name"), "name"),
    ("PUT", f"/plans/{ANY_ID}", PLAN_UPDATE, ("plan", "name"), "name"),
    ("PUT", f"/plans/{ANY_ID}", PLAN_UPDATE, ("plan", "description"), "text"),
    ("PUT", f"/plans/{ANY_ID}", PLAN_UPDATE, ("plan", "resources", 0, "id"), "segment"),
    ("POST", CP, {"checkpoint": {"plan_id": ANY_ID}}, ("checkpoint", "plan_id"), "id"),
    ("POST", CP + "/action", {"copy": {"plan_id": ANY_ID, "parameters": {"target_provider_id": ANY_ID}}},
     ("copy", "plan_id"), "id"),
    ("POST", CP + "/action", {"copy": {"plan_id": ANY_ID, "parameters": {"target_provider_id": ANY_ID}}},
     ("copy", "parameters", "target_provider_id"), "id"),
    ("POST", CP + "/action", {"copy": {"plan_id": ANY_ID, "parameters": {"target_provider_id": ANY_ID,
                                                                        "checkpoint_id": ANY_ID}}},
     ("copy", "parameters", "checkpoint_id"), "id"),
    ("POST", "/restores", RESTORE, ("restore", "provider_id"), "id"),
    ("POST", "/restores", RESTORE, ("restore", "checkpoint_id"), "id"),
    ("POST", "/restores", RESTORE, ("restore", "restore_target"), "name"),
    ("POST", "/restores", RESTORE, ("restore", "restore_auth", "username"), "name"),
    ("POST", "/restores", RESTORE, ("restore", "parameters", VOLUME, "restore_name"), "file"),
    ("POST", "/restores", RESTORE, ("restore", "parameters", VOLUME, "restore_target"), "segment"),
    ("POST", "/restores", RESTORE, ("restore", "parameters", VOLUME, "volume_type"), "name"),
    ("POST", "/restores", RESTORE, ("restore", "parameters", VOLUME, "availability_zone"), "name"),
    ("POST", "/verifications", VERIFY, ("verification", "provider_id"), "id"),
    ("POST", "/verifications", VERIFY, ("verification", "checkpoint_id"), "id"),
    ("POST", "/triggers", TRIGGER, ("trigger_info", "name"), "name"),
    ("POST", "/triggers", TRIGGER, ("trigger_info", "properties", "pattern"), "text"),
    ("POST", "/triggers", TRIGGER, ("trigger_info", "properties", "start_time"), "name"),
    ("PUT", f"/triggers/{ANY_ID}", {"trigger_info": {"name": "t"}}, ("trigger_info", "name"), "name"),
    ("POST", "/scheduled_operations", SCHEDULED, ("scheduled_operation", "name"), "name"),
    ("POST", "/scheduled_operations", SCHEDULED, ("scheduled_operation", "description"), "text"),
    ("POST", "/scheduled_operations", SCHEDULED, ("scheduled_operation", "trigger_id"), "id"),
    ("POST", "/scheduled_operations", SCHEDULED,
     ("scheduled_operation", "operation_definition", "provider_id"), "id"),
    ("POST", "/scheduled_operations", SCHEDULED, ("scheduled_operation", "operation_definition", "plan_id"), "id"),
    ("PUT", "/os-services/1", {"status": "disabled", "disabled_reason": "r"}, ("disabled_reason",), "name"),
]
BAD_VALUES = {"name": CONTROL, "text": TEXT_CONTROL, "id": {**CONTROL, **NOT_IDS},
              "segment": {**CONTROL, "dotdot": "..", "dot": ".", "slash": "a/b"},
              "file": {**CONTROL, **NOT_FILE_NAMES}}


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _with(body: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def _message(resp: Any) -> str:
    assert resp.status_code == 400, resp.text
    (err,) = resp.json().values()
    return str(err["message"])


CASES = [pytest.param(method, path, body, field, value,
                      id=f"{method} {path.replace(ANY_ID, '{id}')} {_dotted(field)} {kind}")
         for method, path, body, field, rule in FIELDS for kind, value in BAD_VALUES[rule].items()]


@pytest.mark.parametrize(("method", "path", "body", "field", "value"), CASES)
def test_every_name_and_id_field_refuses_hostile_values(stack: Stack, method: str, path: str, body: dict[str, Any],
                                                        field: tuple[str | int, ...], value: str) -> None:
    message = _message(stack.call(method, path, token=ADMIN_TOKEN, body=_with(body, field, value)))
    assert message.startswith(f"{_dotted(field)}: "), message
    assert problem(message, Rule.NAME, max_length=10_000) is None  # the rule is told, not the value


def test_the_valid_bodies_of_the_table_pass_their_fields(stack: Stack) -> None:
    """Each body of :data:`FIELDS` as given is not refused for its field (so the 400s above are the value's)."""
    for method, path, body, field, _rule in FIELDS:
        resp = stack.call(method, path, token=ADMIN_TOKEN, body=body)
        refused = resp.status_code == 400 and _message(resp).startswith(_dotted(field))
        assert not refused or "not found" in resp.text, resp.text  # an unknown id is not a malformed one


@pytest.mark.parametrize(("name", "description"), [("Ünïcödé ✓ 名前", "a\tb\nline 2\r\n"), ("x" * 255, "")])
def test_ordinary_names_still_pass(stack: Stack, name: str, description: str) -> None:
    body = _with(_with(PLAN, ("plan", "name"), name), ("plan", "description"), description)
    resp = stack.call("POST", "/plans", body=body)
    assert resp.status_code == 200, resp.text
    assert (resp.json()["plan"]["name"], resp.json()["plan"]["description"]) == (name, description)


# -- path parameters ------------------------------------------------------------------------------------

VALID_PATH = {"provider_id": PROVIDER_ID, "service_id": "1", "protectable_type": VOLUME, "instance_id": "vol-01"}
HOSTILE_PATH = {"newline": "%0A", "forged-line": "x%0AERROR%20forged", "nul": "a%00b", "esc": "%1B%5B31m",
                "rlo": "%E2%80%AE", "dotdot": "%2E%2E", "dot": "%2E"}


def _raw(stack: Stack, method: str, path: str) -> tuple[int, dict[str, Any]]:
    """A request whose path is sent exactly as given (no client-side normalization of dot segments)."""
    url = urllib.parse.urlsplit(stack.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(method, path, body=b"{}" if method in ("POST", "PUT") else None,
                     headers={"X-Auth-Token": ADMIN_TOKEN, "Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


PATH_CASES = [pytest.param(route, name, value, id=f"{route.method} {route.path} {name} {kind}")
              for route in routes.ROUTES for name in re.findall(r"\{(\w+)\}", route.full_path)
              for kind, value in HOSTILE_PATH.items()]


@pytest.mark.parametrize(("route", "param", "value"), PATH_CASES)
def test_every_path_parameter_refuses_hostile_values(stack: Stack, route: routes.Route, param: str,
                                                     value: str) -> None:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return value if name == param else VALID_PATH.get(name, "proj-a" if name == "project_id" else ANY_ID)

    status, body = _raw(stack, route.method, re.sub(r"\{(\w+)\}", fill, route.full_path))
    assert status == 400, body
    (err,) = body.values()
    assert err["message"].startswith(f"{param}: "), err


# -- query filters ----------------------------------------------------------------------------------------

LISTS = [("/plans", plans.FILTERS), (CP, (*checkpoints.FILTERS, "project_id")), ("/restores", restores.FILTERS),
         ("/verifications", restores.FILTERS), ("/operation_logs", operation_logs.FILTERS),
         ("/triggers", triggers.FILTERS), ("/scheduled_operations", scheduled_operations.FILTERS),
         ("/os-services", services.FILTERS), ("/providers", ("name",))]
QUERY_CASES = [pytest.param(path, name, value, id=f"{path.split('/')[-1]} {name} {kind}")
               for path, filters in LISTS for name in filters for kind, value in CONTROL.items()]


@pytest.mark.parametrize(("path", "name", "value"), QUERY_CASES)
def test_every_query_filter_refuses_hostile_values(stack: Stack, path: str, name: str, value: str) -> None:
    message = _message(stack.call("GET", path, token=ADMIN_TOKEN, params={name: value}))
    assert message.startswith(f"{name}: "), message


@pytest.mark.parametrize(("path", "name", "value"), [(CP, "plan_id", ".."), ("/restores", "checkpoint_id", "a/b")])
def test_id_filters_refuse_path_like_values(stack: Stack, path: str, name: str, value: str) -> None:
    assert _message(stack.call("GET", path, params={name: value})).startswith(f"{name}: ")


@pytest.mark.parametrize("user", ["a\x85b", "a\x1b[31m", "a\x7f"])
def test_a_hostile_user_id_header_is_refused(stack: Stack, user: str) -> None:
    url = urllib.parse.urlsplit(stack.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.putrequest("GET", "/v1/proj-a/plans")
        conn.putheader("X-Auth-Token", "t")
        conn.putheader("X-User-Id", user.encode("latin-1"))
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 400
        message = json.loads(resp.read())["badRequest"]["message"]
        # The HTTP server itself refuses a header holding an ASCII control character (RFC 9110); what it lets
        # through (C1 characters are valid latin-1 header text) the API refuses naming the header.
        assert message.startswith("X-User-Id: ") or (user != "a\x85b" and "Invalid header" in message), message
    finally:
        conn.close()


# -- logs ---------------------------------------------------------------------------------------------------


def test_no_request_forges_a_log_line(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    """Hostile ids in paths, bodies and filters: no log record (message or traceback) holds a raw newline
    followed by what the caller wrote."""
    caplog.set_level(logging.DEBUG)
    forged = "ERROR strongroom forged"
    _raw(stack, "GET", f"/v1/proj-a/providers/x%0A{forged.replace(' ', '%20')}")
    _raw(stack, "GET", f"/v1/proj-a/protectables/{VOLUME}/instances/x%0A{forged.replace(' ', '%20')}")
    _raw(stack, "GET", f"/v1/x%0A{forged.replace(' ', '%20')}/plans")
    stack.call("POST", "/plans", body=_with(PLAN, ("plan", "name"), f"x\n{forged}"))
    stack.call("POST", "/restores", body=_with(RESTORE, ("restore", "parameters", VOLUME, "restore_name"),
                                                f"x\n{forged}"))
    stack.call("GET", "/plans", params={"name": f"x\n{forged}"})
    for record in caplog.records:
        text = logging.Formatter().format(record)
        assert f"\n{forged}" not in text, text


def test_unknown_ids_crossing_rpc_are_not_logged_as_errors(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert stack.call("GET", f"/providers/{uuid.uuid4()}").status_code == 404
    assert stack.call("GET", "/protectables/OS::Nova::Nothing").status_code == 404
    assert stack.call("GET", f"/protectables/{VOLUME}/instances/vol-99").status_code == 404
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert noisy == [], [r.getMessage() for r in noisy]


# -- secrets ------------------------------------------------------------------------------------------------

SECRET = "hunter2-Pa55w0rd"


@pytest.mark.parametrize(("body", "field"), [
    ({"restore": [SECRET]}, "restore"),
    ({"restore": {**RESTORE["restore"], "restore_auth": None, "parameters": [SECRET]}}, "restore.parameters"),
    ([{"restore_auth": {"password": SECRET}}], "body"),
])
def test_a_malformed_container_is_never_echoed(stack: Stack, body: Any, field: str) -> None:
    resp = stack.call("POST", "/restores", body=body)
    assert _message(resp).startswith(f"{field}: ")
    assert SECRET not in resp.text


@pytest.mark.parametrize(("auth", "field"), [
    (SECRET, "restore.restore_auth"),
    ([SECRET], "restore.restore_auth"),
    ({"type": "password", "username": "u", "password": [SECRET]}, "restore.restore_auth.password"),
    ({"type": "password", "username": "u", "password": SECRET * 20}, "restore.restore_auth.password"),
    ({"type": SECRET, "password": SECRET}, "restore.restore_auth.type"),
    ({"type": "password", "password": SECRET, "extra": 1}, "restore.restore_auth.extra"),
])
def test_malformed_restore_auth_is_never_echoed(stack: Stack, caplog: pytest.LogCaptureFixture,
                                                auth: Any, field: str) -> None:
    caplog.set_level(logging.DEBUG)
    resp = stack.call("POST", "/restores", body=_with(RESTORE, ("restore", "restore_auth"), auth))
    message = _message(resp)
    assert message.startswith(f"{field}: "), message
    assert SECRET not in resp.text
    assert all(SECRET not in logging.Formatter().format(r) for r in caplog.records)
