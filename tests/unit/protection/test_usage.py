"""The usage walk's corner cases and its cache (the figures against a real protect: tests/functional/test_usage.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.bank_plugins.bank import Bank
from strongroom.bank_plugins.layout import BankLayout
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.clock import FakeClock
from strongroom.protection.usage import UsageCache, bank_usage
from strongroom.testing.faults import Fault
from tests.unit.protection.embedded import CHUNK, Embedded, embedded

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


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Embedded]:
    with embedded(tmp_path, usage_cache_seconds=0) as running:
        yield running


def test_a_damaged_manifest_is_counted_not_a_server_error(stack: Embedded) -> None:
    plan = stack.plan(stack.volume("a.img", os.urandom(3 * CHUNK)), stack.volume("b.img", os.urandom(2 * CHUNK)))
    checkpoint = stack.protected(plan)
    assert checkpoint["status"] == "available"
    before = stack.call("GET", "/usage").json()["usage"][0]
    assert before["unreadable_checkpoints"] == 0 and before["logical_bytes"] == 8 * CHUNK

    # One of the two volumes' manifest parts overwritten with garbage, as a bit rot would.
    (part, *_) = [k for k in stack.bank.plugin.iter_objects(f"checkpoints/{checkpoint['id']}/")
                  if "/data/parts/" in k]
    stack.bank.plugin.put_object(part, b"garbage")
    after = stack.call("GET", "/usage")
    assert after.status_code == 200, after.text
    (row,) = after.json()["usage"]
    assert row["unreadable_checkpoints"] == 1
    assert row["logical_bytes"] == 4 * CHUNK  # the other volume is still counted
    assert row["unreferenced_chunk_bytes"] > 0  # the damaged one's chunks are no longer known referenced


def test_a_bank_that_fails_answers_503_naming_it(stack: Embedded) -> None:
    stack.faults.inject(Fault.PERMANENT, operations={"list_objects"})
    answer = stack.call("GET", "/usage")
    assert answer.status_code == 503, answer.text
    assert "bank 'fs' of provider 'Local'" in answer.text
