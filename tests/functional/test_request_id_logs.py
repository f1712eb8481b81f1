"""One request id, shown by the CLI, finds a protect's lines in every service's log.

The deployed topology as real processes (``strongroom-api`` and two ``strongroom-protection`` workers,
RabbitMQ for RPC, PostgreSQL, Redis for the jobboard), each logging through oslo.log to its own
``log_file``, the API's as JSON (``use_json``).  A protect through the CLI with ``--debug`` and
``--request-id``: the request id the CLI prints is on the API's line of the call, on the RPC handler's line
in the worker that accepted it and on the start and end lines of the run in the worker whose conductor ran it,
beside the caller's global request id, the project and (JSON) in the ``context`` of each record.  A 404 that
crosses RPC and a 409 are logged at INFO, and no log holds a traceback.  Servers unreachable: SKIP, or FAIL
with ``CI=true``.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.functional.banks import write_random_image
from tests.functional.harness import MiB
from tests.functional.test_deployed_topology import ADMIN, BIN, PROVIDER, Topology, _progress, deployed

pytestmark = [pytest.mark.functional, pytest.mark.slow]

REQ = r"req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _cli(topo: Topology, *argv: str, global_id: str | None = None) -> tuple[int, str, str]:
    extra = ["--request-id", global_id] if global_id else []
    done = subprocess.run([str(BIN / "strongroom"), "--url", topo.url, "--project", "demo", "--token", ADMIN,
                           "--debug", *extra, *argv], capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def _request_id(stderr: str, method: str, status: int) -> str:
    """The request id ``--debug`` printed for the ``method`` call answered ``status``."""
    found = re.findall(rf"^DEBUG: {method} \S+ -> {status} request id ({REQ})$", stderr, re.MULTILINE)
    assert len(found) == 1, stderr
    return str(found[0])


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line a JSON record


@pytest.mark.timeout(480)  # the protect is made slow; CI runs three modules at once
def test_one_request_id_finds_a_protect_in_every_services_log(tmp_path: Path) -> None:
    logs = tmp_path / "service-logs"
    logs.mkdir()

    def log_options(host: str) -> str:  # use_stderr too: the fixture reads the API's URL from its output
        return (f"log_file = {logs / (host + '.log')}\nuse_stderr = true\n"
                + ("use_json = true\n" if host == "api" else "debug = true\n"))

    with deployed("postgresql", tmp_path, log_options) as topo:
        # 96 MiB at about 28 MiB/s at best (one zstd-15 worker): still protecting when the delete comes.
        write_random_image(topo.state / "volumes" / "disk.img", 96 * MiB, seed=31)
        plan = topo.plan("disk.img")
        global_id = f"req-{uuid.uuid4()}"
        code, out, err = _cli(topo, "-f", "json", "checkpoint", "create", PROVIDER, plan, global_id=global_id)
        assert code == 0, err
        protect_id = _request_id(err, "POST", 200)
        cid = json.loads(out)["id"]

        code, _, err = _cli(topo, "checkpoint", "delete", PROVIDER, cid)  # still protecting: 409
        assert code == 1 and "HTTP 409" in err, err
        conflict_id = _request_id(err, "DELETE", 409)
        assert f"(request {conflict_id})" in err

        code, _, err = _cli(topo, "provider", "show", str(uuid.uuid4()))  # crosses RPC: NotFound in a worker
        assert code == 1 and "HTTP 404" in err, err
        missing_id = _request_id(err, "GET", 404)

        body = topo.wait(f"/providers/{PROVIDER}/checkpoints/{cid}", "checkpoint", {"available", "error"})
        assert body["status"] == "available", body
        worker = topo.worker_of(cid, "protect")
        ended = f"protect of checkpoint {cid} ended: available"
        deadline = time.monotonic() + 30  # the run's last line comes after the status the API shows
        while ended not in (logs / f"{worker}.log").read_text():
            assert time.monotonic() < deadline, (logs / f"{worker}.log").read_text()[-4000:]
            time.sleep(0.1)

        api = _json_lines(logs / "api.log")
        workers = {host: (logs / f"{host}.log").read_text() for host in ("worker-1", "worker-2")}

    # The API: the call's access line, as JSON, its context naming the request, the caller's id and project.
    mine = [r for r in api if r["context"].get("request_id") == protect_id]
    access = [r for r in mine if re.fullmatch(rf'"POST /v1/demo/providers/{PROVIDER}/checkpoints" status: 200 '
                                              r"time: \d+\.\d{3}", r["message"])]
    assert len(access) == 1 and access[0]["levelname"] == "INFO", mine
    assert {(r["context"]["global_request_id"], r["context"]["project_id"]) for r in mine} == {(global_id, "demo")}

    # The workers: the RPC handler's line where the call landed, the run's start and end where it ran, each
    # with the request id (after the caller's global id) and the project.
    def lines_of(request_id: str) -> list[str]:
        return [line for text in workers.values() for line in text.splitlines() if request_id in line]

    protect_lines = lines_of(protect_id)
    for expected in (f"protect of plan {plan} accepted: checkpoint {cid}",
                     f"protect of checkpoint {cid} started", ended):
        [line] = [line for line in protect_lines if expected in line]
        assert re.search(rf" INFO strongroom\.\S+ \[{global_id} {protect_id} \S+ demo\] ", line), line
    assert any(ended in line for line in workers[worker].splitlines() if protect_id in line)
    # The flow's own threads (taskflow's tasks on the sr-flow pool), at DEBUG (``debug = true``): each hook.
    hooks = [line for line in workers[worker].splitlines() if f"protect of {cid} " in line and " DEBUG " in line]
    assert {re.search(r": (on_\w+)", line).group(1) for line in hooks} == {  # type: ignore[union-attr]
        "on_prepare_begin", "on_prepare_finish", "on_main", "on_complete"}, hooks
    assert all(f"{global_id} {protect_id} " in line for line in hooks), hooks

    # 404 and 409: INFO lines under their request ids, in the API and (404: RPC show_provider) a worker.
    for request_id, status in ((missing_id, 404), (conflict_id, 409)):
        records = [r for r in api if r["context"].get("request_id") == request_id]
        assert {r["levelname"] for r in records} == {"INFO"}, records
        assert any(f"answered {status}" in r["message"] for r in records), records
    assert any("RPC show_provider answered NotFound" in line and " INFO " in line for line in lines_of(missing_id))
    assert not any(r.get("traceback") for r in api)
    for host, text in workers.items():
        assert "Traceback" not in text, f"{host}:\n{text[-4000:]}"
        assert " ERROR " not in text, f"{host}:\n{text[-4000:]}"
    print(f"protect {protect_id}: {len(mine)} API records, {len(protect_lines)} worker lines; "
          f"404 {missing_id}, 409 {conflict_id}")


@pytest.mark.timeout(480)  # a takeover waits out the dead worker's lease, then redoes part of the run
def test_a_protect_taken_over_by_another_worker_logs_there_under_its_request_id(tmp_path: Path) -> None:
    logs = tmp_path / "service-logs"
    logs.mkdir()
    with deployed("postgresql", tmp_path, lambda host: f"log_file = {logs / (host + '.log')}\nuse_stderr = true\n"
                  ) as topo:
        write_random_image(topo.state / "volumes" / "big.img", 64 * MiB, seed=47)
        plan = topo.plan("big.img")
        code, out, err = _cli(topo, "-f", "json", "checkpoint", "create", PROVIDER, plan)
        assert code == 0, err
        protect_id = _request_id(err, "POST", 200)
        cid = json.loads(out)["id"]
        path = f"/providers/{PROVIDER}/checkpoints/{cid}"
        victim = topo.worker_of(cid, "protect")
        _progress(topo, path, "checkpoint", 0.1)
        topo.kill(victim)  # SIGKILL: its job stays on the jobboard with the request's context
        survivor = next(host for host in ("worker-1", "worker-2") if host != victim)
        body = topo.wait(path, "checkpoint", {"available", "error"}, timeout=240)
        deadline = time.monotonic() + 30
        while f"protect of checkpoint {cid} ended" not in (logs / f"{survivor}.log").read_text():
            assert time.monotonic() < deadline, (logs / f"{survivor}.log").read_text()[-4000:]
            time.sleep(0.1)
        text = (logs / f"{survivor}.log").read_text()

    [ended] = [line for line in text.splitlines() if f"protect of checkpoint {cid} ended: " in line]
    assert re.search(rf" \[None {protect_id} \S+ demo\] ", ended) and ended.endswith(f"ended: {body['status']}"), ended
    if body["status"] == "available":  # resumed from its saved flow (else reverted: it ends failed there)
        started = [line for line in text.splitlines() if f"protect of checkpoint {cid} started (resumed)" in line]
        assert len(started) == 1 and protect_id in started[0], text[-4000:]
    print(f"protect {protect_id} killed on {victim} at 10 %, ended {body['status']} on {survivor}")
