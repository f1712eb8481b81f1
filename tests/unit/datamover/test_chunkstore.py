from __future__ import annotations

import hashlib
import os
import random

import pytest
import zstandard

from strongroom import exceptions
from strongroom.bank_plugins.bank import Bank
from strongroom.datamover import ChunkStore


def test_put_get_round_trip_compresses_text(store: ChunkStore, bank: Bank) -> None:
    data = b"hello strongroom\n" * 10000
    digest = store.hash(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert not store.has(digest)
    written = store.put(digest, data)
    assert written < len(data) // 10
    assert store.has(digest)
    assert store.get(digest) == data
    info = bank.head(f"projects/p1/chunks/{digest[:2]}/{digest}")
    assert info.metadata == {"hash": "sha256", "compression": "zstd", "size": str(len(data))}


def test_incompressible_chunk_is_stored_raw_and_flagged(store: ChunkStore, bank: Bank) -> None:
    data = os.urandom(100_000)
    digest = store.hash(data)
    assert store.put(digest, data) == len(data)
    info = bank.head(f"projects/p1/chunks/{digest[:2]}/{digest}")
    assert info.metadata["compression"] == "none"
    assert bank.get(f"projects/p1/chunks/{digest[:2]}/{digest}") == data
    assert store.get(digest) == data


@pytest.mark.parametrize("data", [
    b"\x28\xb5\x2f\xfd" + os.urandom(5000),  # the zstd magic, then noise
    zstandard.ZstdCompressor().compress(b"another chunk"),  # a real zstd frame, stored as is
], ids=["magic", "frame"])
def test_raw_chunk_that_looks_like_a_zstd_frame(store: ChunkStore, data: bytes) -> None:
    digest = store.hash(data)
    store.put(digest, data)
    assert store.get(digest) == data


def test_corrupt_chunk_raises_integrity_error(store: ChunkStore, bank: Bank) -> None:
    data = b"abc" * 50000
    digest = store.hash(data)
    store.put(digest, data)
    bank.put(f"projects/p1/chunks/{digest[:2]}/{digest}", b"garbage")
    with pytest.raises(exceptions.DataIntegrityError, match=digest):
        store.get(digest)


def test_missing_chunk_and_idempotent_delete(store: ChunkStore) -> None:
    digest = store.hash(b"x")
    with pytest.raises(exceptions.BankObjectNotFound):
        store.get(digest)
    store.put(digest, b"x")
    store.delete(digest)
    store.delete(digest)
    assert not store.has(digest)


def test_iter_digests_lists_every_chunk(store: ChunkStore, bank: Bank) -> None:
    digests = set()
    for i in range(20):
        data = f"chunk {i}".encode()
        digests.add(store.hash(data))
        store.put(store.hash(data), data)
    bank.put("projects/p1/chunks/README", b"not a chunk")
    assert sorted(store.iter_digests()) == sorted(digests)


def test_bad_digest_is_rejected(store: ChunkStore) -> None:
    with pytest.raises(exceptions.InvalidInput, match="digest"):
        store.get("../../etc/passwd")


@pytest.mark.parametrize(("algo", "compression"), [("blake3", "zstd"), ("sha256", "none")])
def test_variants(bank: Bank, algo: str, compression: str) -> None:
    store = ChunkStore(bank.section("projects/p2/chunks"), hash_algo=algo, compression=compression)
    data = b"text " * 30000
    digest = store.hash(data)
    if algo == "blake3":
        import blake3

        assert digest == blake3.blake3(data).hexdigest()
    written = store.put(digest, data)
    assert (written == len(data)) == (compression == "none")
    assert store.get(digest) == data


def test_unknown_options_are_rejected(bank: Bank) -> None:
    with pytest.raises(exceptions.InvalidInput, match="md5"):
        ChunkStore(bank.section("x"), hash_algo="md5")
    with pytest.raises(exceptions.InvalidInput, match="lz4"):
        ChunkStore(bank.section("x"), compression="lz4")
    with pytest.raises(exceptions.InvalidInput, match="level"):
        ChunkStore(bank.section("x"), compression_level=99)


def test_public_names() -> None:
    import strongroom.datamover as dm

    assert set(dm.__all__) == {
        "AuditResult", "BackupResult", "ChunkStore", "ManifestHeader", "ManifestIncomplete", "ManifestInfo",
        "Parent", "RestoreResult", "VerifyResult",
        "audit", "backup", "incremental", "manifest_digests", "read_manifest_header", "restore", "verify",
    }


def _text(n: int) -> bytes:
    words = [b"strongroom", b"chunk", b"volume", b"manifest", b"bank", b"\n"]
    rng = random.Random(n)
    out = b" ".join(rng.choice(words) for _ in range(n // 5))
    return out[:n].ljust(n, b" ")


def test_a_chunk_the_probe_finds_incompressible_is_stored_raw(bank: Bank) -> None:
    store = ChunkStore(bank.section("projects/p1/chunks"))
    data = os.urandom(1 << 20)
    digest = store.hash(data)
    assert store.put(digest, data) == len(data)
    assert bank.head(f"projects/p1/chunks/{digest[:2]}/{digest}").metadata["compression"] == "none"
    assert store.get(digest, size=len(data)) == data


def test_the_probe_still_compresses_a_chunk_partly_compressible(bank: Bank) -> None:
    """A quarter of text at the end of a random chunk is enough for the probe, spread over the chunk."""
    store = ChunkStore(bank.section("projects/p1/chunks"))
    data = os.urandom(3 << 18) + _text(1 << 18)
    digest = store.hash(data)
    assert store.put(digest, data) < len(data) * 0.9
    assert bank.head(f"projects/p1/chunks/{digest[:2]}/{digest}").metadata["compression"] == "zstd"
    assert store.get(digest) == data


@pytest.mark.parametrize("level", [-5, -1, 1, 3])
def test_every_level_is_read_by_a_store_of_another_level(bank: Bank, level: int) -> None:
    """The stored format does not depend on the level: today's readers read chunks of any level."""
    writer = ChunkStore(bank.section("projects/p1/chunks"), compression_level=level)
    reader = ChunkStore(bank.section("projects/p1/chunks"))
    data = _text(1 << 20)
    digest = writer.hash(data)
    assert writer.put(digest, data) < len(data) // 2
    assert bank.head(f"projects/p1/chunks/{digest[:2]}/{digest}").metadata["compression"] == "zstd"
    assert reader.get(digest, size=len(data)) == data
    reader.check(digest, len(data))
