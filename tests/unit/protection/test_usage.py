"""The usage walk's corner cases and its cache (the figures against a real protect: tests/functional/test_usage.py)."""

from __future__ import annotations

from strongroom.bank_plugins.bank import Bank
from strongroom.bank_plugins.layout import BankLayout
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.clock import FakeClock
from strongroom.protection.usage import UsageCache, bank_usage

DIGEST = "ab" + "0" * 62


def test_a_chunk_no_checkpoint_references_is_unreferenced_not_stored() -> None:
    bank = Bank(MemoryBank({}), name="unit")
    bank.put(f"{BankLayout.chunks_prefix('p')}/{BankLayout.chunk_key(DIGEST)}", b"x" * 100)
    (row,) = bank_usage(bank, {"p"}).values()
    assert row["unreferenced_chunk_bytes"] == 100
    assert row["chunk_bytes"] == row["stored_bytes"] == row["logical_bytes"] == 0
    assert row["checkpoints"] == {} and row["dedup_ratio"] == row["compression_ratio"] == 1.0
    # Another project's chunks are not this one's, and every-project scope lists only projects with checkpoints.
    assert bank_usage(bank, {"q"})["q"]["unreferenced_chunk_bytes"] == 0
    assert bank_usage(bank, None) == {}


def test_the_cache_keeps_an_answer_for_its_ttl_while_the_catalogue_is_unchanged() -> None:
    clock = FakeClock()
    cache = UsageCache(60, clock)
    walks: list[int] = []

    def walk() -> dict:
        walks.append(1)
        return {"p": {"walk": len(walks)}}

    assert cache.get("prov", "p", "v1", walk) == {"p": {"walk": 1}}
    clock.advance(59)
    assert cache.get("prov", "p", "v1", walk) == {"p": {"walk": 1}}  # kept
    assert cache.get("prov", "p", "v2", walk) == {"p": {"walk": 2}}  # a checkpoint changed: walked again
    assert cache.get("other", "p", "v2", walk) == {"p": {"walk": 3}}  # per provider
    clock.advance(61)
    assert cache.get("prov", "p", "v2", walk) == {"p": {"walk": 4}}  # too old
    uncached = UsageCache(0, clock)
    uncached.get("prov", "p", "v", walk)
    uncached.get("prov", "p", "v", walk)
    assert len(walks) == 6
