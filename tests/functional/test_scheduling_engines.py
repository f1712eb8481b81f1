"""Done-when 4: killing one of several engine processes mid-run loses no fire and doubles none.

The deployed topology with real processes: ``strongroom-api``, ``strongroom-protection`` and three
``strongroom-operationengine`` sharing PostgreSQL and RabbitMQ.  Three scheduled operations fire every few
seconds; once an engine holds a fire in progress it is killed with SIGKILL.  Afterwards every fire of every
operation, from the first to the last, ran exactly once: one log entry, ``success``, one checkpoint.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from strongroom.db.api import Database
from strongroom.db.scheduling import SchedulingStore
from tests.functional.harness import PROVIDER_ID
from tests.servers import unavailable
from tests.unit.db.conftest import Server
from tests.unit.protection.test_rpc_transports import RABBIT, rabbit_reachable

pytestmark = pytest.mark.functional

BIN = Path(sys.executable).parent
PERIOD = 8
WINDOW = 7  # the API wants it shorter than the period; as long as it may be, for a loaded machine


@dataclasses.dataclass
class Proc:
    name: str
    process: subprocess.Popen[str]
    output: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def wait_for(self, pattern: str, timeout: float = 90.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.output):
                match = re.search(pattern, line)
                if match:
                    return match
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: no {pattern!r}:\n" + "".join(self.output[-40:]))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def postgresql_url(tmp_path: Path) -> Iterator[str]:
    server = Server("postgresql", str(tmp_path))
    try:
        server.connect()
    except ConnectionError as err:
        unavailable(f"PostgreSQL unreachable: {err}")
    if not rabbit_reachable():
        unavailable("RabbitMQ unreachable")
    yield server.create_database()
    server.drop_all()


def start(name: str, program: str, *configs: Path) -> Proc:
    args = [str(BIN / program)]
    for conf in configs:
        args += ["--config-file", str(conf)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    return Proc(name, process)


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = requests.post(url, json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_killing_an_engine_mid_run_loses_no_fire_and_doubles_none(tmp_path: Path, postgresql_url: str) -> None:
    state = tmp_path / "state"
    (state / "volumes").mkdir(parents=True)
    for i in range(3):
        with open(state / "volumes" / f"vol-{i}.img", "wb") as fh:
            fh.truncate(2 << 20)
            fh.write(os.urandom(512 << 10))
    base = tmp_path / "strongroom.conf"
    base.write_text(f"""[DEFAULT]
state_dir = {state}
transport_url = {RABBIT}
protection_topic = strongroom-protection-{uuid.uuid4().hex[:8]}
[api]
bind_port = 0
[database]
connection = {postgresql_url}
[operationengine]
min_interval = 1
min_window = 1
poll_interval = 0.2
claim_timeout = 2
plan_ahead = 10
""")
    sync = subprocess.run([str(BIN / "strongroom-manage"), "--config-file", str(base), "db", "sync"],
                          capture_output=True, text=True, timeout=120)
    assert sync.returncode == 0, sync.stderr

    procs: list[Proc] = []
    try:
        procs.append(start("protection", "strongroom-protection", base))
        procs.append(start("api", "strongroom-api", base))
        engines = [start(f"engine-{i}", "strongroom-operationengine", base) for i in range(3)]
        procs += engines
        api = procs[1].wait_for(r"API listening on (http://127\.0\.0\.1:\d+)").group(1) + "/v1/demo"
        procs[0].wait_for(r"strongroom-protection running")
        owners = {e.wait_for(r"operation engine (\S+) started").group(1): e for e in engines}

        ops = []
        for i in range(3):
            plan = post(f"{api}/plans", {"plan": {"name": f"plan-{i}", "provider_id": PROVIDER_ID, "resources": [
                {"id": f"vol-{i}.img", "type": "OS::Cinder::Volume"}]}})["plan"]
            start_time = (_dt.datetime.now(_dt.UTC) + _dt.timedelta(seconds=2 + 2 * i)).replace(microsecond=0)
            trigger = post(f"{api}/triggers", {"trigger_info": {"name": f"t{i}", "type": "time", "properties": {
                "format": "calendar", "pattern": f"BEGIN:VEVENT\nRRULE:FREQ=SECONDLY;INTERVAL={PERIOD}\nEND:VEVENT",
                "start_time": start_time.isoformat(), "window": WINDOW}}})["trigger_info"]
            ops.append(post(f"{api}/scheduled_operations", {"scheduled_operation": {
                "name": f"op-{i}", "operation_type": "protect", "trigger_id": trigger["id"],
                "operation_definition": {"provider_id": PROVIDER_ID, "plan_id": plan["id"]}}})["scheduled_operation"])

        db = Database(postgresql_url)
        store = SchedulingStore(db)
        try:
            time.sleep(PERIOD + 4)
            alive = dict(owners)
            victim = None
            # A fire can end between the look and the kill (a loaded machine delays the kill): then that engine
            # died idle, and another one holding a fire is killed (one of the three is left).
            for _ in range(2):
                deadline = time.monotonic() + 6 * PERIOD
                victim = None
                while victim is None and time.monotonic() < deadline:
                    running = [f for op in ops for f in store.list_fires(op["id"], filters={"state": "in_progress"})]
                    victim = next((f for f in running if f.owner in alive), None)
                    time.sleep(0.02)
                assert victim is not None, "no engine was seen running a fire"
                killed = alive.pop(victim.owner)
                killed.process.send_signal(signal.SIGKILL)
                killed.process.wait()
                if store.get_fire(victim.id).state == "in_progress":
                    break
            else:
                raise AssertionError("twice, the fire ended before its engine was killed")
            time.sleep(2 * PERIOD + 2)  # the takeover, then fires on the engines left
            for op in ops:
                resp = requests.post(f"{api}/scheduled_operations/{op['id']}/action", json={"suspend": {}},
                                     timeout=30)
                assert resp.status_code == 200, resp.text
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and any(
                    store.list_fires(op["id"], filters={"state": "in_progress"}) for op in ops):
                time.sleep(0.2)

            taken_over = store.get_fire(victim.id)
            assert taken_over.state == "success", taken_over
            assert taken_over.attempts >= 2 and taken_over.owner != victim.owner
            for op in ops:
                fires = sorted(store.list_fires(op["id"]), key=lambda f: f.fire_time)
                assert len(fires) >= 3
                assert [f.state for f in fires] == ["success"] * len(fires), [(f.fire_time, f.state, f.error_info)
                                                                             for f in fires]
                gaps = {(b.fire_time - a.fire_time).total_seconds() for a, b in zip(fires, fires[1:], strict=False)}
                assert gaps == {PERIOD}, "a fire is missing"
                made = [c for c in db.list_checkpoints(PROVIDER_ID, "demo", filters={"plan_id":
                                                                                      op["operation_definition"][
                                                                                          "plan_id"]})]
                assert sorted(c.extra_info["scheduled_fire_id"] for c in made) == sorted(f.id for f in fires)
                assert {c.id for c in made} == {f.checkpoint_id for f in fires}
                assert all(c.status == "available" for c in made)
                protects = db.list_operation_logs("demo", filters={"operation_type": "protect",
                                                                   "plan_id": op["operation_definition"]["plan_id"]})
                assert len(protects) == len(fires)
            print(f"\nkilled {victim.owner} while it ran fire {victim.id} (checkpoint "
                  f"{'recorded' if victim.checkpoint_id else 'not yet recorded'}); taken over by "
                  f"{taken_over.owner}; {sum(len(store.list_fires(op['id'])) for op in ops)} fires, each once")
        finally:
            db.dispose()
    finally:
        for proc in reversed(procs):
            proc.stop()
