"""The checkpoints quota on the real protect path: API -> RPC -> manager -> catalogue -> the row's transaction."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.protection.embedded import PROJECT, Embedded, embedded

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Embedded]:
    with embedded(tmp_path) as running:
        yield running


def test_a_protect_over_the_checkpoints_quota_answers_413_and_leaves_nothing_in_the_bank(stack: Embedded) -> None:
    plan = stack.plan(stack.volume("vol", os.urandom(50_000)))
    stack.db.set_project_quotas(PROJECT, {"checkpoints": 1})
    first = stack.protected(plan)
    assert first["status"] == "available", first
    resp = stack.protect(plan)
    assert resp.status_code == 413, resp.text
    assert resp.json()["requestEntityTooLarge"]["message"] == "Quota exceeded for checkpoints: limit 1, in use 1"
    assert [cp.id for cp in stack.db.list_checkpoints(None, None)] == [first["id"]]
    assert stack.store.list_ids() == [first["id"]] and not list(stack.store.active_markers())
