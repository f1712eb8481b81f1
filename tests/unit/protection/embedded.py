"""The embedded service in this process, for bank fault tests: the real API on port 0, the real protection
service (fs bank, loopback volumes) over the in-process transport, sqlite under a tmp state directory.

Faults are injected into the provider's bank (``stack.faults``: a :class:`FaultyBank` around the real fs
bank, which every part of the service writes through) or made real (a read-only or full filesystem under the
bank, see :func:`mounted`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from strongroom import backend

backend.init()  # threading backend for oslo.service before oslo.messaging is imported (test harness only)

from strongroom.bank_plugins import Bank  # noqa: E402
from strongroom.config import new_conf  # noqa: E402
from strongroom.protection.checkpoint import CheckpointStore  # noqa: E402
from strongroom.protection.providers import Provider  # noqa: E402
from strongroom.service import Services  # noqa: E402
from strongroom.testing.faults import FaultyBank  # noqa: E402

PROVIDER_ID = "7b1c6a4e-2f0d-4c8e-9a51-3e2d8f6b0c11"
PROJECT = "demo"
VOLUME = "OS::Cinder::Volume"
CHUNK = 65536
PROVIDER = """
[provider]
name = Local
id = {id}
plugin = volume
bank = fs
enabled = true

[fs]
path = {bank}

[volume]
block_backend = loopback
chunk_size = {chunk}
workers = 2

[loopback]
path = {volumes}
"""


@dataclasses.dataclass
class Embedded:
    services: Services
    state: Path
    bank_dir: Path
    faults: FaultyBank

    @property
    def url(self) -> str:
        return f"{self.services.url}/v1/{PROJECT}"

    @property
    def volumes(self) -> Path:
        return self.state / "volumes"

    @property
    def provider(self) -> Provider:
        return self.services.registry.get(PROVIDER_ID)  # type: ignore[no-any-return]

    @property
    def bank(self) -> Bank:
        return self.provider.bank

    @property
    def store(self) -> CheckpointStore:
        return CheckpointStore(self.bank)

    @property
    def db(self) -> Any:
        return self.services.db

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.url + path, timeout=30, **kwargs)

    def checkpoint_url(self, checkpoint_id: str) -> str:
        return f"/providers/{PROVIDER_ID}/checkpoints/{checkpoint_id}"

    def volume(self, name: str, data: bytes, size: int = 4 * CHUNK) -> str:
        path = self.volumes / name
        with open(path, "wb") as fh:
            fh.truncate(size)
            fh.write(data)
        return name

    def plan(self, *volumes: str) -> str:
        resp = self.call("POST", "/plans", json={"plan": {
            "name": "p", "provider_id": PROVIDER_ID, "parameters": {},
            "resources": [{"id": v, "type": VOLUME, "name": v} for v in volumes]}})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["plan"]["id"])

    def protect(self, plan_id: str) -> requests.Response:
        return self.call("POST", f"/providers/{PROVIDER_ID}/checkpoints",
                         json={"checkpoint": {"plan_id": plan_id}})

    def protected(self, plan_id: str) -> dict[str, Any]:
        """A protect run to its end: the checkpoint as the API shows it."""
        resp = self.protect(plan_id)
        assert resp.status_code == 200, resp.text
        return self.wait_checkpoint(resp.json()["checkpoint"]["id"])

    def checkpoint(self, checkpoint_id: str) -> dict[str, Any]:
        resp = self.call("GET", self.checkpoint_url(checkpoint_id))
        assert resp.status_code == 200, resp.text
        return resp.json()["checkpoint"]  # type: ignore[no-any-return]

    def wait_checkpoint(self, checkpoint_id: str) -> dict[str, Any]:
        self.services.manager.wait_idle(60)
        return self.checkpoint(checkpoint_id)

    def start_run(self, kind: str, checkpoint_id: str, **body: Any) -> requests.Response:
        collection = "restores" if kind == "restore" else "verifications"
        return self.call("POST", f"/{collection}", json={kind: {
            "provider_id": PROVIDER_ID, "checkpoint_id": checkpoint_id, "parameters": {}, **body}})

    def run(self, kind: str, checkpoint_id: str, **body: Any) -> dict[str, Any]:
        """A restore or verification to its end: its record as the API shows it."""
        resp = self.start_run(kind, checkpoint_id, **body)
        assert resp.status_code == 200, resp.text
        run_id = resp.json()[kind]["id"]
        self.services.manager.wait_idle(60)
        collection = "restores" if kind == "restore" else "verifications"
        shown = self.call("GET", f"/{collection}/{run_id}")
        assert shown.status_code == 200, shown.text
        return shown.json()[kind]  # type: ignore[no-any-return]

    def agree(self, checkpoint_id: str) -> str:
        """Bank index and catalogue row say the same status (returned); no marker is left behind."""
        in_bank = self.store.read(checkpoint_id)
        row = self.db.get_checkpoint(checkpoint_id)
        assert (in_bank.status, in_bank.status_reason) == (row.status, row.status_reason), (in_bank, row)
        assert not [m for m in self.store.active_markers() if m.checkpoint_id == checkpoint_id]
        return str(row.status)


@contextlib.contextmanager
def embedded(tmp_path: Path, bank_dir: Path | None = None, **protection: Any) -> Iterator[Embedded]:
    state = tmp_path / "state"
    (state / "volumes").mkdir(parents=True)
    bank = bank_dir or state / "bank"
    providers = tmp_path / "providers.d"
    providers.mkdir()
    (providers / "local.conf").write_text(PROVIDER.format(id=PROVIDER_ID, bank=bank, chunk=CHUNK,
                                                          volumes=state / "volumes"))
    conf = new_conf(overrides={
        "DEFAULT": {"state_dir": str(state), "providers_dir": str(providers), "heartbeat_interval": 60},
        "api": {"bind_port": 0, "threads": 4},
        "protection": {"gc_interval": 0, "bank_retry_attempts": 2, "bank_retry_initial_delay": 0,
                       **protection},
    })
    services = Services(conf, transport_url="fake://", embedded=True)
    services.start()
    try:
        provider = services.registry.get(PROVIDER_ID)
        faults = FaultyBank(provider.bank.plugin)
        provider.bank.plugin = faults  # every part of the service writes through the one Bank object
        yield Embedded(services, state, bank, faults)
    finally:
        services.stop(graceful=True, timeout=30)


def _run(*argv: str) -> bool:
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


@contextlib.contextmanager
def mounted(where: Path, size: str = "4m") -> Iterator[Path]:
    """A small tmpfs at ``where`` (root only: skipped elsewhere, where the fault fakes stand in)."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)):
        pytest.skip("needs root to mount a small filesystem (the FaultyBank tests cover the same errors)")
    try:
        yield where
    finally:
        for _ in range(50):
            if _run("umount", str(where)):
                break
            time.sleep(0.1)


def remount(where: Path, *, read_only: bool) -> None:
    assert _run("mount", "-o", f"remount,{'ro' if read_only else 'rw'}", str(where))
