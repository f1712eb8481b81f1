"""What an administrator sees of a provider's block backends: driver, pools, capacity; errors without secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from strongroom import exceptions
from strongroom.block.base import BackendStats
from strongroom.block.memory import MemoryBlockBackend
from strongroom.protection import capacity
from strongroom.protection.providers import ProviderRegistry
from tests.unit.protection.test_providers import GOOD, load, write


def test_a_provider_shows_its_backend_pools_and_capacity(tmp_path: Path) -> None:
    registry = load(write(tmp_path, GOOD), tmp_path)
    [provider] = registry.providers()
    provider.block_backend("memory").create_volume(1 << 20, name="vol")
    [shown] = capacity.provider_backends(provider)
    assert shown == {"name": "memory", "driver": "memory", "pools": [
        {"name": "memory", "total_bytes": 1 << 30, "free_bytes": 1 << 30, "allocated_bytes": 0}]}
    registry.close()


class _Down(MemoryBlockBackend):
    secret_options = frozenset({"password"})

    def stats(self) -> BackendStats:
        raise exceptions.ServiceUnavailable(what="cluster", reason=f"refused with {self.options['password']}")


def test_a_backend_that_cannot_answer_shows_an_error_without_its_secrets() -> None:
    backend = _Down({"password": "hunter2-very-secret"})
    shown: dict[str, Any] = capacity.backend_view("down", backend)
    assert shown["pools"] == [] and "cluster is unavailable" in shown["error"]
    assert "hunter2" not in shown["error"]


def test_providers_of_one_registry_each_show_their_own_backend(tmp_path: Path) -> None:
    directory = write(tmp_path, GOOD)
    other = GOOD.replace("11111111-2222-3333-4444-555555555555", "22222222-2222-3333-4444-555555555555") \
        .replace("name = Test", "name = Other").replace("capacity = 1073741824", "capacity = 2147483648")
    write(tmp_path, other, "q.conf")
    registry: ProviderRegistry = load(directory, tmp_path)
    totals = {p.name: capacity.provider_backends(p)[0]["pools"][0]["total_bytes"] for p in registry.providers()}
    assert totals == {"Test": 1 << 30, "Other": 2 << 30}
    registry.close()
