"""Done-when 2 (notifications): the real all-in-one notifies on the real RabbitMQ (127.0.0.1:5672) what a
billing or audit consumer reads: a protect's checkpoint.create.start and .end with its sizes, a failing
one's .error with its reason, a restore's restore.start and .end, a verification's and a delete's .end;
the embedded operation engine's scheduled_operation.run.start and .end of a fire, with its checkpoint and
sizes, and .error with the reason of a fire whose volume is gone.
Each test listens on a topic of its own.
"""

from __future__ import annotations

import queue
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.functional.banks import bank_under_test, configure, write_random_image
from tests.functional.harness import AllInOne, MiB, wait_for

pytestmark = pytest.mark.functional

RABBIT = "rabbit://guest:guest@127.0.0.1:5672/"
VOLUME_SIZE = 8 * MiB


def _rabbit_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=2):
            return True
    except OSError:
        return False


class Received:
    """Every notification of one topic, as oslo.messaging's own listener hands them over."""

    def __init__(self) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []

    def _keep(self, priority: str, ctxt: dict[str, Any], publisher_id: str, event_type: str,
              payload: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.events.put({"priority": priority, "ctxt": ctxt, "publisher_id": publisher_id,
                         "event_type": event_type, "payload": payload})

    def info(self, ctxt: dict[str, Any], publisher_id: str, event_type: str, payload: dict[str, Any],
             metadata: dict[str, Any]) -> None:
        self._keep("info", ctxt, publisher_id, event_type, payload, metadata)

    def error(self, ctxt: dict[str, Any], publisher_id: str, event_type: str, payload: dict[str, Any],
              metadata: dict[str, Any]) -> None:
        self._keep("error", ctxt, publisher_id, event_type, payload, metadata)

    def wait_for(self, event_type: str, checkpoint_id: str | None = None, timeout: float = 60,
                 match: Callable[[dict[str, Any]], bool] = lambda payload: True) -> dict[str, Any]:
        """The first ``event_type`` seen (of ``checkpoint_id``, whose payload ``match`` accepts)."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.seen:
                if (event["event_type"] == event_type and checkpoint_id in (None, event["payload"].get("checkpoint_id"))
                        and match(event["payload"])):
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {event_type} in {timeout} s; got {[e['event_type'] for e in self.seen]}")
            try:
                self.seen.append(self.events.get(timeout=min(left, 1.0)))
            except queue.Empty:
                pass


@pytest.fixture
def topic() -> Iterator[tuple[str, Received]]:
    """A unique notification topic, with a listener on the real RabbitMQ started before the service."""
    if not _rabbit_reachable():
        pytest.fail("RabbitMQ is not reachable on 127.0.0.1:5672")
    import oslo_messaging as messaging
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    conf([], project="strongroom-test")
    name = f"strongroom-test-{uuid.uuid4().hex[:10]}"
    transport = messaging.get_notification_transport(conf, url=RABBIT)
    received = Received()
    listener = messaging.get_notification_listener(transport, [messaging.Target(topic=name)], [received],
                                                   executor="threading")
    listener.start()
    try:
        yield name, received
    finally:
        listener.stop()
        listener.wait()
        transport.cleanup()


def _service(tmp_path: Path, request: pytest.FixtureRequest, topic: str) -> tuple[AllInOne, str]:
    bank = bank_under_test("fs", request, tmp_path)
    service, provider_id = configure(tmp_path, bank, "notifications-test")
    with open(service.config_file, "a") as fh:
        fh.write(f"[oslo_messaging_notifications]\ndriver = messagingv2\ntransport_url = {RABBIT}\n"
                 f"topics = {topic}\n")
    return service, provider_id


def _plan(api: str, provider_id: str, volume: str) -> str:
    plan = requests.post(f"{api}/plans", json={"plan": {
        "name": volume, "provider_id": provider_id, "parameters": {},
        "resources": [{"id": volume, "type": "OS::Cinder::Volume", "name": volume}]}}, timeout=10)
    assert plan.status_code == 200, plan.text
    return str(plan.json()["plan"]["id"])


def _protect(api: str, provider_id: str, plan_id: str) -> dict[str, Any]:
    created = requests.post(f"{api}/providers/{provider_id}/checkpoints",
                            json={"checkpoint": {"plan_id": plan_id}}, timeout=10)
    assert created.status_code == 200, created.text
    cp_url = f"{api}/providers/{provider_id}/checkpoints/{created.json()['checkpoint']['id']}"
    return wait_for(cp_url, "checkpoint", {"available", "error"})


def test_protect_and_restore_notify_with_sizes(tmp_path: Path, request: pytest.FixtureRequest,
                                               topic: tuple[str, Received]) -> None:
    name, received = topic
    service, provider_id = _service(tmp_path, request, name)
    write_random_image(service.volumes / "disk.img", VOLUME_SIZE, seed=5)
    service.start()
    try:
        api = service.api()
        plan_id = _plan(api, provider_id, "disk.img")
        cp = _protect(api, provider_id, plan_id)
        assert cp["status"] == "available", cp

        start = received.wait_for("checkpoint.create.start", cp["id"])
        end = received.wait_for("checkpoint.create.end", cp["id"])
        assert start["priority"] == end["priority"] == "info"
        assert end["publisher_id"] == f"strongroom-protection.{socket.gethostname()}"
        payload = end["payload"]
        protected = cp["extra_info"]["protected"]["OS::Cinder::Volume#disk.img"]
        assert payload["status"] == "available" and payload["plan_id"] == plan_id
        assert payload["project_id"] == "demo" and payload["provider_id"] == provider_id
        assert payload["logical_size"] == VOLUME_SIZE
        assert payload["bytes_read"] == VOLUME_SIZE
        assert payload["bytes_stored"] == protected["bytes_stored"] > 0
        assert payload["duration_seconds"] > 0 and payload["reason"] is None
        assert end["ctxt"]["project_id"] == "demo" and "auth_token" not in end["ctxt"]

        restore = requests.post(f"{api}/restores", json={"restore": {
            "provider_id": provider_id, "checkpoint_id": cp["id"], "restore_target": None,
            "restore_auth": {"type": "password", "username": "u", "password": "hunter2-secret"},
            "parameters": {"OS::Cinder::Volume": {"restore_name": "restored.img"}}}}, timeout=10)
        assert restore.status_code == 200, restore.text
        restore_id = restore.json()["restore"]["id"]
        done = wait_for(f"{api}/restores/{restore_id}", "restore", {"success", "fail"})
        assert done["status"] == "success", done
        received.wait_for("restore.start", cp["id"])
        restored = received.wait_for("restore.end", cp["id"])
        assert restored["payload"]["restore_id"] == restore_id
        assert restored["payload"]["status"] == "success"
        assert restored["payload"]["bytes_done"] == restored["payload"]["bytes_total"] > 0

        verification = requests.post(f"{api}/verifications", json={"verification": {
            "provider_id": provider_id, "checkpoint_id": cp["id"], "parameters": {}}}, timeout=10)
        assert verification.status_code == 200, verification.text
        verified = received.wait_for("verification.end", cp["id"])
        assert verified["payload"]["verification_id"] == verification.json()["verification"]["id"]
        assert verified["payload"]["status"] == "success"

        deleted = requests.delete(f"{api}/providers/{provider_id}/checkpoints/{cp['id']}", timeout=10)
        assert deleted.status_code == 202, deleted.text
        received.wait_for("checkpoint.delete.start", cp["id"])
        gone = received.wait_for("checkpoint.delete.end", cp["id"])
        assert gone["payload"]["status"] == "deleted"
        everything = repr(received.seen)
        assert "hunter2-secret" not in everything and "admin_token" not in everything
    finally:
        service.stop()


def test_a_failing_protect_notifies_its_error(tmp_path: Path, request: pytest.FixtureRequest,
                                              topic: tuple[str, Received]) -> None:
    name, received = topic
    service, provider_id = _service(tmp_path, request, name)
    (service.volumes / "empty.img").write_bytes(b"")
    service.start()
    try:
        api = service.api()
        cp = _protect(api, provider_id, _plan(api, provider_id, "empty.img"))
        assert cp["status"] == "error", cp

        received.wait_for("checkpoint.create.start", cp["id"])
        error = received.wait_for("checkpoint.create.error", cp["id"])
        assert error["priority"] == "error"
        assert error["payload"]["status"] == "error"
        assert "empty" in error["payload"]["reason"]
        assert not [e for e in received.seen if e["event_type"] == "checkpoint.create.end"]
    finally:
        service.stop()



#: The embedded operation engine, quick: a fire every few seconds is planned and run at once.
FAST_ENGINE = """
[operationengine]
min_interval = 1
min_window = 1
poll_interval = 0.2
claim_timeout = 5
plan_ahead = 6
"""


def _scheduled(api: str, plan_id: str, provider_id: str, every: int = 3) -> str:
    """A scheduled protect of ``plan_id`` whose time trigger fires every ``every`` seconds; returns its id."""
    trigger = requests.post(f"{api}/triggers", json={"trigger_info": {"name": "soon", "type": "time", "properties": {
        "format": "calendar", "pattern": f"BEGIN:VEVENT\nRRULE:FREQ=SECONDLY;INTERVAL={every}\nEND:VEVENT",
        "window": 2}}}, timeout=10)
    assert trigger.status_code == 200, trigger.text
    op = requests.post(f"{api}/scheduled_operations", json={"scheduled_operation": {
        "name": "soon", "operation_type": "protect", "trigger_id": trigger.json()["trigger_info"]["id"],
        "operation_definition": {"provider_id": provider_id, "plan_id": plan_id}}}, timeout=10)
    assert op.status_code == 200, op.text
    return str(op.json()["scheduled_operation"]["id"])


def _suspend(api: str, op_id: str) -> None:
    """No more fires: the events seen so far are all the test looks at."""
    resp = requests.post(f"{api}/scheduled_operations/{op_id}/action", json={"suspend": {}}, timeout=10)
    assert resp.status_code == 200, resp.text


def _fire_events(received: Received, op_id: str, ending: str, timeout: float = 30) -> tuple[dict[str, Any],
                                                                                               dict[str, Any]]:
    """The first fire of ``op_id`` that ended with ``ending``: its run.start and that end."""
    end = received.wait_for(ending, timeout=timeout, match=lambda p: p.get("scheduled_operation_id") == op_id)
    start = received.wait_for("scheduled_operation.run.start", timeout=5,
                              match=lambda p: p.get("fire_id") == end["payload"]["fire_id"])
    return start, end


def _scheduled_service(tmp_path: Path, request: pytest.FixtureRequest, topic: str) -> tuple[AllInOne, str]:
    service, provider_id = _service(tmp_path, request, topic)
    with open(service.config_file, "a") as fh:
        fh.write(FAST_ENGINE)
    return service, provider_id


def test_a_scheduled_fire_notifies_its_start_and_end_with_its_checkpoint(
        tmp_path: Path, request: pytest.FixtureRequest, topic: tuple[str, Received]) -> None:
    name, received = topic
    service, provider_id = _scheduled_service(tmp_path, request, name)
    write_random_image(service.volumes / "nightly.img", VOLUME_SIZE, seed=6)
    service.start()
    try:
        api = service.api()
        plan_id = _plan(api, provider_id, "nightly.img")
        op_id = _scheduled(api, plan_id, provider_id)

        start, end = _fire_events(received, op_id, "scheduled_operation.run.end")
        _suspend(api, op_id)
        assert start["priority"] == end["priority"] == "info"
        assert end["publisher_id"] == f"strongroom-operationengine.{socket.gethostname()}"
        begun, payload = start["payload"], end["payload"]
        assert begun["scheduled_operation_id"] == op_id and begun["plan_id"] == plan_id
        assert begun["checkpoint_id"] is None  # not asked for yet when the run starts
        assert payload["state"] == "success" and payload["reason"] is None
        assert payload["operation_type"] == "protect" and payload["provider_id"] == provider_id
        assert payload["project_id"] == "demo"
        # The checkpoint it names is the one the operation's log and the checkpoint API show.
        logs = requests.get(f"{api}/scheduled_operations/{op_id}/logs", timeout=10).json()[
            "scheduled_operation_logs"]
        assert payload["checkpoint_id"] in {e["checkpoint_id"] for e in logs if e["state"] == "success"}
        cp = requests.get(f"{api}/providers/{provider_id}/checkpoints/{payload['checkpoint_id']}",
                          timeout=10).json()["checkpoint"]
        assert cp["status"] == payload["checkpoint_status"] == "available"
        protected = cp["extra_info"]["protected"]["OS::Cinder::Volume#nightly.img"]
        assert payload["logical_size"] == VOLUME_SIZE
        assert payload["bytes_read"] == VOLUME_SIZE
        assert payload["bytes_stored"] == protected["bytes_stored"] > 0
        assert payload["duration_seconds"] > 0
        assert "trust_id" not in payload and "operation_definition" not in payload
    finally:
        service.stop()


def test_a_scheduled_fire_whose_volume_is_gone_notifies_an_error(
        tmp_path: Path, request: pytest.FixtureRequest, topic: tuple[str, Received]) -> None:
    name, received = topic
    service, provider_id = _scheduled_service(tmp_path, request, name)
    write_random_image(service.volumes / "gone.img", MiB, seed=7)
    service.start()
    try:
        api = service.api()
        plan_id = _plan(api, provider_id, "gone.img")
        (service.volumes / "gone.img").unlink()  # deleted after the plan was made, before its schedule fires
        op_id = _scheduled(api, plan_id, provider_id)

        start, error = _fire_events(received, op_id, "scheduled_operation.run.error")
        _suspend(api, op_id)
        assert start["priority"] == "info" and error["priority"] == "error"
        payload = error["payload"]
        assert payload["scheduled_operation_id"] == op_id and payload["plan_id"] == plan_id
        assert payload["state"] == "failed" and payload["checkpoint_id"] is None  # refused: no checkpoint made
        assert "gone.img" in payload["reason"] and "could not be found" in payload["reason"], payload["reason"]
        logs = requests.get(f"{api}/scheduled_operations/{op_id}/logs", timeout=10).json()[
            "scheduled_operation_logs"]
        [logged] = [e for e in logs if e["id"] == payload["fire_id"]] or [None]
        assert logged is not None and logged["state"] == "failed" and logged["error_info"] == payload["reason"]
        assert not [e for e in received.seen if e["event_type"] == "scheduled_operation.run.end"
                    and e["payload"].get("scheduled_operation_id") == op_id]
    finally:
        service.stop()
