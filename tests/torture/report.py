"""The torture run's table: kills per operation and phase, and the invariant failures of each trial."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from tests.torture.invariants import Failure

KINDS = ("protect", "restore", "verify", "delete", "gc")
#: Where a kill landed: the three thirds of a run still going, or after it had ended (which proves nothing).
MID_RUN = ("early", "middle", "late")
AFTER_END = "after end"
PHASES = (*MID_RUN, AFTER_END)


@dataclasses.dataclass
class Trial:
    number: int
    kind: str
    phase: str
    #: How far the run had got when it was killed (bytes for protect and restore, chunks swept for gc,
    #: elapsed time over the expected duration otherwise); None when it had ended.
    fraction: float | None
    #: What showed the phase: the status polled just before the kill and the record after the restart.
    evidence: str
    checkpoint_id: str | None = None
    seconds: float = 0.0
    failures: list[Failure] = dataclasses.field(default_factory=list)

    @property
    def mid_run(self) -> bool:
        return self.phase in MID_RUN


def phase_of(fraction: float | None) -> str:
    """The third of the run a kill landed in."""
    if fraction is None or fraction < 1 / 3:
        return "early"
    return "middle" if fraction < 2 / 3 else "late"


@dataclasses.dataclass
class Report:
    trials: list[Trial] = dataclasses.field(default_factory=list)
    #: Failures found by the checks that are no trial's (the initial one, the final full one).
    other_failures: list[Failure] = dataclasses.field(default_factory=list)
    settings: str = ""
    seconds: float = 0.0

    @property
    def failures(self) -> list[Failure]:
        return [f for t in self.trials for f in t.failures] + self.other_failures

    @property
    def mid_run(self) -> int:
        return sum(t.mid_run for t in self.trials)

    def table(self) -> str:
        counts: collections.Counter[tuple[str, str]] = collections.Counter((t.kind, t.phase) for t in self.trials)
        failures = collections.Counter(t.kind for t in self.trials for _ in t.failures)
        head = ["operation", "trials", *PHASES, "mid-run", "invariant failures"]
        rows = [head, ["---"] * len(head)]
        for kind in KINDS:
            total = sum(counts[kind, p] for p in PHASES)
            mid = sum(counts[kind, p] for p in MID_RUN)
            rows.append([kind, str(total), *(str(counts[kind, p]) for p in PHASES), _share(mid, total),
                         str(failures[kind])])
        total = len(self.trials)
        rows.append(["**all**", str(total), *(str(sum(counts[k, p] for k in KINDS)) for p in PHASES),
                     _share(self.mid_run, total), str(len(self.failures))])
        return "\n".join("| " + " | ".join(row) + " |" for row in rows)

    def markdown(self) -> str:
        lines = ["# Torture run", "", self.settings, "",
                 f"{len(self.trials)} trials in {self.seconds:.0f} s; {self.mid_run} kill(s) landed mid-run; "
                 f"{len(self.failures)} invariant failure(s).", "", self.table(), ""]
        if self.failures:
            lines += ["## Invariant failures", ""]
            lines += [f"- trial {t.number} ({t.kind}, {t.phase}): {f}" for t in self.trials for f in t.failures]
            lines += [f"- outside a trial: {f}" for f in self.other_failures]
            lines.append("")
        lines += ["## Trials", "", "| # | operation | phase | progress | evidence | checkpoint | s |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for t in self.trials:
            progress = "-" if t.fraction is None else f"{t.fraction:.0%}"
            lines.append(f"| {t.number} | {t.kind} | {t.phase} | {progress} | {t.evidence} | "
                         f"{(t.checkpoint_id or '-')[:8]} | {t.seconds:.1f} |")
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.markdown())


def _share(part: int, total: int) -> str:
    return f"{part} ({part / total:.0%})" if total else "0"


def summary(trials: Sequence[Trial]) -> str:
    """One line per trial, for the progress the runner prints."""
    return ", ".join(f"{t.kind}:{t.phase}" for t in trials)
