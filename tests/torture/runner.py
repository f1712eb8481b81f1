"""The torture runner: a random operation, a SIGKILL of the all-in-one while it runs, a restart, the invariants.

One real ``strongroom-all-in-one`` (tests/functional/harness.py) protects one loopback volume into
a bank of ``settings.bank`` (fs by default; swift and s3 through tests/functional/banks.py).  Each
trial picks protect, restore, verify, delete or garbage collection at random, starts it, kills the
process with SIGKILL at a random moment of the run, starts it again on the same state directory
(its start-up recovery ends what was running), runs a garbage collection pass with no chunk grace
period and checks :mod:`tests.torture.invariants`.

The phase a kill landed in is judged twice, honestly: by the run's status polled just before the
kill (still running, and how far) and by the service's own record after the restart (a run the
recovery ended as interrupted was running; one that ended by itself was not).  Kills are made to land
mid-run by a slow data path (small chunks, each an fsync'ed object, and zstd at level 15) and by
aiming at a random fraction of the run's expected duration, learnt from the runs seen so far.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import random
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from strongroom.bank_plugins.layout import BankLayout
from tests.functional.banks import (
    BankUnderTest,
    configure,
    create_plan,
    referenced_chunks,
    rewrite_blocks,
    sha256,
    start_checkpoint,
    stored_chunks,
    write_random_image,
)
from tests.functional.harness import BIN, AllInOne, MiB, wait_for
from tests.torture.invariants import Failure, Invariants
from tests.torture.report import AFTER_END, KINDS, Report, Trial, phase_of

SOURCE = "vol.img"
OWNER = "torture"
#: The slow data path: 64 KiB chunks (each one fsync'ed object of the fs bank) and zstd at level 15.
SLOW = {"chunk_size": 65536, "compression_level": 15}
#: What the all-in-one's start-up recovery writes into the records of the runs it ends.
INTERRUPTED = "interrupted"
POLL = 0.02


@dataclasses.dataclass(frozen=True)
class Settings:
    trials: int = 5
    seed: int = 1
    volume_mib: int = 16
    #: Restore every available checkpoint every this many trials (and at the end); otherwise only
    #: the checkpoints the trial touched.
    full_check_every: int = 10
    bank: str = "fs"
    report: Path | None = None

    @classmethod
    def from_env(cls, trials: int, seed: int | None = None, volume_mib: int | None = None) -> Settings:
        """``TORTURE_*`` settings; without ``TORTURE_SEED``, ``seed`` or else a random one (likewise the
        volume's size)."""
        env = os.environ
        return cls(trials=int(env.get("TORTURE_TRIALS", trials)),
                   seed=int(env.get("TORTURE_SEED", seed if seed is not None else random.randrange(100000))),
                   volume_mib=int(env.get("TORTURE_VOLUME_MIB", volume_mib or cls.volume_mib)),
                   full_check_every=int(env.get("TORTURE_FULL_CHECK_EVERY", cls.full_check_every)),
                   bank=env.get("TORTURE_BANK", cls.bank),
                   report=Path(env.get("TORTURE_REPORT", ".torture/report.md")))

    def describe(self) -> str:
        return (f"Settings: {self.trials} trials, seed {self.seed}, {self.bank} bank, a {self.volume_mib} MiB "
                f"volume, {SLOW['chunk_size'] // 1024} KiB chunks at zstd level {SLOW['compression_level']}, "
                f"every available checkpoint restored every {self.full_check_every} trials and at the end.")


@dataclasses.dataclass
class Observation:
    """A run's state as a poll saw it."""

    running: bool
    status: str
    fraction: float | None = None
    at: float = dataclasses.field(default_factory=time.monotonic)
    #: How long the run had gone when seen, against its expected duration.
    note: str = ""


class Torture:
    """Runs the trials of ``settings`` in ``workdir`` (state directory, bank, logs); :meth:`run` reports."""

    def __init__(self, settings: Settings, bank: BankUnderTest, workdir: Path,
                 say: Callable[[str], None] = lambda line: print(line, flush=True)) -> None:
        self.settings = settings
        self.bank_under_test = bank
        self.workdir = workdir
        self.say = say
        self.rng = random.Random(settings.seed)
        self.service, self.provider = configure(workdir, bank, OWNER, volume=SLOW, protection={"gc_interval": 0})
        self.bank = bank.bank()  # after configure: it opens sealed objects with the service's KEK file
        self.image = self.service.volumes / SOURCE
        self.hashes: dict[str, str] = {}
        #: Available checkpoints restores, verifications and deletes may use.
        self.pool: list[str] = []
        #: Expected seconds of each kind of run (from the runs seen so far).
        self.expected: dict[str, float] = {}
        self.invariants = Invariants(self.service, self.provider, self.bank, frozenset({SOURCE}), self.hashes)
        self.log = (workdir / "all-in-one.log").open("a")
        self.plan = ""
        self.revision = 0
        self.restored = 0

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> Report:
        report = Report(settings=self.settings.describe())
        started = time.monotonic()
        self.service.start()
        try:
            self._set_up(report)
            bag: list[str] = []
            for number in range(1, self.settings.trials + 1):
                if not bag:  # every kind once in each round of five, in a random order
                    bag = self.rng.sample(KINDS, len(KINDS))
                trial = self._trial(number, bag.pop())
                report.trials.append(trial)
                self.say(f"trial {number}/{self.settings.trials}: {trial.kind:<7} {trial.phase:<9} "
                         f"({trial.evidence}) {trial.seconds:5.1f} s, {len(trial.failures)} failure(s)"
                         + "".join(f"\n    {f}" for f in trial.failures))
            report.other_failures += self._check(None)
        finally:
            self._stop()
            self.log.close()
            report.seconds = time.monotonic() - started
        return report

    def _set_up(self, report: Report) -> None:
        write_random_image(self.image, self.settings.volume_mib * MiB, seed=self.settings.seed)
        self.plan = create_plan(self.service.api(), self.provider, SOURCE)
        self._make_checkpoint()
        report.other_failures += self._check(None)
        self.expected["restore"] = statistics.median(self.invariants.restore_seconds)
        self.expected["verify"] = self._timed_verify(self.pool[0])
        self.expected["delete"] = self.expected["restore"]

    def _trial(self, number: int, kind: str) -> Trial:
        started = time.monotonic()
        if kind in ("restore", "verify", "delete") and not self.pool:
            self._make_checkpoint()
        trial = getattr(self, f"_{kind}")(number)
        full = number % self.settings.full_check_every == 0
        touched = [trial.checkpoint_id] if trial.checkpoint_id else self.rng.sample(self.pool, min(1, len(self.pool)))
        trial.failures += self._check(None if full else touched)
        trial.seconds = time.monotonic() - started
        return trial

    # -- the operations -----------------------------------------------------------------------

    def _protect(self, number: int) -> Trial:
        cid = self._start_protect()
        seen = self._watch_for_time("protect", lambda: self._checkpoint(cid, "protecting"))
        self._kill_and_restart()
        after = self._get(f"providers/{self.provider}/checkpoints/{cid}", "checkpoint")
        interrupted = self._log_interrupted(cid, "protect")
        if after["status"] == "available":
            self.pool.append(cid)
        return self._judged(number, "protect", seen, interrupted,
                            _evidence(seen, after["status"]), cid, seen.fraction)

    def _restore(self, number: int) -> Trial:
        cid = self.rng.choice(self.pool)
        self.restored += 1
        name = f"restored-{self.restored}.img"
        body = self._post("restores", {"restore": {
            "provider_id": self.provider, "checkpoint_id": cid,
            "parameters": {"OS::Cinder::Volume": {"restore_name": name}}}})
        rid = body["restore"]["id"]
        seen = self._watch_for_time("restore", lambda: self._run("restores", rid, "restore"))
        self._kill_and_restart()
        after = self._get(f"restores/{rid}", "restore")
        trial = self._judged(number, "restore", seen, self._run_interrupted(after),
                             _evidence(seen, after["status"]), cid, seen.fraction)
        target = self.service.volumes / name
        if after["status"] == "success":  # it ended before the kill: what it published must be whole
            if not target.exists() or sha256(target) != self.hashes[cid]:
                trial.failures.append(Failure("available restores byte-identical",
                                              f"restore {rid} ended success but {name} differs from its source"))
        target.unlink(missing_ok=True)
        return trial

    def _verify(self, number: int) -> Trial:
        cid = self.rng.choice(self.pool)
        body = self._post("verifications", {"verification": {"provider_id": self.provider, "checkpoint_id": cid}})
        vid = body["verification"]["id"]
        seen = self._watch_for_time("verify", lambda: self._run("verifications", vid, "verification"))
        self._kill_and_restart()
        after = self._get(f"verifications/{vid}", "verification")
        trial = self._judged(number, "verify", seen, self._run_interrupted(after),
                             _evidence(seen, after["status"]), cid, seen.fraction)
        if after["status"] == "fail" and not self._run_interrupted(after):
            trial.failures.append(Failure("available restores byte-identical",
                                          f"verification {vid} of {cid} failed: {after['resources_reason']}"))
        return trial

    def _delete(self, number: int) -> Trial:
        cid = self.rng.choice(self.pool)
        response = requests.delete(f"{self.service.api()}/providers/{self.provider}/checkpoints/{cid}", timeout=30)
        assert response.status_code == 202, response.text
        seen = self._watch_for_time("delete", lambda: self._checkpoint(cid, "deleting", progress=False))
        self._kill_and_restart()
        after = self._get(f"providers/{self.provider}/checkpoints/{cid}", "checkpoint")
        if after["status"] != "available":
            self.pool.remove(cid)
        return self._judged(number, "delete", seen, self._log_interrupted(cid, "delete"),
                            _evidence(seen, after["status"]), cid, seen.fraction)

    def _gc(self, number: int) -> Trial:
        """Garbage collection with something to collect: a protect killed half way first (its zombie is
        reclaimed by the restart, its chunks are left to the sweep), then ``strongroom-manage bank gc``,
        killed with the all-in-one (a host going down) at a random moment of its pass."""
        doomed = self._start_protect(every=2)
        target = self.rng.uniform(0.2, 0.7)
        self._watch(lambda: self._checkpoint(doomed, "protecting"), lambda obs: (obs.fraction or 0.0) >= target)
        self._kill_and_restart()
        if self._get(f"providers/{self.provider}/checkpoints/{doomed}", "checkpoint")["status"] == "available":
            self.pool.append(doomed)  # it ended before the kill: its chunks are not garbage
        garbage = self._garbage()
        before = len(garbage)
        gc = subprocess.Popen([str(BIN / "strongroom-manage"), "--config-file", str(self.service.config_file),
                               "bank", "gc", "--grace", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
        # Its pass starts once it holds its own lease in the bank.  A quarter of the kills aim at the
        # start of the pass (zombies, manifests read), the rest at a fraction of the garbage swept.
        leased = self._watch(lambda: Observation(gc.poll() is None, "starting"),
                             lambda obs: self._holds_lease(gc.pid), timeout=120)

        def swept() -> Observation:
            running = gc.poll() is None
            left = len(stored_chunks(self.bank, "demo") & garbage)
            return Observation(running, "collecting", 1 - left / before if before else None)

        if self.rng.random() < 0.25:
            delay = self.rng.uniform(0.0, 0.3)
            seen = self._watch(swept, lambda obs: obs.at - leased.at >= delay)
        else:
            target = self.rng.uniform(0.0, 0.9)
            seen = self._watch(swept, lambda obs: (obs.fraction or 0.0) > target)
        gc.send_signal(signal.SIGKILL)
        output, _ = gc.communicate(timeout=60)
        self.log.write(output)
        self._kill_and_restart()
        killed = gc.returncode == -signal.SIGKILL
        fraction = seen.fraction if killed else None
        phase = phase_of(fraction) if killed else AFTER_END
        done = round((seen.fraction or 0.0) * before)
        evidence = (f"gc {'killed' if killed else f'exited {gc.returncode}'} {seen.at - leased.at:.1f} s into its "
                    f"pass, {done}/{before} garbage chunks swept")
        return Trial(number, "gc", phase, fraction, evidence, None)

    # -- kills, restarts, checks ------------------------------------------------------------------

    def _kill_and_restart(self) -> None:
        self.service.stop(signal.SIGKILL)
        self.log.writelines(self.service.output)
        self.service = AllInOne(state_dir=self.service.state_dir, config_file=self.service.config_file)
        self.service.start()
        self.invariants.service = self.service

    def _stop(self) -> None:
        if self.service.process is not None and self.service.process.poll() is None:
            self.service.stop()
            self.log.writelines(self.service.output)

    def _check(self, restore: list[str] | None) -> list[Failure]:
        """A garbage collection pass with no grace period (as an operator runs it), then every invariant."""
        from strongroom.cmd import manage

        said = io.StringIO()
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):  # the command, run in-process
            code = manage.main(["--config-file", str(self.service.config_file), "bank", "gc", "--grace", "0"])
        self.log.write(said.getvalue())
        failures = []
        if code != 0:
            failures.append(Failure("garbage collection", f"exit {code}: {said.getvalue().strip()[-300:]}"))
        failures += self.invariants.check(restore)
        checkpoints = self.invariants.checkpoints()
        self.pool = [cid for cid in self.pool if checkpoints.get(cid, {}).get("status") == "available"]
        return failures

    def _judged(self, number: int, kind: str, seen: Observation, interrupted: bool, evidence: str,
                cid: str | None, fraction: float | None) -> Trial:
        """Mid-run only if the run was still going at the last poll before the kill *and* the service's
        record, after the restart, says the recovery ended it; otherwise it had ended by itself."""
        if seen.running and interrupted:
            return Trial(number, kind, phase_of(fraction), fraction, evidence, cid)
        return Trial(number, kind, AFTER_END, None, evidence, cid)

    # -- starting and watching runs ------------------------------------------------------------------

    def _make_checkpoint(self) -> str:
        """An available checkpoint for the pool, protected without a kill."""
        started = time.monotonic()
        cid = self._start_protect()
        body = wait_for(f"{self.service.api()}/providers/{self.provider}/checkpoints/{cid}", "checkpoint",
                        {"available", "error"}, timeout=600)
        assert body["status"] == "available", body
        # The first protect copies the whole volume; later ones a revision of it (the trials' kind).
        seconds = time.monotonic() - started
        self.expected["protect"] = seconds if self.revision > 1 else seconds / 2
        self.pool.append(cid)
        return cid

    def _start_protect(self, every: int = 4) -> str:
        """A protect of a new revision of the volume: every ``every``-th MiB rewritten, so that it has
        chunks of its own."""
        self.revision += 1
        if self.revision > 1:
            rewrite_blocks(self.image, every=every, seed=self.settings.seed * 1000 + self.revision, block=MiB)
        digest = sha256(self.image)
        cid = start_checkpoint(self.service.api(), self.provider, self.plan)
        self.hashes[cid] = digest
        return cid

    def _timed_verify(self, cid: str) -> float:
        started = time.monotonic()
        body = self._post("verifications", {"verification": {"provider_id": self.provider, "checkpoint_id": cid}})
        done = wait_for(f"{self.service.api()}/verifications/{body['verification']['id']}", "verification",
                        {"success", "fail"}, timeout=600)
        assert done["status"] == "success", done
        return time.monotonic() - started

    def _watch(self, poll: Callable[[], Observation], until: Callable[[Observation], bool],
               timeout: float = 600) -> Observation:
        """Poll until the run ends or ``until`` holds; the last observation (the one just before a kill)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = poll()
            if not seen.running or until(seen) or time.monotonic() > deadline:
                return seen
            time.sleep(POLL)

    def _watch_for_time(self, kind: str, poll: Callable[[], Observation]) -> Observation:
        """Poll until a random fraction of the expected duration of ``kind`` has passed (or the run ends).
        The fraction is the run's byte progress when it reports one, else the elapsed share."""
        started = time.monotonic()
        expected = self.expected[kind]
        delay = self.rng.uniform(0.05, 0.8) * expected
        seen = self._watch(poll, lambda obs: obs.at - started >= delay)
        seen.note = f"at {seen.at - started:.1f} s of ~{expected:.1f} s expected"
        if seen.running:
            if seen.fraction is None:
                seen.fraction = min(0.99, (seen.at - started) / expected)
        else:  # it ended first: aim earlier next time
            self.expected[kind] = max(0.1, seen.at - started)
        return seen

    def _checkpoint(self, cid: str, running: str, progress: bool = True) -> Observation:
        """``progress``: the checkpoint's byte progress is its protect's (a delete reports none)."""
        body = self._get(f"providers/{self.provider}/checkpoints/{cid}", "checkpoint")
        return Observation(body["status"] == running, body["status"],
                           _fraction(body.get("progress") or {}) if progress else None)

    def _run(self, collection: str, rid: str, key: str) -> Observation:
        body = self._get(f"{collection}/{rid}", key)
        return Observation(body["status"] == "in_progress", body["status"],
                           _fraction((body.get("extra_info") or {}).get("progress") or {}))

    def _log_interrupted(self, cid: str, operation: str) -> bool:
        """Did the restart's recovery end this checkpoint's ``operation`` log as interrupted?"""
        logs = requests.get(f"{self.service.api()}/operation_logs",
                            params={"checkpoint_id": cid, "operation_type": operation}, timeout=30).json()
        return any(INTERRUPTED in (log.get("error_info") or "") for log in logs["operation_logs"])

    @staticmethod
    def _run_interrupted(body: dict[str, Any]) -> bool:
        return body["status"] == "fail" and INTERRUPTED in str((body.get("resources_reason") or {}).get("_", ""))

    def _garbage(self) -> set[str]:
        referenced: set[str] = set()
        for cid in self.pool:
            referenced |= referenced_chunks(self.bank, cid)
        return stored_chunks(self.bank, "demo") - referenced

    def _holds_lease(self, pid: int) -> bool:
        """Does the ``strongroom-manage`` process ``pid`` hold its lease (owner ``manage-<host>-<pid>-...``)?"""
        owners = (BankLayout.owner_of_lease(key) or "" for key in self.bank.list(BankLayout.LEASES))
        return any(owner.startswith("manage-") and f"-{pid}-" in owner for owner in owners)

    def _get(self, path: str, key: str) -> dict[str, Any]:
        response = requests.get(f"{self.service.api()}/{path}", timeout=30)
        assert response.status_code == 200, response.text
        return dict(response.json()[key])

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(f"{self.service.api()}/{path}", json=body, timeout=30)
        assert response.status_code == 200, response.text
        return dict(response.json())


def _evidence(seen: Observation, after: str) -> str:
    return f"{seen.status} before the kill, {after} after" + (f"; seen {seen.note}" if seen.note else "")


def _fraction(progress: dict[str, Any]) -> float | None:
    total = progress.get("bytes_total") or 0
    return min(1.0, progress.get("bytes_done", 0) / total) if total else None

