"""Through the REST API: a qcow2 image protected into an S3 bank (moto) while a writer keeps writing to the
live image, changed a little and protected again (an incremental: only the changed blocks are read), then
protected once more with nothing changed (nothing read); both checkpoints restored to new images, the first
verified and deleted before the second is restored.

The image (128 MiB) holds random data, text, written zeros and never-written space.  The all-in-one's
qcow2 backend serves it through its own qemu-storage-daemon; the writer reaches the live image the way
a user's tool would, through that daemon's NBD export of it (socket named in ``.strongroom/daemon.json``),
and rewrites 4 KiB blocks of a scratch region one after the other, each stamped with its sequence number.
A point-in-time checkpoint holds exactly the first *k* of those writes for some *k*; a torn mix (a later
write without an earlier one, half a block) matches no *k*.  The restored image must equal that instant
byte for byte and stay thin.  The writer stops before the changes (:data:`CHANGES`, written through the
same export), so the second checkpoint must be exactly the image after the writer's last write and them.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from strongroom.block.qcow2 import Qcow2Backend
from strongroom.testing.block import read_all
from tests.functional.banks import bank_under_test
from tests.functional.harness import AllInOne, MiB, wait_for
from tests.servers.qemu import require_qemu

pytestmark = pytest.mark.functional

SIZE = 128 * MiB
TEXT = b"The quick brown fox jumps over the lazy dog. "
#: Where the writer writes: never written before it starts.
SCRATCH, SCRATCH_BLOCKS = 96 * MiB, 2048
#: The provider's chunk size (the volume plugin's default, pinned: the bound on what an incremental reads
#: is counted in chunk slots).
CHUNK = 4 * MiB
#: What changes between the first protect and the second: random data rewritten in part, never-written
#: space written, written zeros overwritten.
CHANGES = {5 * MiB + 1234: bytes(range(256)) * 40, 60 * MiB: random.Random(12).randbytes(64 * 1024),
           32 * MiB + 8192: b"\x01" * 4096}
VOLUME_KEY = "OS::Cinder::Volume#database"


def base_image() -> dict[int, bytes]:
    rng = random.Random(11)
    return {0: rng.randbytes(24 * MiB), 24 * MiB: (TEXT * (8 * MiB // len(TEXT) + 1))[: 8 * MiB],
            32 * MiB: bytes(8 * MiB),  # written zeros: a hole once restored
            # 40-96 MiB never written; 96-104 MiB the writer's scratch region
            112 * MiB + 4321: rng.randbytes(8 * MiB), SIZE - len(TEXT) * 90: TEXT * 90}


def scratch_write(i: int) -> tuple[int, bytes]:
    """The writer's ``i``-th write (from 1): a block of the scratch region, stamped with ``i``."""
    rng = random.Random(i)
    block = rng.randrange(SCRATCH_BLOCKS)
    return SCRATCH + block * 4096, struct.pack(">Q", i) + rng.randbytes(4088)


def image_after(writes: int, changes: dict[int, bytes] | None = None) -> bytes:
    image = bytearray(SIZE)
    for offset, data in base_image().items():
        image[offset : offset + len(data)] = data
    for i in range(1, writes + 1):
        offset, data = scratch_write(i)
        image[offset : offset + 4096] = data
    for offset, data in (changes or {}).items():
        image[offset : offset + len(data)] = data
    return bytes(image)


def export_of(path: Path) -> Any:
    """An NBD handle on the daemon's export of the live image, as a user's tool would open it."""
    import nbd

    handle = nbd.NBD()
    handle.set_export_name("database")
    handle.connect_unix(json.loads((path / ".strongroom" / "daemon.json").read_text())["nbd_socket"])
    return handle


def keep_writing(path: Path, stop: threading.Event, done: list[int], errors: list[BaseException]) -> None:
    """Write through the daemon's export of the live image as soon as it has one, until ``stop``."""
    import nbd

    try:
        handle = None
        while handle is None and not stop.is_set():
            try:
                handle = export_of(path)
            except (OSError, ValueError, KeyError, nbd.Error):
                handle = None
                time.sleep(0.001)
        i = 0
        while not stop.is_set() and handle is not None:
            i += 1
            offset, data = scratch_write(i)
            handle.pwrite(data, offset)
            done.append(i)
    except BaseException as err:  # noqa: BLE001 - reported by the test
        errors.append(err)


def protect(api: str, provider_id: str, plan_id: str) -> tuple[dict, str]:
    """A protect through the API, waited for: the checkpoint and its URL."""
    created = requests.post(f"{api}/providers/{provider_id}/checkpoints",
                            json={"checkpoint": {"plan_id": plan_id}}, timeout=30)
    assert created.status_code == 200, created.text
    url = f"{api}/providers/{provider_id}/checkpoints/{created.json()['checkpoint']['id']}"
    return wait_for(url, "checkpoint", {"available", "error"}, timeout=300), url


def restore(api: str, provider_id: str, checkpoint_id: str, name: str) -> float:
    """A restore of ``checkpoint_id`` to a new image ``name``, waited for: its seconds."""
    began = time.monotonic()
    restore = requests.post(f"{api}/restores", json={"restore": {
        "provider_id": provider_id, "checkpoint_id": checkpoint_id, "restore_target": None,
        "parameters": {"OS::Cinder::Volume": {"restore_name": name}}}}, timeout=30)
    assert restore.status_code == 200, restore.text
    done = wait_for(f"{api}/restores/{restore.json()['restore']['id']}", "restore", {"success", "fail"},
                    timeout=300)
    assert done["status"] == "success", done
    return time.monotonic() - began


def verify(api: str, provider_id: str, checkpoint_id: str, parameters: dict) -> dict:
    verification = requests.post(f"{api}/verifications", json={"verification": {
        "provider_id": provider_id, "checkpoint_id": checkpoint_id, "parameters": parameters}}, timeout=30)
    assert verification.status_code == 200, verification.text
    return wait_for(f"{api}/verifications/{verification.json()['verification']['id']}", "verification",
                    {"success", "fail"}, timeout=300)


def retained_alone(images: Path) -> list[str]:
    """The snapshots left after a protect, once its older base is released (just after it is published)."""
    deadline = time.monotonic() + 30
    while True:
        kept = [p.name for p in (images / ".strongroom" / "snapshots").iterdir() if p.name.endswith(".json")]
        if len(kept) <= 1 or time.monotonic() > deadline:
            return kept
        time.sleep(0.05)


def test_qcow2_image_protected_while_written_restored_at_its_instant(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    require_qemu()
    images = tmp_path / "images"
    setup = Qcow2Backend({"path": str(images)})
    try:
        setup.create_volume(SIZE, name="database")
        with setup.writing_volume("database") as writer:
            for offset, data in base_image().items():
                writer.write(offset, data)
    finally:
        setup.close()

    bank = bank_under_test("s3", request, tmp_path)
    state, providers = tmp_path / "state", tmp_path / "providers.d"
    providers.mkdir()
    state.mkdir()
    provider_id = str(uuid.uuid4())
    (providers / "qcow2.conf").write_text(
        f"[provider]\nname = KVM\nid = {provider_id}\nplugin = volume\nbank = s3\n\n"
        f"[volume]\nblock_backend = qcow2\nworkers = 3\nchunk_size = {CHUNK}\n\n"
        f"[qcow2]\npath = {images}\ntimeout = 20\n\n" + bank.section())
    conf = tmp_path / "strongroom.conf"
    conf.write_text(f"[DEFAULT]\nstate_dir = {state}\nproviders_dir = {providers}\n[api]\nbind_port = 0\n")
    service = AllInOne(state_dir=state, config_file=conf)
    service.start()
    stop, done, errors = threading.Event(), [], []  # type: ignore[var-annotated]
    writer = threading.Thread(target=keep_writing, args=(images, stop, done, errors))
    try:
        api = service.api()
        instances = requests.get(f"{api}/protectables/OS::Cinder::Volume/instances", timeout=30).json()
        assert [i["id"] for i in instances["instances"]] == ["database"]
        plan = requests.post(f"{api}/plans", json={"plan": {
            "name": "kvm", "provider_id": provider_id, "parameters": {},
            "resources": [{"id": "database", "type": "OS::Cinder::Volume", "name": "database"}]}}, timeout=10)
        assert plan.status_code == 200, plan.text
        plan_id = plan.json()["plan"]["id"]

        writer.start()
        began = time.monotonic()
        cp, cp_url = protect(api, provider_id, plan_id)
        protect_seconds = time.monotonic() - began
        written_during_protect = len(done)
        stop.set()
        writer.join(timeout=30)
        assert cp["status"] == "available", cp
        assert not errors, errors
        assert written_during_protect > 100, "the writer should have kept writing all through the protect"
        writes = len(done)  # the live image is now the image after the writer's last write
        assert cp["extra_info"]["protected"][VOLUME_KEY]["mode"] == "full"
        kept = retained_alone(images)
        assert len(kept) == 1, f"the protect's snapshot is kept as the next base, alone: {kept}"

        handle = export_of(images)
        for offset, data in CHANGES.items():
            handle.pwrite(data, offset)
        handle.shutdown()
        began = time.monotonic()
        cp2, _ = protect(api, provider_id, plan_id)
        incremental_seconds = time.monotonic() - began
        assert cp2["status"] == "available", cp2
        second = cp2["extra_info"]["protected"][VOLUME_KEY]
        assert (second["mode"], second["parent_checkpoint"], second["full_reason"]) == \
            ("incremental", cp["id"], None), second
        # What changed since the first snapshot: the writer's scratch region (it went on writing after the
        # snapshot's instant) and the chunk slots CHANGES touched; the rest of the 128 MiB is not read.
        scratch_end = SCRATCH + SCRATCH_BLOCKS * 4096
        slots = {o // CHUNK for o in CHANGES} | set(range(SCRATCH // CHUNK, -(-scratch_end // CHUNK)))
        assert sum(map(len, CHANGES.values())) <= second["bytes_read"] <= len(slots) * CHUNK <= SIZE // 6, second
        kept = retained_alone(images)
        assert len(kept) == 1, f"the incremental's snapshot is kept as the next base, alone: {kept}"

        began = time.monotonic()
        cp3, _ = protect(api, provider_id, plan_id)
        unchanged_seconds = time.monotonic() - began
        assert cp3["status"] == "available", cp3
        third = cp3["extra_info"]["protected"][VOLUME_KEY]
        assert (third["mode"], third["parent_checkpoint"], third["bytes_read"], third["new_chunks"]) == \
            ("incremental", cp2["id"], 0, 0), third
        assert len(retained_alone(images)) == 1
        # The tracking audited: the newest checkpoint's retained snapshot re-read and checked slot by slot.
        audit = verify(api, provider_id, cp3["id"], {"OS::Cinder::Volume": {"source": True}})
        assert audit["status"] == "success", audit

        restore_seconds = restore(api, provider_id, cp["id"], "database-restored")
        verified = verify(api, provider_id, cp["id"], {})
        assert verified["status"] == "success", verified
        # The full checkpoint the incrementals were built on goes; the second still restores whole.
        assert requests.delete(cp_url, timeout=30).status_code == 202
        assert wait_for(cp_url, "checkpoint", {"deleted", "error-deleting"})["status"] == "deleted"
        restore(api, provider_id, cp2["id"], "database-restored-2")
    finally:
        stop.set()
        writer.join(timeout=30)
        service.stop()
    assert not errors, errors

    check = Qcow2Backend({"path": str(images)})
    try:
        assert [v.id for v in check.list_volumes()] == ["database", "database-restored", "database-restored-2"]
        assert check.list_staged_volumes() == []
        with check.open_volume_reader("database-restored") as reader:
            restored = read_all(reader, 16 * MiB)
            allocated = sum(e.length for e in reader.allocated_extents())
        with check.open_volume_reader("database-restored-2") as reader:
            second_digest = hashlib.sha256(read_all(reader, 16 * MiB)).digest()
    finally:
        check.close()
    scratch = range(SCRATCH, SCRATCH + SCRATCH_BLOCKS * 4096, 4096)
    instant = max(struct.unpack(">Q", restored[o : o + 8])[0] for o in scratch)
    assert hashlib.sha256(restored).digest() == hashlib.sha256(image_after(instant)).digest(), \
        f"the checkpoint is not the image after write {instant} of the writer: a torn mix"
    assert second_digest == hashlib.sha256(image_after(writes, CHANGES)).digest(), \
        "the incremental checkpoint is not the image as it was at its protect"
    # Thin: the 56 MiB never written and the 8 MiB of written zeros are no data in the restored image.
    on_disk = (images / "database-restored.qcow2").stat().st_blocks * 512
    assert allocated <= 50 * MiB and on_disk <= 52 * MiB, (allocated, on_disk)
    print(f"\nqcow2 128 MiB: protect {protect_seconds:.1f} s ({SIZE / MiB / protect_seconds:.0f} MiB/s), "
          f"restore {restore_seconds:.1f} s ({SIZE / MiB / restore_seconds:.0f} MiB/s), "
          f"{written_during_protect} live writes during the protect, checkpoint after write {instant}, "
          f"restored allocated {allocated // MiB} MiB ({on_disk // MiB} MiB on disk); "
          f"incremental {incremental_seconds:.1f} s reading {second['bytes_read'] / MiB:.1f} MiB, "
          f"unchanged {unchanged_seconds:.1f} s reading {third['bytes_read']} bytes")
