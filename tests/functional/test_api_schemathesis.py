"""The OpenAPI document is true: schemathesis drives every operation of the real all-in-one from it.

The all-in-one runs as users run it (``strongroom-all-in-one``: noauth, sqlite, fs bank, loopback volumes),
seeded with real objects (two volumes, a plan, an available checkpoint, a restore, a verification, a trigger,
a scheduled operation) so that generated requests reach the success paths and not only 404s: path
parameters, id fields of bodies and id filters are drawn from the seeded ids as often as from the
generated strings, and ``X-Auth-Token`` is the admin token as often as anything else.

Every answer must pass: no 5xx, a status the document declares, its content type, its response schema.
The server's log must hold no unexpected error.  The budget is bounded for ``make test`` (a few minutes on
two cores); ``make fuzz`` runs the same with ``STRONGROOM_FUZZ_EXAMPLES`` examples per operation.
"""

from __future__ import annotations

import collections
import copy
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from strongroom.api import openapi
from strongroom.api.routes import ROUTES
from tests.functional.harness import PROVIDER_ID, AllInOne, MiB, running_all_in_one, wait_for

pytestmark = pytest.mark.functional

#: Examples per operation: small in ``make test``, as large as wanted in ``make fuzz``.
EXAMPLES = int(os.environ.get("STRONGROOM_FUZZ_EXAMPLES", "10"))
PROJECT = "demo"
VOLUME = "OS::Cinder::Volume"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

#: What every operation answered, for the summary test: "METHOD path" -> status -> count.
ANSWERS: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AllInOne]:
    with running_all_in_one(Path(tmp_path_factory.mktemp("fuzz"))) as running:
        yield running


def _post(url: str, body: dict[str, Any], key: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    resp = requests.post(url, json=body, headers=headers, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()[key]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def seeded(service: AllInOne) -> dict[str, Any]:
    """Real objects of every kind; their ids by the name of the parameter or field that takes them."""
    for name in ("disk.img", "data.img"):
        with open(service.volumes / name, "wb") as fh:
            fh.truncate(MiB)
            fh.write(os.urandom(64 * 1024))
    api = service.api(PROJECT)
    plans = [_post(f"{api}/plans", {"plan": {
        "name": f"seed {name}", "provider_id": PROVIDER_ID,
        "resources": [{"id": name, "type": VOLUME, "name": name}]}}, "plan")["id"]
        for name in ("disk.img", "data.img", "disk.img")]
    checkpoints = []
    for plan in plans:
        cp = _post(f"{api}/providers/{PROVIDER_ID}/checkpoints", {"checkpoint": {"plan_id": plan}}, "checkpoint")
        cp = wait_for(f"{api}/providers/{PROVIDER_ID}/checkpoints/{cp['id']}", "checkpoint",
                      {"available", "error"})
        assert cp["status"] == "available", cp
        checkpoints.append(cp["id"])
    restore = _post(f"{api}/restores", {"restore": {
        "provider_id": PROVIDER_ID, "checkpoint_id": checkpoints[0],
        "parameters": {VOLUME: {"restore_name": "restored.img"}}}}, "restore")
    verification = _post(f"{api}/verifications", {"verification": {
        "provider_id": PROVIDER_ID, "checkpoint_id": checkpoints[0]}}, "verification")
    wait_for(f"{api}/restores/{restore['id']}", "restore", {"success", "fail"})
    wait_for(f"{api}/verifications/{verification['id']}", "verification", {"success", "fail"})
    triggers = [_post(f"{api}/triggers", {"trigger_info": {
        "name": f"seed {n}", "type": "time", "properties": {"format": "crontab", "pattern": "0 3 * * *"}}},
        "trigger_info")["id"] for n in range(3)]
    operations = [_post(f"{api}/scheduled_operations", {"scheduled_operation": {
        "name": "seed", "operation_type": "protect", "trigger_id": trigger,
        "operation_definition": {"provider_id": PROVIDER_ID, "plan_id": plans[0]}}},
        "scheduled_operation")["id"] for trigger in triggers[:2]]
    logs = requests.get(f"{api}/operation_logs", timeout=30).json()["operation_logs"]
    services = requests.get(f"{api}/os-services", headers=service.admin_headers(), timeout=30).json()["services"]
    return {
        "project_id": [PROJECT],
        "provider_id": [PROVIDER_ID],
        "plan_id": plans[:2],
        "checkpoint_id": checkpoints[:2],
        "restore_id": [restore["id"]],
        "verification_id": [verification["id"]],
        "operation_log_id": [log["id"] for log in logs[:3]],
        "trigger_id": triggers[:2],
        "scheduled_operation_id": operations[:1],
        "service_id": [str(s["id"]) for s in services],
        "protectable_type": [VOLUME, "OS::Keystone::Project"],
        "instance_id": ["disk.img", "data.img", PROJECT],
        "resource_key": [f"{VOLUME}#disk.img", f"{VOLUME}#data.img"],
        # What the deleting and state-changing operations get instead: objects nothing else needs.
        "doomed": {"plan_id": plans[2:], "checkpoint_id": checkpoints[2:], "trigger_id": triggers[2:],
                   "scheduled_operation_id": operations[1:]},
        # Fields of bodies beyond ids, so that creations get past their checks now and then.
        "fields": {"type": [VOLUME], "id": ["disk.img"], "pattern": ["0 4 * * *"], "format": ["crontab"],
                   "start_time": [None], "end_time": [None], "window": [None], "max_backups": [None],
                   "retention_duration": [None], "restore_target": [None], "restore_name": ["fuzzed.img"]},
    }


def _seeded_or(values: list[Any], generated: Any) -> st.SearchStrategy[Any]:
    """A seeded value or the generated one, seeded first (so shrinking heads for a real object)."""
    return st.one_of(st.sampled_from(values), st.just(generated))


def _swap(seeds: dict[str, list[Any]], value: Any) -> st.SearchStrategy[Any]:
    """``value`` (a body or a query) with every field named like a seed maybe replaced by one."""
    if isinstance(value, dict):
        return st.fixed_dictionaries({
            key: _seeded_or(seeds[key], item) if key in seeds and not isinstance(item, dict | list)
            else _swap(seeds, item) for key, item in value.items()})
    if isinstance(value, list):
        return st.tuples(*[_swap(seeds, item) for item in value]).map(list)
    return st.just(copy.deepcopy(value))


def _ids(operation: Any) -> dict[str, list[Any]]:
    """The ids an operation's parameters are drawn from: deletes and resets get the doomed objects."""
    ids = SEEDS["ids"]
    if operation.method.upper() == "DELETE" or (operation.method.upper() == "PUT" and "{checkpoint_id}" in
                                                operation.path):
        return {**ids, **ids["doomed"]}
    return ids


#: What the hooks draw from: the seeded ids and the admin token, filled in by the ``fuzzed`` fixture before
#: any example is generated (generation happens inside the test, after its fixtures).
SEEDS: dict[str, Any] = {}

# The document as this server builds it under noauth; ``fuzzed`` checks that the all-in-one serves the same.
schema = schemathesis.openapi.from_dict(openapi.build(ROUTES, "noauth"))


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    return _swap(_ids(context.operation), path_parameters)


@schema.hook
def flatmap_query(context: Any, query: dict[str, Any] | None) -> Any:
    return _swap(_ids(context.operation), query or {})


@schema.hook
def flatmap_body(context: Any, body: Any) -> Any:
    return _swap({**SEEDS["ids"], **SEEDS["ids"]["fields"]}, body)


CALLS = itertools.count()


def _steer(case: Any, number: int) -> None:
    """Every other request as the administrator (os-services, reset-state and all_tenants are theirs), and
    the coverage phase's cases (boundary values of one parameter, which the hooks above do not see) on
    seeded objects for every path parameter but the one the case is about."""
    about = getattr(getattr(case.meta, "phase", None), "data", None)
    about = getattr(about, "parameter", None)
    if number % 2 and about != "X-Auth-Token":
        case.headers = {**(case.headers or {}), "X-Auth-Token": SEEDS["admin"]}
    if case.meta is not None and str(case.meta.phase.name) == "coverage":
        ids = _ids(case.operation)
        for key in list(case.path_parameters or {}):
            if key != about and key in ids:
                case.path_parameters[key] = ids[key][number % len(ids[key])]


@pytest.fixture(scope="module")
def fuzzed(service: AllInOne, seeded: dict[str, Any]) -> AllInOne:
    served = requests.get(f"{service.url}/v1/openapi.json", timeout=30).json()
    assert served == openapi.build(ROUTES, "noauth"), "the all-in-one serves another document"
    SEEDS.update(ids=seeded, admin=service.admin_token)
    return service


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=True,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_every_answer_is_what_the_document_says(case: Any, fuzzed: AllInOne) -> None:
    _steer(case, next(CALLS))
    response = case.call(base_url=fuzzed.url, timeout=60)
    ANSWERS[f"{case.method.upper()} {case.path}"][response.status_code] += 1
    case.validate_response(response, checks=CHECKS)


def test_the_run_reached_the_success_paths_and_logged_no_error(service: AllInOne) -> None:
    """The fuzzing above is worth something only if it got past the 404s, and only if it broke nothing."""
    if not ANSWERS:
        pytest.skip("the schemathesis run did not take place")
    documented = {f"{route.method} {route.full_path}" for route in ROUTES}
    probes = sum(sum(codes.values()) for op, codes in ANSWERS.items() if op not in documented)  # other methods
    answers = {op: codes for op, codes in ANSWERS.items() if op in documented}
    tested = len(answers)
    succeeded = sorted(op for op, codes in answers.items() if any(200 <= c < 300 for c in codes))
    total = sum(sum(codes.values()) for codes in answers.values())
    summary = "\n".join(f"{op}: {dict(sorted(codes.items()))}" for op, codes in sorted(answers.items()))
    print(f"\n{tested} operations, {total} requests (and {probes} of undocumented methods), {len(succeeded)} "
          f"operations reached a 2xx\n{summary}")
    assert tested == len(documented), summary
    assert len(succeeded) >= 0.75 * tested, summary
    time.sleep(0.5)  # the log lines of the last requests
    unexpected = [line for line in service.output if "Unexpected error" in line or "Traceback" in line]
    assert not unexpected, "".join(unexpected[:20])
