"""Triggers, scheduled operations and their logs over HTTP (real app, real sqlite database)."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import pytest
from apiharness import OTHER_PROVIDER_ID, PROVIDER_ID, Stack

from strongroom.clock import Clock, FakeClock
from strongroom.db.scheduling import SchedulingStore
from strongroom.objects.scheduling import FireState
from strongroom.operationengine.engine import EngineSettings, InlineExecutor, OperationEngine
from strongroom.operationengine.identity import NoAuthIdentity
from tests.unit.operationengine.fakes import FakeProtectionForSchedulingTests

# Karbor's api-ref sample, escaped line breaks and string window included.
KARBOR_TRIGGER = {"trigger_info": {"name": "My backup trigger", "type": "time", "properties": {
    "format": "calendar", "pattern": "BEGIN:VEVENT\\nRRULE:FREQ=HOURLY;INTERVAL=1;\\nEND:VEVENT",
    "start_time": "2015-12-17T08:30:00", "end_time": "2036-03-17T08:30:00", "window": "3000"}}}


def _error(resp: Any, code: int) -> str:
    assert resp.status_code == code, resp.text
    (err,) = resp.json().values()
    assert err["code"] == code
    return str(err["message"])


def _trigger(stack: Stack, project: str = "proj-s", **properties: Any) -> dict[str, Any]:
    props = {"format": "crontab", "pattern": "0 * * * *", **properties}
    resp = stack.call("POST", "/triggers", project=project,
                      body={"trigger_info": {"name": "hourly", "type": "time", "properties": props}})
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["trigger_info"])


def _operation(stack: Stack, trigger_id: str, plan_id: str, project: str = "proj-s",
               operation_type: str = "protect", **definition: Any) -> Any:
    return stack.call("POST", "/scheduled_operations", project=project, body={"scheduled_operation": {
        "name": "My scheduled operation", "description": "It will run every hour", "operation_type": operation_type,
        "trigger_id": trigger_id,
        "operation_definition": {"provider_id": PROVIDER_ID, "plan_id": plan_id, **definition}}})


def test_trigger_lifecycle_with_karbors_sample(stack: Stack) -> None:
    created = stack.call("POST", "/triggers", project="proj-t", body=KARBOR_TRIGGER)
    assert created.status_code == 200, created.text
    trigger = created.json()["trigger_info"]
    assert trigger["name"] == "My backup trigger" and trigger["type"] == "time"
    assert trigger["properties"] == {
        "format": "calendar", "pattern": "BEGIN:VEVENT\nRRULE:FREQ=HOURLY;INTERVAL=1;\nEND:VEVENT",
        "start_time": "2015-12-17T08:30:00", "end_time": "2036-03-17T08:30:00", "window": 3000}
    url = f"/triggers/{trigger['id']}"
    assert stack.call("GET", url, project="proj-t").json()["trigger_info"] == trigger
    listed = stack.call("GET", "/triggers", project="proj-t").json()
    assert listed == {"triggers": [trigger]}  # Karbor's list shape: plain objects under "triggers"
    assert stack.call("GET", url, project="proj-other").status_code == 404

    renamed = stack.call("PUT", url, project="proj-t", body={"trigger_info": {"name": "Trigger for backup"}})
    assert renamed.json()["trigger_info"]["name"] == "Trigger for backup"
    changed = stack.call("PUT", url, project="proj-t", body={"trigger_info": {"properties": {
        "format": "crontab", "pattern": "15 3 * * *", "window": 600}}}).json()["trigger_info"]
    assert changed["properties"]["pattern"] == "15 3 * * *"
    assert changed["properties"]["start_time"] == "2015-12-17T08:30:00"  # merged over what was stored

    assert stack.call("DELETE", url, project="proj-t").status_code == 204
    assert stack.call("GET", url, project="proj-t").status_code == 404


@pytest.mark.parametrize(("properties", "expected"), [
    ({"pattern": "not cron"}, "trigger_info.properties.pattern: 'not cron' is not a cron expression"),
    ({"pattern": "*/5 * * * *"}, "trigger_info.properties.pattern: fires 300 seconds apart, below the minimum "
                                 "interval of 3600 seconds"),
    ({"pattern": "0 * * * *", "window": 5}, "trigger_info.properties.window: 5 is out of range"),
    ({"pattern": "0 * * * *", "start_time": "2026-02-01T00:00:00", "end_time": "2026-01-01T00:00:00"},
     "trigger_info.properties.end_time: 2026-01-01T00:00:00 must be after start_time"),
    ({"format": "calendar", "pattern": "BEGIN:VEVENT\nEND:VEVENT"},
     "trigger_info.properties.pattern: the VEVENT must contain an RRULE"),
    ({"pattern": "0 * * * *", "colour": "red"}, "trigger_info.properties.colour: unknown field 'colour'"),
    ({"format": "ical", "pattern": "0 * * * *"}, "trigger_info.properties.format: 'ical' is not one of"),
])
def test_trigger_errors_name_the_field(stack: Stack, properties: dict[str, Any], expected: str) -> None:
    body = {"trigger_info": {"name": "t", "type": "time", "properties": properties}}
    assert expected in _error(stack.call("POST", "/triggers", body=body), 400)


def test_trigger_type_must_be_time(stack: Stack) -> None:
    body = {"trigger_info": {"name": "t", "type": "event", "properties": {"pattern": "0 * * * *"}}}
    assert _error(stack.call("POST", "/triggers", body=body), 400).startswith("trigger_info.type:")


def test_scheduled_operation_lifecycle(stack: Stack) -> None:
    plan = stack.add_plan(project="proj-s")
    trigger = _trigger(stack)
    created = _operation(stack, trigger["id"], plan.id, operation_type="retention_protect", max_backups="3",
                         keep_daily=7)
    assert created.status_code == 200, created.text
    op = created.json()["scheduled_operation"]
    assert {k: op[k] for k in ("name", "operation_type", "trigger_id", "enabled", "project_id")} == {
        "name": "My scheduled operation", "operation_type": "retention_protect", "trigger_id": trigger["id"],
        "enabled": True, "project_id": "proj-s"}
    assert op["operation_definition"] == {"provider_id": PROVIDER_ID, "plan_id": plan.id, "max_backups": "3",
                                          "keep_daily": 7}
    url = f"/scheduled_operations/{op['id']}"
    assert stack.call("GET", url, project="proj-s").json()["scheduled_operation"] == op
    assert stack.call("GET", "/scheduled_operations", project="proj-s").json() == {"operations": [op]}

    # In use: neither the trigger nor the plan can be deleted.
    assert "used by scheduled operation" in _error(
        stack.call("DELETE", f"/triggers/{trigger['id']}", project="proj-s"), 409)
    assert "used by scheduled operations" in _error(stack.call("DELETE", f"/plans/{plan.id}", project="proj-s"),
                                                    409)

    suspended = stack.call("POST", url + "/action", project="proj-s", body={"suspend": {}})
    assert suspended.status_code == 200 and suspended.json()["scheduled_operation"]["enabled"] is False
    resumed = stack.call("POST", url + "/action", project="proj-s", body={"resume": None})
    assert resumed.json()["scheduled_operation"]["enabled"] is True
    assert _error(stack.call("POST", url + "/action", project="proj-s", body={"pause": {}}), 400).startswith(
        "pause: unknown field")

    assert stack.call("DELETE", url, project="proj-s").status_code == 204
    assert stack.call("GET", url, project="proj-s").status_code == 404
    assert stack.call("DELETE", f"/triggers/{trigger['id']}", project="proj-s").status_code == 204
    assert stack.call("DELETE", f"/plans/{plan.id}", project="proj-s").status_code == 202


def test_scheduled_operation_errors_name_the_field(stack: Stack) -> None:
    plan = stack.add_plan(project="proj-e")
    trigger = _trigger(stack, project="proj-e")
    foreign = _trigger(stack, project="proj-f")
    cases = [
        (_operation(stack, "no-such-trigger", plan.id, project="proj-e"),
         "scheduled_operation.trigger_id: trigger no-such-trigger not found"),
        (_operation(stack, foreign["id"], plan.id, project="proj-e"),
         f"scheduled_operation.trigger_id: trigger {foreign['id']} not found"),
        (_operation(stack, trigger["id"], "no-such-plan", project="proj-e"),
         "scheduled_operation.operation_definition.plan_id: plan no-such-plan not found"),
        (_operation(stack, trigger["id"], plan.id, project="proj-e", max_backups=3),
         "scheduled_operation.operation_definition.max_backups: retention applies to operation_type "
         "'retention_protect' or 'copy' only"),
        (_operation(stack, trigger["id"], plan.id, project="proj-e", operation_type="retention_protect",
                    max_backups="lots"),
         "scheduled_operation.operation_definition.max_backups: must be an integer"),
        (_operation(stack, trigger["id"], plan.id, project="proj-e", operation_type="retention_protect",
                    keep_daily=0),
         "scheduled_operation.operation_definition.keep_daily: must be at least 1"),
        (_operation(stack, trigger["id"], plan.id, project="proj-e", operation_type="copy"),
         "scheduled_operation.operation_definition.target_provider_id: operation_type 'copy' needs the provider"),
        (_operation(stack, trigger["id"], plan.id, project="proj-e", operation_type="copy",
                    target_provider_id=PROVIDER_ID),
         "scheduled_operation.operation_definition.target_provider_id: " + PROVIDER_ID + " is the plan's own"),
        (_operation(stack, trigger["id"], plan.id, project="proj-e", operation_type="copy",
                    target_provider_id="no-such-provider"),
         "scheduled_operation.operation_definition.target_provider_id: provider no-such-provider not found"),
        (_operation(stack, trigger["id"], plan.id, project="proj-e", target_provider_id=OTHER_PROVIDER_ID),
         "scheduled_operation.operation_definition.target_provider_id: for operation_type 'copy' only"),
        (_operation(stack, trigger["id"], plan.id, project="proj-e", operation_type="snapshot"),
         "scheduled_operation.operation_type: 'snapshot' is not one of"),
        (_operation(stack, trigger["id"], plan.id, project="proj-e", colour="red"),
         "scheduled_operation.operation_definition.colour: unknown field 'colour'"),
    ]
    for resp, expected in cases:
        assert expected in _error(resp, 400)
    copies = _operation(stack, trigger["id"], plan.id, project="proj-e", operation_type="copy",
                        target_provider_id=OTHER_PROVIDER_ID, max_backups=7)
    assert copies.status_code == 200, copies.text
    assert copies.json()["scheduled_operation"]["operation_definition"]["target_provider_id"] == OTHER_PROVIDER_ID
    wrong_provider = stack.call("POST", "/scheduled_operations", project="proj-e", body={"scheduled_operation": {
        "name": "n", "operation_type": "protect", "trigger_id": trigger["id"],
        "operation_definition": {"provider_id": OTHER_PROVIDER_ID, "plan_id": plan.id}}})
    assert f"operation_definition.provider_id: plan {plan.id} uses provider {PROVIDER_ID}" in _error(
        wrong_provider, 400)


def test_logs_show_each_run_with_its_checkpoint(stack: Stack) -> None:
    plan = stack.add_plan(project="proj-l")
    trigger = _trigger(stack, project="proj-l", window=300)
    op = _operation(stack, trigger["id"], plan.id, project="proj-l").json()["scheduled_operation"]
    url = f"/scheduled_operations/{op['id']}/logs"
    assert stack.call("GET", url, project="proj-l").json() == {"scheduled_operation_logs": []}

    # A real engine plans over the API's database, then passes again just after the first fire time.
    protection = FakeProtectionForSchedulingTests(stack.db, Clock())
    store = SchedulingStore(stack.db)
    settings = EngineSettings(plan_ahead=7200)
    OperationEngine(stack.db, protection, NoAuthIdentity(), clock=Clock(), settings=settings).plan()
    first = min(f.fire_time for f in store.list_fires(op["id"], include_planned=True))
    later = OperationEngine(stack.db, protection, NoAuthIdentity(), owner="engine-x", settings=settings,
                            clock=FakeClock(first + _dt.timedelta(seconds=30)), executor=InlineExecutor())
    # The module's database holds other tests' operations too: an hourly one of theirs may fall due at the
    # same instant, so the tick claims this operation's fire and maybe theirs; this one has exactly one log.
    assert later.tick().claimed >= 1
    [log] = stack.call("GET", url, project="proj-l").json()["scheduled_operation_logs"]
    [fire] = store.list_fires(op["id"])
    assert log["state"] == FireState.SUCCESS and log["checkpoint_id"] == fire.checkpoint_id
    assert log["engine"] == "engine-x" and log["attempts"] == 1 and log["error_info"] is None
    assert log["expect_start_time"].endswith(":00:00+00:00")
    assert set(log) >= {"triggered_time", "actual_start_time", "end_time", "window_end_time", "extra_info"}
    assert stack.call("GET", url + "?state=failed", project="proj-l").json() == {"scheduled_operation_logs": []}
    assert stack.call("GET", url, project="proj-other").status_code == 404


def test_openapi_documents_the_scheduling_endpoints(stack: Stack) -> None:
    doc = stack.call("GET", "/v1/openapi.json").json()
    paths = doc["paths"]
    assert {"post", "get"} <= set(paths["/v1/{project_id}/triggers"])
    assert "post" in paths["/v1/{project_id}/scheduled_operations/{scheduled_operation_id}/action"]
    assert "get" in paths["/v1/{project_id}/scheduled_operations/{scheduled_operation_id}/logs"]
    assert "ScheduledOperationAction" in doc["components"]["schemas"]


def test_an_operation_shows_its_next_fire_time_until_suspended(stack: Stack) -> None:
    plan = stack.add_plan(project="proj-n")
    trigger = _trigger(stack, project="proj-n")
    op = _operation(stack, trigger["id"], plan.id, project="proj-n").json()["scheduled_operation"]
    assert op["next_fire_time"] is None  # nothing planned yet: no engine has passed
    OperationEngine(stack.db, FakeProtectionForSchedulingTests(stack.db, Clock()), NoAuthIdentity(), clock=Clock(),
                    settings=EngineSettings(plan_ahead=7200)).plan()
    first = min(f.fire_time for f in SchedulingStore(stack.db).list_fires(op["id"], include_planned=True))
    url = f"/scheduled_operations/{op['id']}"
    shown = stack.call("GET", url, project="proj-n").json()["scheduled_operation"]
    assert _dt.datetime.fromisoformat(shown["next_fire_time"]) == first
    assert first.minute == 0 and first > _dt.datetime.now(_dt.UTC)  # the next hour, as the crontab says
    [listed] = [o for o in stack.call("GET", "/scheduled_operations", project="proj-n").json()["operations"]
                if o["id"] == op["id"]]
    assert listed["next_fire_time"] == shown["next_fire_time"]
    suspended = stack.call("POST", f"{url}/action", project="proj-n", body={"suspend": {}})
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["scheduled_operation"]["next_fire_time"] is None
