"""API load test: concurrent clients listing, showing and creating plans and checkpoints.

Run from the repository root with ``.venv/bin/python benchmarks/bench_api_load.py`` (part of ``make bench``).
Everything lives in ``--bench-dir`` (``.bench``): the run's state in ``<bench-dir>/api-load/`` (recreated at
each run), the report in ``<bench-dir>/api-load.md`` and its figures in ``<bench-dir>/api-load.json``.

Targets (``--target``, default ``both``):

* ``embedded``: the real ``strongroom-all-in-one`` on 127.0.0.1 (an ephemeral port): waitress with
  ``--api-threads`` (16) threads, sqlite, in-process RPC, the protection service in the same process.
* ``deployed``: as ``doc/deployment.md`` describes it: ``gunicorn strongroom.api.wsgi:application`` (the shipped
  paste pipeline; ``--gunicorn-workers`` (2: one per core) ``gthread`` workers of ``--gunicorn-threads`` (8)
  threads, keep-alive 30 s) on a fresh PostgreSQL database made on ``--postgresql-url``'s server (dropped
  afterwards), a ``strongroom-protection`` over RabbitMQ (``--transport-url``), ``strongroom-manage db sync``.

Each target gets a 256 KiB loopback volume, 25 plans and ``--seed-checkpoints`` (8) available checkpoints,
then two runs of ``--duration`` (30) seconds each, ``--clients`` (50) clients spread over ``--processes`` (2)
client processes (so that the clients' own Python does not serialise them), each sending its next request as
soon as the answer came:

* ``reads`` (the done-when of issue 14): list plans, show a plan, list checkpoints, show a checkpoint;
* ``mixed``: the same with plan creates and checkpoint creates.  Checkpoint creates are rate-limited
  (``--checkpoint-rate`` per second, at most ``--max-checkpoints``); a client refused by the budget lists
  checkpoints instead; plan creates stop at ``--max-plans``.  Afterwards every checkpoint must end
  ``available`` (waited for up to 120 s).

Reported per endpoint and overall: requests/s and p50/p99/max latency, the two targets side by side; and the
CPU time per request (user + system, from ``/proc``) of the API server's processes (the all-in-one; gunicorn's
master and workers), of the protection service (deployed), of PostgreSQL's backends for the bench's database
and of the client processes: on a shared machine latencies move with the neighbours' load, CPU per request much
less.  Exit status 1 when any answer was a 5xx, a request failed to connect, or a checkpoint ended ``error``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROVIDER_ID = "7b1c6a4e-2f0d-4c8e-9a51-3e2d8f6b0c11"  # providers.d/local.conf
VOLUME_TYPE = "OS::Cinder::Volume"
PROJECT = "load"
ADMIN_TOKEN = "bench-admin-token"
KIB = 1024
TICK = os.sysconf("SC_CLK_TCK")
SEED_PLANS = 25

# run -> endpoint name -> weight in the mix
MIXES: dict[str, dict[str, int]] = {
    "reads": {
        "GET /plans": 30,
        "GET /plans/{id}": 20,
        "GET /checkpoints": 30,
        "GET /checkpoints/{id}": 20,
    },
    "mixed": {
        "GET /plans": 25,
        "GET /plans/{id}": 15,
        "POST /plans": 10,
        "GET /checkpoints": 25,
        "GET /checkpoints/{id}": 10,
        "POST /checkpoints": 15,
    },
}
ENDPOINTS = list(dict.fromkeys(name for mix in MIXES.values() for name in mix))


@dataclasses.dataclass
class Budget:
    """Checkpoint creates allowed to one client process: a rate and a total."""

    rate: float
    total: int
    started: float
    used: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def take(self, now: float) -> bool:
        with self.lock:
            if self.used >= self.total or self.used >= (now - self.started) * self.rate + 1:
                return False
            self.used += 1
            return True


@dataclasses.dataclass(frozen=True)
class Seeds:
    plans: list[str]
    checkpoints: list[str]


def _client(url: str, mix: dict[str, int], seeds: Seeds, deadline: float, budget: Budget, plan_cap: list[int],
            seed: int, out: dict[str, list[float]], statuses: dict[str, dict[int, int]], failures: list[str],
            lock: threading.Lock) -> None:
    rng = random.Random(seed)
    session = requests.Session()
    session.headers.update({"X-Auth-Token": "load", "Content-Type": "application/json"})
    names, weights = list(mix), list(mix.values())
    api = f"{url}/v1/{PROJECT}"
    latencies: dict[str, list[float]] = {name: [] for name in names}
    codes: dict[str, dict[int, int]] = {name: {} for name in names}
    n = 0
    while time.monotonic() < deadline:
        name = rng.choices(names, weights)[0]
        if name == "POST /checkpoints" and not budget.take(time.monotonic()):
            name = "GET /checkpoints"
        if name == "POST /plans":
            with lock:
                if plan_cap[0] <= 0:
                    name = "GET /plans"
                else:
                    plan_cap[0] -= 1
        n += 1
        if name == "GET /plans":
            method, path, body = "GET", "/plans?limit=20", None
        elif name == "GET /plans/{id}":
            method, path, body = "GET", f"/plans/{rng.choice(seeds.plans)}", None
        elif name == "POST /plans":
            method, path = "POST", "/plans"
            body = {"plan": {"name": f"load-{seed}-{n}", "provider_id": PROVIDER_ID,
                             "resources": [{"id": "tiny.img", "type": VOLUME_TYPE}]}}
        elif name == "GET /checkpoints":
            method, path, body = "GET", f"/providers/{PROVIDER_ID}/checkpoints?limit=20", None
        elif name == "GET /checkpoints/{id}":
            method, path, body = "GET", f"/providers/{PROVIDER_ID}/checkpoints/{rng.choice(seeds.checkpoints)}", None
        else:
            method, path = "POST", f"/providers/{PROVIDER_ID}/checkpoints"
            body = {"checkpoint": {"plan_id": seeds.plans[0]}}
        started = time.perf_counter()
        try:
            resp = session.request(method, api + path, data=None if body is None else json.dumps(body), timeout=60)
            resp.content  # noqa: B018 - the whole answer is part of the latency
            code = resp.status_code
            if code >= 500:
                failures.append(f"{name}: {code} {resp.text[:300]}")
        except requests.RequestException as err:
            code = 0
            failures.append(f"{name}: {type(err).__name__}: {err}")
        latencies[name].append(time.perf_counter() - started)
        codes[name][code] = codes[name].get(code, 0) + 1
    session.close()
    with lock:
        for name in names:
            out[name].extend(latencies[name])
            for code, count in codes[name].items():
                statuses[name][code] = statuses[name].get(code, 0) + count


def client_process(url: str, mix: dict[str, int], seeds: Seeds, clients: int, start_at: float, duration: float,
                   rate: float, total: int, max_plans: int, seed: int) -> dict[str, Any]:
    """One client process: ``clients`` threads from ``start_at`` (a time.time()) for ``duration`` seconds."""
    time.sleep(max(0.0, start_at - time.time()))
    before = resource.getrusage(resource.RUSAGE_SELF)
    deadline = time.monotonic() + duration
    budget = Budget(rate=rate, total=total, started=time.monotonic())
    out: dict[str, list[float]] = {name: [] for name in mix}
    statuses: dict[str, dict[int, int]] = {name: {} for name in mix}
    failures: list[str] = []
    lock = threading.Lock()
    plan_cap = [max_plans]
    threads = [threading.Thread(target=_client, args=(url, mix, seeds, deadline, budget, plan_cap,
                                                      seed * 1000 + i, out, statuses, failures, lock))
               for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"latencies": out, "statuses": statuses, "failures": failures[:20], "failed": len(failures),
            "cpu": cpu}


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (seconds); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, int(round(fraction * len(ordered) + 0.5)))
    return ordered[min(rank, len(ordered)) - 1]


# -- CPU accounting ---------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """user + system CPU of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_snapshot(groups: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    return {name: {pid: cpu_seconds(pid) for pid in pids} for name, pids in groups.items()}


def cpu_delta(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds per group between two snapshots; a process new in ``after`` counts whole."""
    return {name: sum(cpu - before.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items())
            for name, pids in after.items()}


# -- the services -----------------------------------------------------------------------------------------


class Target:
    name = ""
    description = ""

    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        self.work = work
        self.args = args
        self.state = work / "state"
        (self.state / "volumes").mkdir(parents=True)
        (self.state / "volumes" / "tiny.img").write_bytes(random.Random(7).randbytes(args.volume_kib * KIB))
        self.url = ""
        self.processes: list[subprocess.Popen[str]] = []

    def start(self) -> None:
        raise NotImplementedError

    def cpu_groups(self) -> dict[str, list[int]]:
        """The processes whose CPU each figure counts, by what they are."""
        raise NotImplementedError

    def peak_rss(self) -> int:
        return 0

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        log = open(self.work / f"{name}.log", "w")  # noqa: SIM115 - kept open for the process's life
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=self.work,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                start_new_session=True)  # its own process group: gunicorn's workers too
        self.processes.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.work.glob("*.log")))

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.processes):
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class Embedded(Target):
    name = "embedded"

    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        super().__init__(work, args)
        self.description = f"all-in-one (waitress, {args.api_threads} threads, sqlite, in-process RPC)"
        self.conf = work / "strongroom.conf"
        self.conf.write_text(f"[DEFAULT]\nstate_dir = {self.state}\n[api]\nbind_port = 0\n"
                             f"threads = {args.api_threads}\n[quota]\nplans = -1\n")
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = self._spawn("all-in-one", [str(BIN / "strongroom-all-in-one"), "--config-file", str(self.conf)])
        log = self.work / "all-in-one.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = re.search(r"running on (http://127\.0\.0\.1:\d+)", log.read_text())
            if found:
                self.url = found.group(1)
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit(f"strongroom-all-in-one did not start:\n{log.read_text()[-3000:]}")

    def cpu_groups(self) -> dict[str, list[int]]:
        return {"api": [self.process.pid] if self.process else []}

    def peak_rss(self) -> int:
        return _rss(self.process.pid) if self.process else 0


class Deployed(Target):
    name = "deployed"

    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        super().__init__(work, args)
        import sqlalchemy as sa

        self.description = (f"gunicorn ({args.gunicorn_workers} gthread workers x {args.gunicorn_threads} threads, "
                            f"paste pipeline), PostgreSQL, strongroom-protection over RabbitMQ")
        self.admin = sa.create_engine(args.postgresql_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        self.database = f"strongroom_bench_{uuid.uuid4().hex[:8]}"
        self.host = f"bench-{uuid.uuid4().hex[:8]}"
        self.created = False
        self.gunicorn: subprocess.Popen[str] | None = None
        self.protection: subprocess.Popen[str] | None = None

    def start(self) -> None:
        import sqlalchemy as sa

        try:
            with self.admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{self.database}"'))
        except sa.exc.OperationalError as err:
            raise SystemExit(f"deployed target: PostgreSQL unreachable at {self.admin.url!r}: "
                             f"{str(err.orig).splitlines()[0]}") from None
        self.created = True
        url = sa.engine.make_url(self.args.postgresql_url).set(database=self.database)
        conf = self.work / "strongroom.conf"
        conf.write_text(
            "[DEFAULT]\n"
            f"state_dir = {self.state}\n"
            f"providers_dir = {ROOT / 'providers.d'}\n"
            f"transport_url = {self.args.transport_url}\n"
            f"protection_topic = strongroom-protection-{self.host}\n"  # never shared with another run's queues
            f"host = {self.host}\n"
            f"admin_token = {ADMIN_TOKEN}\n"
            "[quota]\nplans = -1\n"
            f"[database]\nconnection = {url.render_as_string(hide_password=False)}\n")
        port = _free_port()
        self.gunicorn = self._spawn("gunicorn", [
            str(BIN / "gunicorn"), "--workers", str(self.args.gunicorn_workers), "--worker-class", "gthread",
            "--threads", str(self.args.gunicorn_threads), "--worker-connections", "256", "--keep-alive", "30",
            "--timeout", "60", "--graceful-timeout", "10", "--bind", f"127.0.0.1:{port}", "--no-control-socket",
            "strongroom.api.wsgi:application"], env={"STRONGROOM_CONFIG_FILE": str(conf)})
        self.url = f"http://127.0.0.1:{port}"
        # gunicorn boots while the schema is made: its workers build the application on their first request,
        # which answers 503 until then (doc/deployment.md); strongroom-protection refuses an unsynced schema
        manage = subprocess.run([str(BIN / "strongroom-manage"), "--config-file", str(conf), "db", "sync"],
                                capture_output=True, text=True, timeout=120)
        if manage.returncode != 0:
            raise SystemExit(f"db sync failed:\n{manage.stdout}{manage.stderr}")
        self.protection = self._spawn("protection", [str(BIN / "strongroom-protection"), "--config-file", str(conf)])
        deadline = time.monotonic() + 90
        while True:  # healthy: the database answers and the protection service beats
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/healthcheck", timeout=10).status_code == 200:
                    break
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                raise SystemExit(f"the deployed API did not become healthy:\n{self.logs()}")
            time.sleep(0.2)
        # every worker builds its application on its first request: build them all before measuring
        for _ in range(4 * self.args.gunicorn_workers):
            requests.get(f"{self.url}/v1/{PROJECT}/plans?limit=1", headers={"X-Auth-Token": "load"}, timeout=30)

    def cpu_groups(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {"api": [], "protection": [], "postgresql": []}
        if self.gunicorn is not None:
            groups["api"] = [self.gunicorn.pid, *children(self.gunicorn.pid)]
        if self.protection is not None:
            groups["protection"] = [self.protection.pid]
        groups["postgresql"] = self._backends()
        return groups

    def _backends(self) -> list[int]:
        import sqlalchemy as sa

        with contextlib.suppress(sa.exc.SQLAlchemyError), self.admin.connect() as conn:
            return [int(pid) for pid in conn.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :name"), {"name": self.database}).scalars()]
        return []

    def peak_rss(self) -> int:
        return sum(_rss(pid) for pid in self.cpu_groups()["api"])

    def stop(self) -> None:
        import sqlalchemy as sa

        try:
            super().stop()
        finally:
            if self.created:
                with self.admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
            self.admin.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * KIB
    except OSError:
        pass
    return 0


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def checkpoint_counts(url: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    marker = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"marker": marker} if marker else {})}
        page = requests.get(f"{url}/v1/{PROJECT}/providers/{PROVIDER_ID}/checkpoints", params=params,
                            headers={"X-Auth-Token": "load"}, timeout=60).json()["checkpoints"]
        for cp in page:
            counts[cp["status"]] = counts.get(cp["status"], 0) + 1
        if len(page) < 1000:
            return counts
        marker = page[-1]["id"]


def wait_for_checkpoints(url: str, timeout: float) -> dict[str, int]:
    """Page through every checkpoint until none is ``protecting``; returns the count per status."""
    deadline = time.monotonic() + timeout
    while True:
        counts = checkpoint_counts(url)
        if not counts.get("protecting") or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def seed(target: Target, checkpoints: int) -> Seeds:
    headers = {"X-Auth-Token": "load"}
    plans = []
    for i in range(SEED_PLANS):
        resp = requests.post(f"{target.url}/v1/{PROJECT}/plans", headers=headers, timeout=60, json={"plan": {
            "name": f"seed-{i}", "provider_id": PROVIDER_ID, "resources": [{"id": "tiny.img", "type": VOLUME_TYPE}]}})
        resp.raise_for_status()
        plans.append(resp.json()["plan"]["id"])
    made = []
    for i in range(checkpoints):
        resp = requests.post(f"{target.url}/v1/{PROJECT}/providers/{PROVIDER_ID}/checkpoints", headers=headers,
                             timeout=60, json={"checkpoint": {"plan_id": plans[i % len(plans)]}})
        resp.raise_for_status()
        made.append(resp.json()["checkpoint"]["id"])
    final = wait_for_checkpoints(target.url, 120)
    if set(final) != {"available"}:
        raise SystemExit(f"{target.name}: the seed checkpoints ended {final}:\n{target.logs()}")
    return Seeds(plans=plans, checkpoints=made)


def run_load(target: Target, run: str, seeds: Seeds, args: argparse.Namespace) -> dict[str, Any]:
    """One run of the mix ``run`` against ``target``; its latencies, statuses and CPU per process group."""
    mix = MIXES[run]
    per_process = [args.clients // args.processes + (1 if i < args.clients % args.processes else 0)
                   for i in range(args.processes)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.processes) as pool:
        start_at = time.time() + min(3.0, 1.0 + args.duration / 10)  # every client process starts together
        before = cpu_snapshot(target.cpu_groups())
        jobs = [pool.apply_async(client_process, (target.url, mix, seeds, n, start_at, args.duration,
                                                  args.checkpoint_rate / args.processes,
                                                  args.max_checkpoints // args.processes,
                                                  args.max_plans // args.processes, i + 1))
                for i, n in enumerate(per_process)]
        results = [job.get(timeout=args.duration + 300) for job in jobs]
        cpu = cpu_delta(before, cpu_snapshot(target.cpu_groups()))
    latencies: dict[str, list[float]] = {name: [] for name in mix}
    statuses: dict[str, dict[int, int]] = {name: {} for name in mix}
    failures: list[str] = []
    failed = 0
    for result in results:
        for name in mix:
            latencies[name] += result["latencies"][name]
            for code, count in result["statuses"][name].items():
                statuses[name][int(code)] = statuses[name].get(int(code), 0) + count
        failures += result["failures"]
        failed += result["failed"]
    cpu["clients"] = sum(r["cpu"] for r in results)
    final = wait_for_checkpoints(target.url, 120) if "POST /checkpoints" in mix else {}
    return {"latencies": latencies, "statuses": statuses, "failures": failures[:20], "failed": failed,
            "cpu": cpu, "final": final}


def summary(result: dict[str, Any], duration: float) -> dict[str, Any]:
    """What the report and the JSON file keep of a run: per endpoint and ``all``, requests, req/s, p50/p99/max ms."""
    def figures(values: list[float]) -> dict[str, float]:
        return {"requests": len(values), "rps": round(len(values) / duration, 1),
                "p50_ms": round(percentile(values, 0.50) * 1000, 1),
                "p99_ms": round(percentile(values, 0.99) * 1000, 1),
                "max_ms": round(max(values, default=0) * 1000, 1)}

    endpoints = {name: {**figures(values), "statuses": {str(k): v for k, v in result["statuses"][name].items()}}
                 for name, values in result["latencies"].items()}
    every = [v for values in result["latencies"].values() for v in values]
    total = max(1, len(every))
    fives = sum(c for s in result["statuses"].values() for code, c in s.items() if code >= 500)
    unanswered = sum(s.get(0, 0) for s in result["statuses"].values())
    return {"endpoints": endpoints, "all": figures(every),
            "cpu_ms_per_request": {k: round(v * 1000 / total, 2) for k, v in result["cpu"].items()},
            "fives": fives, "unanswered": unanswered, "failed": result["failed"], "failures": result["failures"],
            "checkpoints_at_end": result["final"]}


# -- main -------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=("embedded", "deployed", "both"), default="both")
    parser.add_argument("--run", choices=(*MIXES, "both"), default="both", help="reads, mixed or both")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--processes", type=int, default=2, help="client processes the clients are spread over")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load, per run")
    parser.add_argument("--checkpoint-rate", type=float, default=4.0, help="checkpoint creates per second, at most")
    parser.add_argument("--max-checkpoints", type=int, default=150)
    parser.add_argument("--max-plans", type=int, default=3000)
    parser.add_argument("--seed-checkpoints", type=int, default=8)
    parser.add_argument("--api-threads", type=int, default=16, help="[api] threads of the all-in-one")
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument("--gunicorn-threads", type=int, default=8)
    parser.add_argument("--postgresql-url", default=os.environ.get(
        "STRONGROOM_BENCH_POSTGRESQL_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server's administrative URL: the bench makes its database there, drops it after")
    parser.add_argument("--transport-url", default="rabbit://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--volume-kib", type=int, default=256)
    parser.add_argument("--bench-dir", type=Path, default=ROOT / ".bench")
    args = parser.parse_args(argv)
    if not (1 <= args.clients <= 500 and 1 <= args.duration <= 600 and 1 <= args.processes <= args.clients):
        parser.error("--clients 1..500, --duration 1..600 s, --processes 1..clients")
    if not 1 <= args.seed_checkpoints <= 100:
        parser.error("--seed-checkpoints 1..100")

    targets = ("embedded", "deployed") if args.target == "both" else (args.target,)
    runs = tuple(MIXES) if args.run == "both" else (args.run,)
    work = args.bench_dir / "api-load"
    shutil.rmtree(work, ignore_errors=True)
    results: dict[str, dict[str, Any]] = {}
    descriptions: dict[str, str] = {}
    for name in targets:
        target = (Embedded if name == "embedded" else Deployed)(work / name, args)
        descriptions[name] = target.description
        try:
            target.start()
            seeds = seed(target, args.seed_checkpoints)
            results[name] = {}
            for run in runs:
                print(f"{name}: {run} run, {args.clients} clients for {args.duration:g} s ...", flush=True)
                results[name][run] = summary(run_load(target, run, seeds, args), args.duration)
            results[name]["peak_rss"] = target.peak_rss()
            results[name]["bank_bytes"] = tree_bytes(target.state / "bank") if (target.state / "bank").exists() else 0
        finally:
            target.stop()

    report = render(args, targets, runs, descriptions, results)
    print(report)
    args.bench_dir.mkdir(parents=True, exist_ok=True)
    (args.bench_dir / "api-load.md").write_text(report)
    (args.bench_dir / "api-load.json").write_text(json.dumps(
        {"clients": args.clients, "processes": args.processes, "duration": args.duration,
         "targets": {name: {"description": descriptions[name], **results[name]} for name in targets}}, indent=1))
    ok = all(results[t][r]["failed"] == 0 and set(results[t][r]["checkpoints_at_end"]) <= {"available"}
             for t in targets for r in runs)
    print("PASS: no 5xx, no failed request, every checkpoint available" if ok else "FAIL")
    return 0 if ok else 1


CPU_ROWS = {"api": "API server", "protection": "protection service", "postgresql": "PostgreSQL backends",
            "clients": "load generator (client processes)"}


def render(args: argparse.Namespace, targets: Sequence[str], runs: Sequence[str], descriptions: dict[str, str],
           results: dict[str, dict[str, Any]]) -> str:
    lines = [f"# API load: {args.clients} clients ({args.processes} processes), {args.duration:g} s per run", ""]
    lines += [f"- **{name}**: {descriptions[name]}" for name in targets]
    load = os.getloadavg()
    lines += [f"- load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} ({os.cpu_count()} CPUs)", ""]
    for run in runs:
        lines += [f"## {run}: {', '.join(MIXES[run])}", ""]
        header = "| endpoint |" + "".join(f" {t} req/s | {t} p50 ms | {t} p99 ms |" for t in targets)
        lines += [header, "| --- |" + " ---: | ---: | ---: |" * len(targets)]
        for name in [*MIXES[run], "all"]:
            cells = []
            for t in targets:
                fig = results[t][run]["all"] if name == "all" else results[t][run]["endpoints"][name]
                cells.append(f" {fig['rps']} | {fig['p50_ms']} | {fig['p99_ms']} |")
            label = "**all**" if name == "all" else name
            lines.append(f"| {label} |" + "".join(cells))
        lines += ["", "CPU time per request (ms, user + system):", "",
                  "| process |" + "".join(f" {t} |" for t in targets), "| --- |" + " ---: |" * len(targets)]
        for key, label in CPU_ROWS.items():
            values = [results[t][run]["cpu_ms_per_request"].get(key) for t in targets]
            if any(v is not None for v in values):
                lines.append(f"| {label} |" + "".join(f" {'-' if v is None else v} |" for v in values))
        lines.append("")
        for t in targets:
            res = results[t][run]
            codes = {name: fig["statuses"] for name, fig in res["endpoints"].items()}
            lines.append(f"- {t}: max {res['all']['max_ms']} ms; 5xx answers: {res['fives']}; without an answer: "
                         f"{res['unanswered']}; statuses {codes}")
            if res["checkpoints_at_end"]:
                lines.append(f"  checkpoints at the end: {dict(sorted(res['checkpoints_at_end'].items()))} "
                             f"(creates capped at {args.max_checkpoints}, {args.checkpoint_rate:g}/s)")
            if res["failures"]:
                lines += [f"  first failures ({res['failed']} in all):", *[f"    {f}" for f in res["failures"][:10]]]
        lines.append("")
    for t in targets:
        lines.append(f"- {t}: API peak RSS {results[t]['peak_rss'] / 2**20:.0f} MiB; bank after the runs "
                     f"{results[t]['bank_bytes'] / KIB:.0f} KiB")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
