"""A plan names only resources its provider can find: the real API and protection service (loopback
volumes), the provider's own block backend asked at plan creation and when the resources change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from strongroom import exceptions
from strongroom.testing.flaky_block import Fault, FlakyBlockBackend, Method, on
from tests.unit.protection.embedded import CHUNK, PROVIDER_ID, VOLUME, Embedded, embedded


@pytest.fixture
def stack(tmp_path: Path) -> Any:
    with embedded(tmp_path) as running:
        yield running


def _message(resp: requests.Response, code: int) -> str:
    assert resp.status_code == code, resp.text
    (error,) = resp.json().values()
    return str(error["message"])


def _create(stack: Embedded, *resources: dict[str, Any]) -> requests.Response:
    return stack.call("POST", "/plans", json={"plan": {"name": "p", "provider_id": PROVIDER_ID, "parameters": {},
                                                       "resources": list(resources)}})


def test_a_plan_naming_a_missing_volume_is_refused_naming_it(stack: Embedded) -> None:
    stack.volume("disk-a", b"a" * CHUNK)
    msg = _message(_create(stack, {"id": "disk-a", "type": VOLUME}, {"id": "ghost", "type": VOLUME}), 404)
    assert msg == (f"plan.resources[1]: {VOLUME} 'ghost' could not be found by provider 'Local' ({PROVIDER_ID}) "
                   f"in block backend 'loopback'")
    assert stack.call("GET", "/plans").json()["plans"] == []


def test_the_plan_keeps_the_name_the_protectable_shows_unless_given_one(stack: Embedded) -> None:
    stack.volume("disk-a", b"a" * CHUNK)
    stack.volume("disk-b", b"b" * CHUNK)
    created = _create(stack, {"id": "disk-a", "type": VOLUME}, {"id": "disk-b", "type": VOLUME, "name": "mine"})
    assert created.status_code == 200, created.text
    plan_id = created.json()["plan"]["id"]
    shown = stack.call("GET", f"/plans/{plan_id}").json()["plan"]["resources"]
    assert [(r["id"], r["name"]) for r in shown] == [("disk-a", "disk-a"), ("disk-b", "mine")]
    listed = stack.call("GET", f"/protectables/{VOLUME}/instances/disk-a").json()["instance"]
    assert listed["name"] == shown[0]["name"]
    # A change of resources is checked the same way; a refused one leaves the plan as it was.
    msg = _message(stack.call("PUT", f"/plans/{plan_id}", json={"plan": {"resources": [
        {"id": "disk-a", "type": VOLUME}, {"id": "gone", "type": VOLUME}]}}), 404)
    assert msg.startswith(f"plan.resources[1]: {VOLUME} 'gone' could not be found by provider 'Local'"), msg
    assert stack.call("GET", f"/plans/{plan_id}").json()["plan"]["resources"] == shown


@pytest.mark.parametrize("error", [
    lambda call: exceptions.BlockUnavailable(backend="loopback", reason="the array does not answer"),
    lambda call: ConnectionRefusedError(111, "Connection refused"),  # a driver's failure it did not name
], ids=["named-by-the-driver", "connection-refused"])
def test_an_unreachable_backend_is_a_503_naming_it(stack: Embedded, error: Any) -> None:
    stack.volume("disk-a", b"a" * CHUNK)
    backends = stack.provider._backends  # the one backend object the provider's plugin and protectable use
    real = backends["loopback"]
    backends["loopback"] = FlakyBlockBackend(real, [Fault(on(Method.GET_VOLUME), error=error)])
    try:
        msg = _message(_create(stack, {"id": "disk-a", "type": VOLUME}), 503)
    finally:
        backends["loopback"] = real
    assert "loopback" in msg and "is unavailable" in msg, msg
    assert _create(stack, {"id": "disk-a", "type": VOLUME}).status_code == 200


def test_a_volume_deleted_after_the_plan_fails_its_protect_naming_it(stack: Embedded) -> None:
    stack.volume("disk-a", b"a" * CHUNK)
    created = _create(stack, {"id": "disk-a", "type": VOLUME})
    assert created.status_code == 200, created.text
    (stack.volumes / "disk-a").unlink()
    plan_id = created.json()["plan"]["id"]
    msg = _message(stack.protect(plan_id), 404)
    assert msg == (f"plan {plan_id}: {VOLUME} 'disk-a' could not be found by provider 'Local' ({PROVIDER_ID}) "
                   f"in block backend 'loopback': it may have been deleted since the plan was made; update the "
                   f"plan's resources")
    assert stack.call("GET", f"/providers/{PROVIDER_ID}/checkpoints").json()["checkpoints"] == []
