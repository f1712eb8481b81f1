"""API load test: concurrent clients listing and creating plans and checkpoints against the all-in-one.

Run from the repository root with ``.venv/bin/python benchmarks/bench_api_load.py`` (part of ``make bench``).
Everything lives in ``.bench/api-load/`` (recreated at each run).

* The real ``strongroom-all-in-one`` program on 127.0.0.1 (an ephemeral port), with a 256 KiB loopback volume.
* ``--clients`` (50) clients, spread over ``--processes`` (2) client processes so that the clients' own Python
  does not serialise them, send requests for ``--duration`` (30) seconds, each as fast as answers come:
  list plans, show a plan, create a plan, list checkpoints, create a checkpoint.
* Bounded: checkpoint creates are rate-limited (``--checkpoint-rate`` per second, at most
  ``--max-checkpoints``), a client whose create is refused by the budget lists checkpoints instead; plan
  creates stop at ``--max-plans``.  Every request loop stops at the deadline; the program stops itself.
* Afterwards every checkpoint must end ``available`` (waited for up to 120 s).

Prints requests/s and p50/p99 latency per endpoint (also to ``.bench/api-load.md``).  Exit status 1 when any
answer was a 5xx, a request failed to connect, or a checkpoint ended ``error``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench" / "api-load"
BIN = Path(sys.executable).parent
PROVIDER_ID = "7b1c6a4e-2f0d-4c8e-9a51-3e2d8f6b0c11"  # providers.d/local.conf
VOLUME_TYPE = "OS::Cinder::Volume"
PROJECT = "load"
KIB = 1024

# endpoint name -> weight in the mix
MIX = {
    "GET /plans": 30,
    "GET /plans/{id}": 15,
    "POST /plans": 10,
    "GET /checkpoints": 30,
    "POST /checkpoints": 15,
}


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


def _client(url: str, plans: list[str], deadline: float, budget: Budget, plan_cap: list[int], seed: int,
            out: dict[str, list[float]], statuses: dict[str, dict[int, int]], failures: list[str],
            lock: threading.Lock) -> None:
    rng = random.Random(seed)
    session = requests.Session()
    session.headers.update({"X-Auth-Token": "load", "Content-Type": "application/json"})
    names, weights = list(MIX), list(MIX.values())
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
            method, path, body = "GET", f"/plans/{rng.choice(plans)}", None
        elif name == "POST /plans":
            method, path = "POST", "/plans"
            body = {"plan": {"name": f"load-{seed}-{n}", "provider_id": PROVIDER_ID,
                             "resources": [{"id": "tiny.img", "type": VOLUME_TYPE}]}}
        elif name == "GET /checkpoints":
            method, path, body = "GET", f"/providers/{PROVIDER_ID}/checkpoints?limit=20", None
        else:
            method, path = "POST", f"/providers/{PROVIDER_ID}/checkpoints"
            body = {"checkpoint": {"plan_id": plans[0]}}
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


def client_process(url: str, plans: list[str], clients: int, start_at: float, duration: float, rate: float,
                   total: int, max_plans: int, seed: int) -> dict[str, Any]:
    """One client process: ``clients`` threads from ``start_at`` (a time.time()) for ``duration`` seconds."""
    time.sleep(max(0.0, start_at - time.time()))
    deadline = time.monotonic() + duration
    budget = Budget(rate=rate, total=total, started=time.monotonic())
    out: dict[str, list[float]] = {name: [] for name in MIX}
    statuses: dict[str, dict[int, int]] = {name: {} for name in MIX}
    failures: list[str] = []
    lock = threading.Lock()
    plan_cap = [max_plans]
    threads = [threading.Thread(target=_client, args=(url, plans, deadline, budget, plan_cap, seed * 1000 + i,
                                                      out, statuses, failures, lock))
               for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": out, "statuses": statuses, "failures": failures[:20], "failed": len(failures)}


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (seconds); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, int(round(fraction * len(ordered) + 0.5)))
    return ordered[min(rank, len(ordered)) - 1]


# -- the service ------------------------------------------------------------------------------------------


class AllInOne:
    def __init__(self, state: Path, api_threads: int) -> None:
        self.state = state
        self.conf = WORK / "strongroom.conf"
        self.conf.write_text(f"[DEFAULT]\nstate_dir = {state}\n[api]\nbind_port = 0\nthreads = {api_threads}\n")
        self.log = WORK / "all-in-one.log"
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> None:
        log = open(self.log, "w")  # noqa: SIM115 - kept open for the process's life
        self.process = subprocess.Popen([str(BIN / "strongroom-all-in-one"), "--config-file", str(self.conf)],
                                        stdout=log, stderr=subprocess.STDOUT, text=True,
                                        env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=WORK)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = re.search(r"running on (http://127\.0\.0\.1:\d+)", self.log.read_text())
            if found:
                self.url = found.group(1)
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit(f"strongroom-all-in-one did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def wait_for_checkpoints(url: str, timeout: float) -> dict[str, int]:
    """Page through every checkpoint until none is ``protecting``; returns the count per status."""
    deadline = time.monotonic() + timeout
    while True:
        counts: dict[str, int] = {}
        marker = None
        while True:
            params: dict[str, Any] = {"limit": 1000, **({"marker": marker} if marker else {})}
            page = requests.get(f"{url}/v1/{PROJECT}/providers/{PROVIDER_ID}/checkpoints", params=params,
                                headers={"X-Auth-Token": "load"}, timeout=60).json()["checkpoints"]
            for cp in page:
                counts[cp["status"]] = counts.get(cp["status"], 0) + 1
            if len(page) < 1000:
                break
            marker = page[-1]["id"]
        if not counts.get("protecting") or time.monotonic() > deadline:
            return counts
        time.sleep(1)


# -- main -------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--processes", type=int, default=2, help="client processes the clients are spread over")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--checkpoint-rate", type=float, default=4.0, help="checkpoint creates per second, at most")
    parser.add_argument("--max-checkpoints", type=int, default=150)
    parser.add_argument("--max-plans", type=int, default=3000)
    parser.add_argument("--api-threads", type=int, default=16, help="[api] threads of the all-in-one")
    parser.add_argument("--volume-kib", type=int, default=256)
    args = parser.parse_args(argv)
    if not (1 <= args.clients <= 500 and 1 <= args.duration <= 600 and 1 <= args.processes <= args.clients):
        parser.error("--clients 1..500, --duration 1..600 s, --processes 1..clients")

    shutil.rmtree(WORK, ignore_errors=True)
    state = WORK / "state"
    (state / "volumes").mkdir(parents=True)
    (state / "volumes" / "tiny.img").write_bytes(random.Random(7).randbytes(args.volume_kib * KIB))
    service = AllInOne(state, args.api_threads)
    service.start()
    try:
        headers = {"X-Auth-Token": "load"}
        plans = []
        for i in range(5):
            resp = requests.post(f"{service.url}/v1/{PROJECT}/plans", headers=headers, timeout=60, json={"plan": {
                "name": f"seed-{i}", "provider_id": PROVIDER_ID,
                "resources": [{"id": "tiny.img", "type": VOLUME_TYPE}]}})
            resp.raise_for_status()
            plans.append(resp.json()["plan"]["id"])
        per_process = [args.clients // args.processes + (1 if i < args.clients % args.processes else 0)
                       for i in range(args.processes)]
        start_at = time.time() + 3.0  # every client process starts together
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.processes) as pool:
            jobs = [pool.apply_async(client_process, (service.url, plans, n, start_at, args.duration,
                                                      args.checkpoint_rate / args.processes,
                                                      args.max_checkpoints // args.processes,
                                                      args.max_plans // args.processes, i + 1))
                    for i, n in enumerate(per_process)]
            results = [job.get(timeout=args.duration + 300) for job in jobs]
        final = wait_for_checkpoints(service.url, 120)
        rss = _rss(service.process.pid) if service.process else 0
    finally:
        service.stop()

    latencies: dict[str, list[float]] = {name: [] for name in MIX}
    statuses: dict[str, dict[int, int]] = {name: {} for name in MIX}
    failures: list[str] = []
    failed = 0
    for result in results:
        for name in MIX:
            latencies[name] += result["latencies"][name]
            for code, count in result["statuses"][name].items():
                statuses[name][int(code)] = statuses[name].get(int(code), 0) + count
        failures += result["failures"]
        failed += result["failed"]
    report = render(args, latencies, statuses, final, failed, failures, tree_bytes(state / "bank"), rss)
    print(report)
    (WORK / "results.md").write_text(report)
    ok = failed == 0 and set(final) <= {"available"}
    print("PASS: no 5xx, no failed request, every checkpoint available" if ok else "FAIL")
    return 0 if ok else 1


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * KIB
    except OSError:
        pass
    return 0


def render(args: argparse.Namespace, latencies: dict[str, list[float]], statuses: dict[str, dict[int, int]],
           final: dict[str, int], failed: int, failures: list[str], bank_bytes: int, rss: int) -> str:
    lines = [f"# API load: {args.clients} clients ({args.processes} processes) for {args.duration:g} s, "
             f"all-in-one with {args.api_threads} API threads", "",
             "| endpoint | requests | req/s | p50 ms | p99 ms | max ms | statuses |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    total = 0
    for name in MIX:
        values = latencies[name]
        total += len(values)
        codes = ", ".join(f"{code or 'no answer'}: {count}" for code, count in sorted(statuses[name].items()))
        lines.append(f"| {name} | {len(values)} | {len(values) / args.duration:.1f} | "
                     f"{percentile(values, 0.50) * 1000:.1f} | {percentile(values, 0.99) * 1000:.1f} | "
                     f"{max(values, default=0) * 1000:.1f} | {codes} |")
    every = [v for values in latencies.values() for v in values]
    lines.append(f"| **all** | {total} | {total / args.duration:.1f} | {percentile(every, 0.5) * 1000:.1f} | "
                 f"{percentile(every, 0.99) * 1000:.1f} | {max(every, default=0) * 1000:.1f} | |")
    fives = sum(c for s in statuses.values() for code, c in s.items() if code >= 500)
    lines += ["", f"- 5xx answers: {fives}; requests without an answer: "
                  f"{sum(s.get(0, 0) for s in statuses.values())}",
              f"- checkpoints at the end: {dict(sorted(final.items()))} (creates capped at {args.max_checkpoints}, "
              f"{args.checkpoint_rate:g}/s; {args.volume_kib} KiB volume)",
              f"- bank after the run: {bank_bytes / KIB:.0f} KiB; all-in-one peak RSS: {rss / 2**20:.0f} MiB"]
    if failures:
        lines += ["", f"First failures ({failed} in all):", *[f"    {f}" for f in failures[:10]]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
