"""Through the REST API: a qcow2 image protected into an S3 bank (moto) while a writer keeps writing to the
live image, restored to a new image, verified, deleted.

The image (128 MiB) holds random data, text, written zeros and never-written space.  The all-in-one's
qcow2 backend serves it through its own qemu-storage-daemon; the writer reaches the live image the way
a user's tool would, through that daemon's NBD export of it (socket named in ``.strongroom/daemon.json``),
and rewrites 4 KiB blocks of a scratch region one after the other, each stamped with its sequence number.
A point-in-time checkpoint holds exactly the first *k* of those writes for some *k*; a torn mix (a later
write without an earlier one, half a block) matches no *k*.  The restored image must equal that instant
byte for byte and stay thin.
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


def image_after(writes: int) -> bytes:
    image = bytearray(SIZE)
    for offset, data in base_image().items():
        image[offset : offset + len(data)] = data
    for i in range(1, writes + 1):
        offset, data = scratch_write(i)
        image[offset : offset + 4096] = data
    return bytes(image)


def keep_writing(path: Path, stop: threading.Event, done: list[int], errors: list[BaseException]) -> None:
    """Write through the daemon's export of the live image as soon as it has one, until ``stop``."""
    import nbd

    try:
        state = path / ".strongroom" / "daemon.json"
        handle = None
        while handle is None and not stop.is_set():
            try:
                handle = nbd.NBD()
                handle.set_export_name("database")
                handle.connect_unix(json.loads(state.read_text())["nbd_socket"])
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
        "[volume]\nblock_backend = qcow2\nworkers = 3\n\n"
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

        writer.start()
        began = time.monotonic()
        created = requests.post(f"{api}/providers/{provider_id}/checkpoints",
                                json={"checkpoint": {"plan_id": plan.json()["plan"]["id"]}}, timeout=30)
        assert created.status_code == 200, created.text
        cp_url = f"{api}/providers/{provider_id}/checkpoints/{created.json()['checkpoint']['id']}"
        cp = wait_for(cp_url, "checkpoint", {"available", "error"}, timeout=300)
        protect_seconds = time.monotonic() - began
        written_during_protect = len(done)
        assert cp["status"] == "available", cp
        assert not errors, errors
        assert written_during_protect > 100, "the writer should have kept writing all through the protect"
        kept = [p.name for p in (images / ".strongroom" / "snapshots").iterdir() if p.name.endswith(".json")]
        assert len(kept) == 1, f"the protect's snapshot is kept as the next base, alone: {kept}"

        began = time.monotonic()
        restore = requests.post(f"{api}/restores", json={"restore": {
            "provider_id": provider_id, "checkpoint_id": cp["id"], "restore_target": None,
            "parameters": {"OS::Cinder::Volume": {"restore_name": "database-restored"}}}}, timeout=30)
        assert restore.status_code == 200, restore.text
        done_restore = wait_for(f"{api}/restores/{restore.json()['restore']['id']}", "restore",
                                {"success", "fail"}, timeout=300)
        restore_seconds = time.monotonic() - began
        assert done_restore["status"] == "success", done_restore

        verification = requests.post(f"{api}/verifications", json={"verification": {
            "provider_id": provider_id, "checkpoint_id": cp["id"], "parameters": {}}}, timeout=30)
        assert verification.status_code == 200, verification.text
        verified = wait_for(f"{api}/verifications/{verification.json()['verification']['id']}",
                            "verification", {"success", "fail"}, timeout=300)
        assert verified["status"] == "success", verified
        assert requests.delete(cp_url, timeout=30).status_code == 202
        assert wait_for(cp_url, "checkpoint", {"deleted", "error-deleting"})["status"] == "deleted"
    finally:
        stop.set()
        writer.join(timeout=30)
        service.stop()
    assert not errors, errors

    check = Qcow2Backend({"path": str(images)})
    try:
        assert [v.id for v in check.list_volumes()] == ["database", "database-restored"]
        assert check.list_staged_volumes() == []
        with check.open_volume_reader("database-restored") as reader:
            restored = read_all(reader, 16 * MiB)
            allocated = sum(e.length for e in reader.allocated_extents())
    finally:
        check.close()
    scratch = range(SCRATCH, SCRATCH + SCRATCH_BLOCKS * 4096, 4096)
    instant = max(struct.unpack(">Q", restored[o : o + 8])[0] for o in scratch)
    assert hashlib.sha256(restored).digest() == hashlib.sha256(image_after(instant)).digest(), \
        f"the checkpoint is not the image after write {instant} of the writer: a torn mix"
    # Thin: the 56 MiB never written and the 8 MiB of written zeros are no data in the restored image.
    on_disk = (images / "database-restored.qcow2").stat().st_blocks * 512
    assert allocated <= 50 * MiB and on_disk <= 52 * MiB, (allocated, on_disk)
    print(f"\nqcow2 128 MiB: protect {protect_seconds:.1f} s ({SIZE / MiB / protect_seconds:.0f} MiB/s), "
          f"restore {restore_seconds:.1f} s ({SIZE / MiB / restore_seconds:.0f} MiB/s), "
          f"{written_during_protect} live writes during the protect, checkpoint after write {instant}, "
          f"restored allocated {allocated // MiB} MiB ({on_disk // MiB} MiB on disk)")
