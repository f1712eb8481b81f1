"""Banks for functional tests: an fs directory, a container of the real Swift, a bucket of moto_server.

Each test gets a fresh bank, a provider file for it (short lease windows) and
an all-in-one configuration naming the protection service's owner id, so that
a second process is a different lease holder, as a second protection service is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from strongroom.bank_plugins import Bank
from strongroom.bank_plugins.base import BankPlugin
from strongroom.bank_plugins.layout import BankLayout
from strongroom.bank_plugins.lease import LeaseWindows
from strongroom.datamover import manifest_digests
from strongroom.protection.checkpoint import CheckpointStore
from tests.functional.harness import AllInOne, MiB

#: Short windows: a dead writer's lease expires within seconds, while a busy live writer
#: (renewing every 2 s) keeps 4 s of slack before its validity runs out.
WINDOWS = LeaseWindows(expire=8, renew=2, validity=2)
BANK_KINDS = ["fs", "swift", "s3"]


@dataclasses.dataclass
class BankUnderTest:
    kind: str
    options: dict[str, Any]
    make_plugin: Callable[[dict[str, Any]], BankPlugin]
    #: The state directory of the service that writes the bank (:func:`configure` sets it): its KEK file
    #: is what :meth:`bank` opens encrypted checkpoints with.
    state_dir: Path | None = None

    def plugin(self) -> BankPlugin:
        return self.make_plugin(self.options)

    def bank(self) -> Bank:
        """The bank as the service sees it: sealed objects opened with the service's keys (read lazily)."""
        bank = Bank(self.plugin(), name=self.kind)
        if self.state_dir is not None:
            from strongroom import config, keys
            from strongroom.bank_plugins.keyring import Keyring

            conf = config.new_conf(overrides={"DEFAULT": {"state_dir": str(self.state_dir)}})
            bank.keyring = Keyring(bank, keys.kek_source(conf))
        return bank

    def section(self, windows: LeaseWindows = WINDOWS, **overrides: Any) -> str:
        options = {**self.options, **overrides, "lease_expire_window": windows.expire,
                   "lease_renew_window": windows.renew, "lease_validity_window": windows.validity}
        lines = [f"[{self.kind}]"] + [f"{key} = {_ini(value)}" for key, value in options.items()]
        return "\n".join(lines) + "\n"


def _ini(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def bank_under_test(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> BankUnderTest:
    """A fresh, empty bank of ``kind``; the servers start only when a test asks for them."""
    if kind == "fs":
        from strongroom.bank_plugins.fs import FilesystemBank

        return BankUnderTest("fs", {"path": str(tmp_path / "fs-bank")}, lambda o: FilesystemBank(o))
    if kind == "swift":
        from strongroom.bank_plugins.swift import SwiftBank

        swift = request.getfixturevalue("swift_server")
        return BankUnderTest("swift", swift.bank_options(swift.new_container("functional")), lambda o: SwiftBank(o))
    if kind == "s3":
        from strongroom.bank_plugins.s3 import S3Bank

        moto = request.getfixturevalue("moto_server")
        return BankUnderTest("s3", moto.bank_options(moto.new_bucket("functional")), lambda o: S3Bank(o))
    raise ValueError(kind)


def configure(tmp_path: Path, bank: BankUnderTest, owner_id: str, *, bank_overrides: dict[str, Any] | None = None,
              protection: dict[str, Any] | None = None, volume: dict[str, Any] | None = None,
              windows: LeaseWindows = WINDOWS, name: str = "strongroom.conf",
              provider: dict[str, Any] | None = None) -> tuple[AllInOne, str]:
    """An all-in-one (not started) whose one provider keeps loopback volumes in ``bank``.

    ``volume`` sets options of the volume plugin: ``compression_level = 15`` makes a
    protect of random data slow enough (about 50 MiB/s here) to stop it half way.
    """
    state = tmp_path / "state"
    (state / "volumes").mkdir(parents=True, exist_ok=True)
    bank.state_dir = state
    providers = tmp_path / "providers.d"
    providers.mkdir(exist_ok=True)
    provider_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"strongroom-test/{bank.kind}"))
    (providers / "test.conf").write_text(
        f"[provider]\nname = Test {bank.kind}\nid = {provider_id}\nplugin = volume\nbank = {bank.kind}\n"
        + "".join(f"{k} = {v}\n" for k, v in (provider or {}).items())
        + "\n[volume]\nblock_backend = loopback\nworkers = 3\n"
        + "".join(f"{k} = {v}\n" for k, v in (volume or {}).items())
        + "\n[loopback]\npath = {state_dir}/volumes\n\n"
        + bank.section(windows, **(bank_overrides or {})))
    settings = {"owner_id": owner_id, "gc_interval": 1, "gc_chunk_grace_period": 0,
                "bank_retry_initial_delay": 0.2, "bank_retry_max_delay": 2, **(protection or {})}
    conf = tmp_path / name
    conf.write_text(f"[DEFAULT]\nstate_dir = {state}\nproviders_dir = {providers}\n[api]\nbind_port = 0\n"
                    "[protection]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    return AllInOne(state_dir=state, config_file=conf), provider_id


#: Random bytes mapped onto 16 letters: 4 bits of entropy per byte, so every chunk is new (no dedup)
#: yet compressible, and ``compression_level = 15`` is slow on it.  Pure random bytes would not do:
#: the data mover stores chunks its probe finds incompressible without compressing them at all.
_SIXTEEN_LETTERS = bytes(b"abcdefghijklmnop"[i & 15] for i in range(256))


def random_compressible(rng: random.Random, n: int) -> bytes:
    """``n`` unique, compressible bytes (see :data:`_SIXTEEN_LETTERS`)."""
    return rng.randbytes(n).translate(_SIXTEEN_LETTERS)


def write_random_image(path: Path, size: int, seed: int) -> str:
    """A raw image of random (compressible) bytes; returns its sha256."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        for offset in range(0, size, 16 * MiB):
            piece = random_compressible(rng, min(16 * MiB, size - offset))
            digest.update(piece)
            fh.write(piece)
    return digest.hexdigest()


def rewrite_blocks(path: Path, every: int, seed: int, block: int = 4 * MiB) -> None:
    """Overwrite every ``every``-th block with new random bytes (so a new checkpoint has unique chunks)."""
    rng = random.Random(seed)
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        for offset in range(0, size, block * every):
            fh.seek(offset)
            fh.write(random_compressible(rng, block))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while piece := fh.read(8 * MiB):
            digest.update(piece)
    return digest.hexdigest()


def referenced_chunks(bank: Bank, checkpoint_id: str) -> set[str]:
    store = CheckpointStore(bank)
    return {d for section in store.data_sections(checkpoint_id) for d in manifest_digests(section)}


def stored_chunks(bank: Bank, project: str) -> set[str]:
    return {key.rsplit("/", 1)[1] for key in bank.iter(BankLayout.chunks_prefix(project) + "/")}


def create_plan(api: str, provider_id: str, volume: str) -> str:
    response = requests.post(f"{api}/plans", json={"plan": {
        "name": volume, "provider_id": provider_id, "parameters": {},
        "resources": [{"id": volume, "type": "OS::Cinder::Volume", "name": volume}]}}, timeout=30)
    assert response.status_code == 200, response.text
    return str(response.json()["plan"]["id"])


def start_checkpoint(api: str, provider_id: str, plan_id: str) -> str:
    response = requests.post(f"{api}/providers/{provider_id}/checkpoints",
                             json={"checkpoint": {"plan_id": plan_id}}, timeout=30)
    assert response.status_code == 200, response.text
    return str(response.json()["checkpoint"]["id"])


def wait_progress(url: str, fraction: float, timeout: float = 120.0) -> dict[str, Any]:
    """Poll a checkpoint until at least ``fraction`` of its bytes are done (and it is still protecting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = requests.get(url, timeout=10).json()["checkpoint"]
        progress = body.get("progress") or {}
        total = progress.get("bytes_total") or 0
        if body["status"] != "protecting":
            raise AssertionError(f"checkpoint ended {body['status']} before {fraction:.0%}: {body}")
        if total and progress.get("bytes_done", 0) >= fraction * total:
            return dict(body)
        time.sleep(0.05)
    raise AssertionError(f"{url} did not reach {fraction:.0%} in {timeout} s")


def restore_and_hash(service: AllInOne, provider_id: str, checkpoint_id: str, name: str,
                     timeout: float = 300.0) -> tuple[str, dict[str, Any]]:
    """Restore into a new loopback volume ``name``; returns its sha256 and the restore record."""
    from tests.functional.harness import wait_for

    api = service.api()
    response = requests.post(f"{api}/restores", json={"restore": {
        "provider_id": provider_id, "checkpoint_id": checkpoint_id,
        "parameters": {"OS::Cinder::Volume": {"restore_name": name}}}}, timeout=30)
    assert response.status_code == 200, response.text
    body = wait_for(f"{api}/restores/{response.json()['restore']['id']}", "restore", {"success", "fail"},
                    timeout=timeout)
    if body["status"] != "success":
        return "", body
    return sha256(service.volumes / name), body


def add_provider(tmp_path: Path, bank: BankUnderTest, *, windows: LeaseWindows = WINDOWS,
                 volume: dict[str, Any] | None = None) -> str:
    """A second provider in the all-in-one :func:`configure` set up under ``tmp_path`` (call it after): its
    volumes in the same loopback directory, its checkpoints in ``bank``.  Returns its id."""
    state = tmp_path / "state"
    bank.state_dir = state
    provider_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"strongroom-test/second/{bank.kind}"))
    (tmp_path / "providers.d" / f"second-{bank.kind}.conf").write_text(
        f"[provider]\nname = Second {bank.kind}\nid = {provider_id}\nplugin = volume\nbank = {bank.kind}\n"
        + "\n[volume]\nblock_backend = loopback\nworkers = 3\n"
        + "".join(f"{k} = {v}\n" for k, v in (volume or {}).items())
        + "\n[loopback]\npath = {state_dir}/volumes\n\n"
        + bank.section(windows))
    return provider_id
