"""The filesystem-image benchmark's short version: a 64 MiB ext4 image with a few MB of files, through the real
all-in-one and CLI on the loopback backend, three protects (full, ~1% change, nothing changed) and a restore.

It asserts what the benchmark's user relies on, never a timing: it runs to the end, the restore matched the
image (the script exits 1 otherwise), the change really changed the image and was stored, and a protect with
nothing changed stored next to nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.functional
ROOT = Path(__file__).resolve().parents[2]


def test_fsimage_benchmark_smoke(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        pytest.skip("the benchmark loop-mounts an ext4 image: root and e2fsprogs needed")
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_fsimage.py"), "--bench-dir", str(tmp_path),
         "--size-gib", "0.0625", "--fill-gb", "0.02", "--runs", "3", "--only", "loopback",
         "--source", str(ROOT / "strongroom")],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    report = (tmp_path / "fsimage-results.md").read_text()
    assert "## loopback" in report and "| restore |" in report and "sha256 OK" in report
    figures = json.loads((tmp_path / "fsimage-results-0.0625GiB.json").read_text())
    ours = figures["ours"]["loopback"]
    assert [set(run) >= {"seconds", "peak_rss", "stored"} for run in ours["runs"]] == [True] * 3
    full, change, none = (ours["results"][op]["stored"] for op in ("full", "change", "none"))
    assert figures["changes"][0]["bytes"] > 0 and figures["changes"][0]["deleted"] > 0
    assert change > 0 and full > 0
    assert none < min(change, full) / 10, (full, change, none)  # nothing changed: a manifest, no chunks
    assert all(run["peak_rss"] > 0 for run in ours["runs"])
    assert not (tmp_path / "fsimage").exists()  # without --keep the run's state is removed
