"""What must hold after any SIGKILL, restart and garbage collection pass: the torture test's invariants.

Each check returns the failures it found (an empty list when the invariant holds), as a user or an
operator would notice them: through the REST API, the bank's own objects, and the loopback volumes
directory.  They are read-only, except that a restore check writes a restored volume and removes it again.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import requests

from strongroom import exceptions
from strongroom.bank_plugins import Bank
from strongroom.bank_plugins.layout import BankLayout
from strongroom.block.loopback.layout import SNAPSHOT_DIR
from tests.functional.banks import referenced_chunks, restore_and_hash, stored_chunks
from tests.functional.harness import AllInOne, loopback_snapshots, retained_bases

#: Statuses a run is in while a process works on it; after recovery no record may stay in one.
RUNNING_CHECKPOINT = ("protecting", "deleting", "copying")
RUNNING_RUN = ("in_progress",)
#: What the bank may hold of a checkpoint that is deleted or was reclaimed: its index and the reclaim marker.
GONE = ("deleted", "error")

NOTHING_STUCK = "nothing stuck"
RESTORES = "available restores byte-identical"
AGREE = "bank and catalogue agree"
CHUNKS = "no unreferenced chunk"
LEFTOVERS = "no leftover object"
SNAPSHOTS = "no leaked snapshot"
TARGETS = "no partial restore target"
INVARIANTS = (NOTHING_STUCK, RESTORES, AGREE, CHUNKS, LEFTOVERS, SNAPSHOTS, TARGETS)


@dataclasses.dataclass(frozen=True)
class Failure:
    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.detail}"


def list_all(url: str, key: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paginated list (``marker`` is the last id of the previous page)."""
    items: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": 500, **params}
    while True:
        response = requests.get(url, params=query, timeout=30)
        response.raise_for_status()
        page = response.json()[key]
        items += page
        if len(page) < query["limit"]:
            return items
        query["marker"] = page[-1]["id"]


@dataclasses.dataclass
class Invariants:
    """The checks, over one all-in-one, its provider, its bank (opened directly) and its volumes.

    ``sources`` are the volume files the test protects (the only files the volumes directory may hold
    once its restored copies are removed); ``hashes`` the sha256 of each checkpoint's source at the
    time it was protected.
    """

    service: AllInOne
    provider: str
    bank: Bank
    sources: frozenset[str]
    hashes: Mapping[str, str]
    project: str = "demo"
    restores_done: int = 0
    restore_seconds: list[float] = dataclasses.field(default_factory=list)

    @property
    def _api(self) -> str:
        return self.service.api(self.project)

    def checkpoints(self) -> dict[str, dict[str, Any]]:
        """Every checkpoint, the deleted ones too (a list shows those only when its status filter asks)."""
        url = f"{self._api}/providers/{self.provider}/checkpoints"
        return {cp["id"]: cp for cp in [*list_all(url, "checkpoints"), *list_all(url, "checkpoints", status="deleted")]}

    # -- the invariants -------------------------------------------------------------------

    def nothing_stuck(self) -> list[Failure]:
        """No checkpoint, restore or verification in a running status, no operation log left open."""
        out = []
        for status in RUNNING_CHECKPOINT:
            for cp in list_all(f"{self._api}/providers/{self.provider}/checkpoints", "checkpoints", status=status):
                out.append(Failure(NOTHING_STUCK, f"checkpoint {cp['id']} is still {status}"))
        for collection in ("restores", "verifications"):
            for run in list_all(f"{self._api}/{collection}", collection, status="in_progress"):
                out.append(Failure(NOTHING_STUCK, f"{collection[:-1]} {run['id']} is still in_progress"))
        for log in list_all(f"{self._api}/operation_logs", "operation_logs"):
            if not log.get("ended_at"):
                out.append(Failure(NOTHING_STUCK, f"operation log {log['id']} ({log['operation_type']}) is open"))
        return out

    def bank_agrees(self, checkpoints: Mapping[str, dict[str, Any]]) -> list[Failure]:
        """Every checkpoint has the same status in its bank index as in the API; none is in one copy only;
        no active marker outlives the runs (none run once recovery and garbage collection are done)."""
        from strongroom.protection.checkpoint import CheckpointStore

        store = CheckpointStore(self.bank)
        out = []
        in_bank = set(store.list_ids())
        for cid in sorted(in_bank | set(checkpoints)):
            api = checkpoints.get(cid)
            try:
                bank_status: str | None = str(store.read(cid).status)
            except exceptions.NotFound:
                bank_status = None
            if api is None:
                out.append(Failure(AGREE, f"checkpoint {cid} is {bank_status} in the bank, unknown to the API"))
            elif bank_status is None:
                if api["status"] != "deleted":
                    out.append(Failure(AGREE, f"checkpoint {cid} is {api['status']} in the API, absent from the bank"))
            elif bank_status != api["status"]:
                out.append(Failure(AGREE, f"checkpoint {cid} is {bank_status} in the bank, {api['status']} in the API"))
        for marker in store.active_markers():
            out.append(Failure(AGREE, f"active marker of {marker.owner_id} for {marker.checkpoint_id} "
                                      f"({marker.operation}) outlived every run"))
        return out

    def no_unreferenced_chunk(self, checkpoints: Mapping[str, dict[str, Any]]) -> list[Failure]:
        """After a pass with no grace period the chunk store holds exactly what available checkpoints use."""
        available = [cid for cid, cp in checkpoints.items() if cp["status"] == "available"]
        referenced: set[str] = set()
        for cid in available:
            referenced |= referenced_chunks(self.bank, cid)
        stored = stored_chunks(self.bank, self.project)
        out = []
        if stored - referenced:
            out.append(Failure(CHUNKS, f"{len(stored - referenced)} chunk(s) no available checkpoint references"))
        if referenced - stored:
            out.append(Failure(RESTORES, f"{len(referenced - stored)} chunk(s) that available checkpoints "
                                         f"reference are missing"))
        return out

    def no_leftovers(self, checkpoints: Mapping[str, dict[str, Any]]) -> list[Failure]:
        """A deleted or reclaimed checkpoint keeps its index (and reclaim marker) alone: no data, no listing."""
        out = []
        listed = self._listed_checkpoints()
        for cid, cp in checkpoints.items():
            if cp["status"] not in GONE:
                continue
            keep = {BankLayout.index_key(cid), BankLayout.reclaimed_key(cid)}
            extra = sorted(set(self.bank.list(BankLayout.checkpoint_prefix(cid))) - keep)
            if extra:
                out.append(Failure(LEFTOVERS, f"{cp['status']} checkpoint {cid} still has {len(extra)} object(s), "
                                              f"e.g. {extra[0]}"))
            if cid in listed:
                out.append(Failure(LEFTOVERS, f"{cp['status']} checkpoint {cid} is still listed in the bank indices"))
        return out

    def no_leaked_snapshot(self, checkpoints: Mapping[str, dict[str, Any]]) -> list[Failure]:
        """Once no protect runs, the loopback backend's snapshot directory holds at most one snapshot per
        volume, retained as its next base, whose checkpoint is available: nothing else."""
        directory = self.service.volumes / SNAPSHOT_DIR
        out = []
        bases = retained_bases(directory)
        by_volume: dict[str, list[str]] = {}
        for sid, info in loopback_snapshots(directory).items():
            by_volume.setdefault(str(info.get("volume_id")), []).append(sid)
        for volume, sids in sorted(by_volume.items()):
            if len(sids) > 1:
                out.append(Failure(SNAPSHOTS, f"volume {volume} keeps {len(sids)} snapshots: {', '.join(sids)}"))
        for sid, cid in sorted(bases.items()):
            if checkpoints.get(cid, {}).get("status") != "available":
                out.append(Failure(SNAPSHOTS, f"base snapshot {sid} of {checkpoints.get(cid, {}).get('status')} "
                                              f"checkpoint {cid} was not released"))
        kept = {name for sid in bases for name in (sid, f"{sid}.json")}
        left = sorted(set(_files(directory)) - kept)
        if left:
            out.append(Failure(SNAPSHOTS, f"{len(left)} file(s) left under {SNAPSHOT_DIR}: {', '.join(left[:3])}"))
        return out

    def no_partial_target(self) -> list[Failure]:
        """The volumes directory holds the protected sources and nothing else: no staged, hidden or half
        restored volume (the test removes its own restored copies right after hashing them)."""
        names = {name for name in os.listdir(self.service.volumes) if name != SNAPSHOT_DIR}
        extra = sorted(names - self.sources)
        return [Failure(TARGETS, f"unexpected volume file(s): {', '.join(extra)}")] if extra else []

    def restores_identical(self, checkpoint_ids: Iterable[str],
                           checkpoints: Mapping[str, dict[str, Any]]) -> list[Failure]:
        """Each of these checkpoints that is available restores into a new volume byte-identical to its
        source at the time it was protected."""
        out = []
        for cid in sorted(set(checkpoint_ids)):
            if checkpoints.get(cid, {}).get("status") != "available":
                continue
            expected = self.hashes.get(cid)
            if expected is None:
                out.append(Failure(RESTORES, f"checkpoint {cid} is available but was never protected by the test"))
                continue
            self.restores_done += 1
            name = f"check-{self.restores_done}.img"
            started = time.monotonic()
            digest, body = restore_and_hash(self.service, self.provider, cid, name)
            if body["status"] == "success":
                self.restore_seconds.append(time.monotonic() - started)
            (self.service.volumes / name).unlink(missing_ok=True)
            if body["status"] != "success":
                out.append(Failure(RESTORES, f"restore of available checkpoint {cid} ended {body['status']}: "
                                             f"{body.get('resources_reason')}"))
            elif digest != expected:
                out.append(Failure(RESTORES, f"checkpoint {cid} restored different bytes"))
        return out

    def check(self, restore: Iterable[str] | None) -> list[Failure]:
        """Every invariant; restores of ``restore`` only (None: of every available checkpoint)."""
        checkpoints = self.checkpoints()
        failures = self.nothing_stuck()
        failures += self.bank_agrees(checkpoints)
        failures += self.no_unreferenced_chunk(checkpoints)
        failures += self.no_leftovers(checkpoints)
        failures += self.no_leaked_snapshot(checkpoints)
        failures += self.no_partial_target()
        failures += self.restores_identical(checkpoints if restore is None else restore, checkpoints)
        return failures

    def _listed_checkpoints(self) -> set[str]:
        """Checkpoint ids named by the listing indices (``indices/by-*/...@<cid>``), active markers aside."""
        return {key.rsplit("@", 1)[-1] for key in self.bank.iter(BankLayout.ACTIVE.split("/")[0] + "/")
                if not key.startswith(BankLayout.ACTIVE) and "@" in key}


def _files(directory: Path) -> Iterator[str]:
    if not directory.is_dir():
        return
    for path in directory.rglob("*"):
        if path.is_file():
            yield str(path.relative_to(directory))
