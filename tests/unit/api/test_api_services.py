"""``/os-services`` over HTTP: Karbor's shapes, admin only, up/down from heartbeats, disable/enable."""

from __future__ import annotations

import datetime as _dt
import uuid
from typing import Any

from apiharness import ADMIN_TOKEN, Stack

from strongroom import heartbeat


def _error(resp: Any, code: int) -> str:
    assert resp.status_code == code, resp.text
    (err,) = resp.json().values()
    return str(err["message"])


def _host() -> str:
    return f"node-{uuid.uuid4().hex[:8]}"


def _beat(stack: Stack, host: str, binary: str = "strongroom-protection", seconds_ago: float = 0) -> int:
    service = stack.db.service_heartbeat(host, binary, "strongroom-protection")
    if seconds_ago:
        when = _dt.datetime.now(_dt.UTC) - _dt.timedelta(seconds=seconds_ago)
        service = stack.db.update_service(service.id, {"last_heartbeat": when})
    return int(service.id)


def _listed(stack: Stack, **params: str) -> list[dict[str, Any]]:
    resp = stack.admin("GET", "/os-services", params=params)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["services"])


def test_list_has_karbors_shape_and_state_follows_heartbeats(stack: Stack) -> None:
    host = _host()
    fresh = _beat(stack, host)
    # default: down after missed_heartbeats (6) x heartbeat_interval (10 s) = 60 s without a beat
    recent = _beat(stack, host, "strongroom-operationengine", seconds_ago=50)
    stale = _beat(stack, host, "strongroom-api", seconds_ago=70)
    services = {s["id"]: s for s in _listed(stack, host=host)}
    assert set(services) == {fresh, recent, stale}
    assert set(services[fresh]) == {"id", "binary", "host", "status", "state", "updated_at", "disabled_reason"}
    assert services[fresh] == {**services[fresh], "binary": "strongroom-protection", "host": host,
                               "status": "enabled", "state": "up", "disabled_reason": None}
    assert services[recent]["state"] == "up"
    assert services[stale]["state"] == "down"
    assert _dt.datetime.fromisoformat(services[fresh]["updated_at"]).tzinfo is not None


def test_filters_by_host_and_binary(stack: Stack) -> None:
    a, b = _host(), _host()
    _beat(stack, a)
    _beat(stack, a, "strongroom-api")
    _beat(stack, b)
    assert {(s["host"], s["binary"]) for s in _listed(stack, host=a)} == {
        (a, "strongroom-protection"), (a, "strongroom-api")}
    assert [(s["host"], s["binary"]) for s in _listed(stack, host=b, binary="strongroom-protection")] == [
        (b, "strongroom-protection")]
    assert _listed(stack, host=a, binary="strongroom-operationengine") == []


def test_members_cannot_list_or_update(stack: Stack) -> None:
    service_id = _beat(stack, _host())
    assert "service:get_all" in _error(stack.call("GET", "/os-services"), 403)
    resp = stack.call("PUT", f"/os-services/{service_id}", body={"status": "disabled"})
    assert "service:update" in _error(resp, 403)
    assert stack.db.get_service(service_id).disabled is False


def test_disable_with_reason_then_enable(stack: Stack) -> None:
    host = _host()
    service_id = _beat(stack, host)
    assert stack.db.service_is_disabled(host, "strongroom-protection") is False
    resp = stack.admin("PUT", f"/os-services/{service_id}",
                       body={"status": "disabled", "disabled_reason": "disk replacement"})
    assert resp.status_code == 200, resp.text
    shown = resp.json()["service"]
    assert (shown["id"], shown["status"], shown["disabled_reason"], shown["state"]) == (
        service_id, "disabled", "disk replacement", "up")
    assert stack.db.service_is_disabled(host, "strongroom-protection") is True
    listed = _listed(stack, host=host)
    assert [(s["status"], s["disabled_reason"]) for s in listed] == [("disabled", "disk replacement")]
    # heartbeats go on while disabled and do not re-enable it
    _beat(stack, host)
    assert stack.db.service_is_disabled(host, "strongroom-protection") is True

    resp = stack.admin("PUT", f"/os-services/{service_id}", body={"status": "enabled"})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["service"]["status"], resp.json()["service"]["disabled_reason"]) == ("enabled", None)
    assert stack.db.service_is_disabled(host, "strongroom-protection") is False


def test_disable_without_reason(stack: Stack) -> None:
    service_id = _beat(stack, _host(), "strongroom-operationengine")
    resp = stack.admin("PUT", f"/os-services/{service_id}", body={"status": "disabled"})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["service"]["status"], resp.json()["service"]["disabled_reason"]) == ("disabled", None)


def test_bad_updates_name_the_field(stack: Stack) -> None:
    host = _host()
    service_id = _beat(stack, host)
    path = f"/os-services/{service_id}"
    assert _error(stack.admin("PUT", path, body={"status": "off"}), 400).startswith("status: 'off' is not one of")
    assert "status" in _error(stack.admin("PUT", path, body={"disabled_reason": "x"}), 400)
    assert "unknown field 'reason'" in _error(stack.admin("PUT", path, body={"status": "disabled",
                                                                              "reason": "x"}), 400)
    assert _error(stack.admin("PUT", path, body={"status": "disabled", "disabled_reason": "x" * 256}),
                  400).startswith("disabled_reason: ")
    assert _error(stack.admin("PUT", path, body={"status": "enabled", "disabled_reason": "why"}),
                  400) == "disabled_reason: only allowed with status 'disabled'"
    assert stack.db.service_is_disabled(host, "strongroom-protection") is False


def test_the_api_service_cannot_be_disabled(stack: Stack) -> None:
    service_id = _beat(stack, _host(), "strongroom-api")
    message = _error(stack.admin("PUT", f"/os-services/{service_id}", body={"status": "disabled"}), 400)
    assert "strongroom-api" in message and "cannot be disabled" in message


def test_unknown_service_is_404(stack: Stack) -> None:
    assert "Service 987654 could not be found" in _error(
        stack.admin("PUT", "/os-services/987654", body={"status": "disabled"}), 404)
    assert "Service abc could not be found" in _error(
        stack.admin("PUT", "/os-services/abc", body={"status": "disabled"}), 404)
    assert stack.db.service_is_disabled("never-seen", "strongroom-protection") is False


def test_openapi_documents_os_services(stack: Stack) -> None:
    doc = stack.call("GET", "/v1/openapi.json").json()
    listing = doc["paths"]["/v1/{project_id}/os-services"]["get"]
    assert [p["name"] for p in listing["parameters"] if p["in"] == "query"] == ["host", "binary"]
    update = doc["paths"]["/v1/{project_id}/os-services/{service_id}"]["put"]
    assert update["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ServiceUpdate")
    assert doc["components"]["schemas"]["ServiceUpdate"]["properties"]["status"]["enum"] == ["enabled",
                                                                                            "disabled"]


def test_is_up_boundary() -> None:
    now = _dt.datetime(2030, 1, 1, tzinfo=_dt.UTC)
    assert heartbeat.is_up(now - _dt.timedelta(seconds=60), 60, now) is True
    assert heartbeat.is_up(now - _dt.timedelta(seconds=60.5), 60, now) is False
    assert heartbeat.is_up(None, 60, now) is False


def test_admin_token_is_not_echoed(stack: Stack) -> None:
    resp = stack.admin("GET", "/os-services")
    assert ADMIN_TOKEN not in resp.text
