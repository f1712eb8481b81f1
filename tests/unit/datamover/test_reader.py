"""BlockReader: random ranges of a backed-up volume straight from its manifest and chunks."""

from __future__ import annotations

import io
import random
import threading
from pathlib import Path

import pytest

from strongroom import config, exceptions, keys
from strongroom.bank_plugins.bank import Bank
from strongroom.bank_plugins.keyring import Keyring
from strongroom.bank_plugins.layout import RESOURCE_DATA, BankLayout
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.block.loopback import LoopbackBackend
from strongroom.datamover import ChunkStore, backup, hashing
from strongroom.datamover.reader import BlockReader, open_reader

from .conftest import CHUNK, write_mixed_image

RESOURCE = "OS::Cinder::Volume#vol1"


def _protect(bank: Bank, backend: LoopbackBackend, cid: str, *, encrypted: bool) -> None:
    """Back up loopback volume ``vol1`` as checkpoint ``cid`` of project p1, the way the volume plugin lays it out."""
    encryption = bank.encryption_of("p1") if encrypted else None
    bank.put_json(BankLayout.index_key(cid), {"id": cid, "project_id": "p1", "status": "available",
                                              **({"encryption": encryption} if encryption else {})})
    name, key = "sha256", None
    if encrypted:
        key_id, key = bank.id_key("p1")
        name = hashing.keyed_name("sha256", key_id)
    store = ChunkStore(bank.section(BankLayout.chunks_prefix("p1")), hash_algo=name, hash_key=key)
    section = bank.section(BankLayout.resource_prefix(cid, bank.resource_segment(cid, RESOURCE)))
    snap = backend.create_snapshot("vol1")
    with backend.reading_snapshot(snap.id) as reader:
        backup(reader, store, section.section(RESOURCE_DATA), chunk_size=CHUNK, workers=2)
    backend.delete_snapshot(snap.id)


@pytest.fixture
def image(backend: LoopbackBackend) -> bytes:
    path = Path(backend.options["path"]) / "vol1"
    write_mixed_image(path)
    return path.read_bytes()


@pytest.fixture(params=["clear", "encrypted"])
def bank(request: pytest.FixtureRequest, tmp_path: Path) -> Bank:
    bank = Bank(MemoryBank(), name="mem")
    if request.param == "encrypted":
        kek = keys.kek_source(config.new_conf(overrides={"DEFAULT": {"state_dir": str(tmp_path)}}))
        bank.keyring = Keyring(bank, kek, name="bank 'mem'")
        bank.encrypt = True
    return bank


def test_random_ranges_match_the_source_image(bank: Bank, backend: LoopbackBackend, image: bytes) -> None:
    _protect(bank, backend, "c1", encrypted=bank.encrypt)
    reader = open_reader(bank, "c1", RESOURCE, cache_bytes=4 * CHUNK)
    assert reader.size == len(image)
    assert reader.read(0, reader.size) == image
    rng = random.Random(3)
    for _ in range(300):
        offset = rng.randrange(len(image))
        length = rng.choice([1, 17, 4096, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5])
        assert reader.read(offset, length) == image[offset:offset + length], (offset, length)
    # across every chunk boundary, including into the short last chunk
    for boundary in range(CHUNK, len(image), CHUNK):
        assert reader.read(boundary - 3, 7) == image[boundary - 3:boundary + 4]
    assert reader.read(len(image) - 5, 100) == image[-5:]  # short at the end
    assert reader.read(len(image), 10) == b""
    with pytest.raises(exceptions.InvalidInput):
        reader.read(-1, 10)


def test_zero_runs_are_served_without_touching_the_bank(bank: Bank, backend: LoopbackBackend,
                                                        image: bytes) -> None:
    _protect(bank, backend, "c1", encrypted=bank.encrypt)
    reader = open_reader(bank, "c1", RESOURCE)
    holes = [e for e in reader.entries() if e.digest is None]
    assert holes, "the mixed image has holes and written zeros"
    for hole in holes:
        assert reader.read(hole.offset, hole.length) == bytes(hole.length)
    assert reader.fetches == 0


def test_the_cache_is_bounded_and_reused(bank: Bank, backend: LoopbackBackend, image: bytes) -> None:
    _protect(bank, backend, "c1", encrypted=bank.encrypt)
    reader = open_reader(bank, "c1", RESOURCE, cache_bytes=2 * CHUNK)
    data = [e for e in reader.entries() if e.digest is not None]
    first = data[0]
    for _ in range(5):
        reader.read(first.offset, 10)
    assert reader.fetches == 1
    for entry in data[1:4]:
        reader.read(entry.offset, 10)
    assert reader._cached <= 2 * CHUNK
    reader.read(first.offset, 10)  # evicted by the three after it
    assert reader.fetches == 5


def test_the_file_adapter_seeks_and_reads_like_a_file(bank: Bank, backend: LoopbackBackend,
                                                      image: bytes) -> None:
    _protect(bank, backend, "c1", encrypted=bank.encrypt)
    f = open_reader(bank, "c1", RESOURCE).file()
    assert f.seekable() and f.readable() and not f.writable()
    assert f.seek(CHUNK - 10) == CHUNK - 10
    assert f.read(20) == image[CHUNK - 10:CHUNK + 10]
    assert f.tell() == CHUNK + 10
    buf = bytearray(100)
    f.seek(-50, io.SEEK_END)
    assert f.readinto(buf) == 50 and bytes(buf[:50]) == image[-50:]
    f.seek(5 * CHUNK)
    assert f.read() == image[5 * CHUNK:]
    buffered = io.BufferedReader(open_reader(bank, "c1", RESOURCE).file())
    buffered.seek(123)
    assert buffered.read(CHUNK * 2) == image[123:123 + 2 * CHUNK]


def test_concurrent_readers_share_one_fetch_per_chunk(bank: Bank, backend: LoopbackBackend, image: bytes) -> None:
    _protect(bank, backend, "c1", encrypted=bank.encrypt)
    reader = open_reader(bank, "c1", RESOURCE, cache_bytes=64 * CHUNK)
    errors: list[str] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(100):
            offset = rng.randrange(len(image))
            if reader.read(offset, 5000) != image[offset:offset + 5000]:
                errors.append(f"{offset}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert reader.fetches <= sum(1 for e in reader.entries() if e.digest is not None)


def test_a_corrupt_chunk_is_an_error_naming_its_object(bank: Bank, backend: LoopbackBackend, image: bytes) -> None:
    _protect(bank, backend, "c1", encrypted=bank.encrypt)
    reader = open_reader(bank, "c1", RESOURCE)
    victim = next(e for e in reader.entries() if e.digest is not None and e.offset > 0)
    assert victim.digest is not None
    key = BankLayout.chunks_prefix("p1") + "/" + ChunkStore.key(victim.digest)
    plugin = bank.plugin
    raw = bytearray(plugin.get_object(key))
    raw[len(raw) // 2] ^= 0xFF
    plugin.put_object(key, bytes(raw), plugin.head_object(key).metadata)
    with pytest.raises(exceptions.DataIntegrityError) as err:
        reader.read(victim.offset + 10, 100)
    assert victim.digest in str(err.value) and key in str(err.value)
    assert f"offset {victim.offset}" in str(err.value)
    assert reader.read(0, 100) == image[:100]  # the rest stays readable
    plugin.delete_object(key)
    with pytest.raises(exceptions.BankObjectNotFound, match=key):
        reader.read(victim.offset, 1)


def test_unknown_checkpoint_or_resource_is_not_found(bank: Bank, backend: LoopbackBackend, image: bytes) -> None:
    _protect(bank, backend, "c1", encrypted=bank.encrypt)
    with pytest.raises(exceptions.NotFound, match="Checkpoint nope"):
        open_reader(bank, "nope", RESOURCE)
    with pytest.raises(exceptions.DataIntegrityError, match="missing"):
        open_reader(bank, "c1", "OS::Cinder::Volume#other")


def test_a_reader_over_a_section_and_store(backend: LoopbackBackend, image: bytes) -> None:
    bank = Bank(MemoryBank(), name="plain")
    _protect(bank, backend, "c1", encrypted=False)
    section = bank.section(BankLayout.resource_prefix("c1", RESOURCE)).section(RESOURCE_DATA)
    reader = BlockReader(section, ChunkStore(bank.section(BankLayout.chunks_prefix("p1"))), cache_bytes=0)
    assert reader.read(CHUNK * 3 - 1, 2) == image[CHUNK * 3 - 1:CHUNK * 3 + 1]
