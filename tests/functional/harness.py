"""Fixtures that run the real ``strongroom-all-in-one`` program on an ephemeral port."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

BIN = Path(sys.executable).parent
PROVIDER_ID = "7b1c6a4e-2f0d-4c8e-9a51-3e2d8f6b0c11"  # providers.d/local.conf
MiB = 1024 * 1024


@dataclasses.dataclass
class AllInOne:
    state_dir: Path
    config_file: Path
    process: subprocess.Popen[str] | None = None
    url: str = ""
    output: list[str] = dataclasses.field(default_factory=list)
    _drain: threading.Thread | None = dataclasses.field(default=None, repr=False)

    @property
    def volumes(self) -> Path:
        return self.state_dir / "volumes"

    @property
    def bank(self) -> Path:
        return self.state_dir / "bank"

    def start(self, timeout: float = 60.0) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [str(BIN / "strongroom-all-in-one"), "--config-file", str(self.config_file)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError("all-in-one exited during start-up:\n" + "".join(self.output))
            self.output.append(line)
            match = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
            if match:
                self.url = match.group(1)
                # Keep reading its output: a full pipe would block the process's logging.
                self._drain = threading.Thread(target=self._read_output, args=(self.process,), daemon=True)
                self._drain.start()
                return
        raise AssertionError("all-in-one did not start in time:\n" + "".join(self.output))

    def _read_output(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.output.append(line)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self._drain is not None:
            self._drain.join(timeout=10)
            self._drain = None
        return self.process.returncode

    @property
    def admin_token(self) -> str:
        """The administrator token the all-in-one generated into its state directory."""
        return (self.state_dir / "admin-token").read_text().strip()

    def admin_headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.admin_token}

    def api(self, project: str = "demo") -> str:
        return f"{self.url}/v1/{project}"


@contextlib.contextmanager
def running_all_in_one(root: Path, extra: str = "") -> Iterator[AllInOne]:
    """An all-in-one with the default configuration and its state under ``root``, stopped at the end;
    ``extra`` is more ``[DEFAULT]`` lines."""
    state = root / "state"
    (state / "volumes").mkdir(parents=True)
    conf = root / "strongroom.conf"
    conf.write_text(f"[DEFAULT]\nstate_dir = {state}\n{extra}[api]\nbind_port = 0\n")
    service = AllInOne(state_dir=state, config_file=conf)
    service.start()
    try:
        yield service
    finally:
        if service.process is not None and service.process.poll() is None:
            service.stop()


@pytest.fixture
def all_in_one(tmp_path: Path) -> Iterator[AllInOne]:
    with running_all_in_one(tmp_path) as service:
        yield service


def keystone_all_in_one(ks: Any, root: Path) -> AllInOne:
    """An all-in-one (not started) under keystonemiddleware against ``ks`` (a
    :class:`tests.servers.keystone.KeystoneServer`), its state under ``root`` with a 2 MiB loopback volume
    ``disk.img``; Keystone's admin is the trustee scheduled runs would act through."""
    state = root / "state"
    (state / "volumes").mkdir(parents=True)
    write_mixed_image(state / "volumes" / "disk.img", size=2 * MiB)
    authtoken = "".join(f"{name} = {value}\n" for name, value in ks.authtoken_options().items())
    conf = root / "strongroom.conf"
    conf.write_text(f"[DEFAULT]\nstate_dir = {state}\nauth_strategy = keystone\n[api]\nbind_port = 0\n"
                    f"[keystone_authtoken]\n{authtoken}"
                    f"[trustee]\nauth_url = {ks.url}\nusername = admin\npassword = {ks.admin_password}\n")
    return AllInOne(state_dir=state, config_file=conf)


def write_mixed_image(path: Path, size: int = 24 * MiB, seed: int = 7) -> None:
    """Random data, text, written zeros and a hole: what the tour protects."""
    import random

    rng = random.Random(seed)
    with open(path, "wb") as fh:
        fh.truncate(size)
        fh.seek(0)
        fh.write(rng.randbytes(5 * MiB))
        fh.write((b"The quick brown fox jumps over the lazy dog. " * 200000)[: 3 * MiB])
        fh.write(b"\0" * (4 * MiB))
        # 12-18 MiB stays a hole
        fh.seek(18 * MiB + 12345)
        fh.write(rng.randbytes(2 * MiB))


def wait_for(url: str, key: str, done: set[str], timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = requests.get(url, timeout=10).json()[key]
        if body["status"] in done:
            return body
        time.sleep(0.1)
    raise AssertionError(f"{url} did not reach {done} in {timeout} s")


def providers_once_judged(api: str, provider_id: str, timeout: float = 30.0) -> dict[str, dict]:
    """``GET /providers`` by id, once ``provider_id`` has a ``status_reason`` (its bank or backend was found
    unusable) or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        listed = {p["id"]: p for p in requests.get(f"{api}/providers", timeout=10).json()["providers"]}
        if listed[provider_id]["status_reason"] or time.monotonic() > deadline:
            return listed
        time.sleep(0.2)


def loopback_snapshots(snapshot_dir: Path) -> dict[str, dict]:
    """The loopback backend's listed snapshots under ``snapshot_dir`` (``.snapshots``): id -> sidecar."""
    import json

    if not snapshot_dir.is_dir():
        return {}
    return {p.name[: -len(".json")]: json.loads(p.read_text()) for p in snapshot_dir.iterdir()
            if p.name.endswith(".json") and not p.name.startswith(".")}


def retained_bases(snapshot_dir: Path) -> dict[str, str]:
    """The loopback snapshots kept as their volume's next base: snapshot id -> checkpoint id."""
    return {sid: info["tags"]["strongroom.checkpoint"] for sid, info in loopback_snapshots(snapshot_dir).items()
            if info.get("tags", {}).get("strongroom.base") == "1"}
