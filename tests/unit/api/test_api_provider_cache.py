"""The API remembers the provider ids the protection service confirmed for ``[api] provider_cache_ttl``
seconds (listing a provider's checkpoints asked it over RPC every time); an unknown id is asked every time."""

from __future__ import annotations

from typing import Any

import pytest

from strongroom import exceptions
from strongroom.api.common import KnownProviders

KNOWN = "7b1c6a4e-2f0d-4c8e-9a51-3e2d8f6b0c11"
OTHER = "e4008868-be97-492c-be41-44e50ef2e16f"


class Protection:
    def __init__(self) -> None:
        self.providers = {KNOWN}
        self.asked: list[str] = []

    def show_provider(self, ctx: Any, provider_id: str) -> dict[str, Any]:
        self.asked.append(provider_id)
        if provider_id not in self.providers:
            raise exceptions.NotFound(kind="Provider", id=provider_id)
        return {"id": provider_id}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_confirmed_provider_is_asked_again_only_after_the_ttl() -> None:
    protection, clock = Protection(), Clock()
    known = KnownProviders(10.0, clock=clock)
    for _ in range(3):
        known.check(protection, None, KNOWN)  # type: ignore[arg-type]
    assert protection.asked == [KNOWN]
    clock.now += 9.9
    known.check(protection, None, KNOWN)  # type: ignore[arg-type]
    assert protection.asked == [KNOWN]
    clock.now += 0.2  # past the ttl: asked, and a provider removed meanwhile is now unknown
    protection.providers.clear()
    with pytest.raises(exceptions.NotFound):
        known.check(protection, None, KNOWN)  # type: ignore[arg-type]
    with pytest.raises(exceptions.NotFound):
        known.check(protection, None, KNOWN)  # type: ignore[arg-type]
    assert protection.asked == [KNOWN] * 3


def test_an_unknown_provider_is_asked_every_time_and_found_once_it_exists() -> None:
    protection = Protection()
    known = KnownProviders(10.0, clock=Clock())
    for _ in range(2):
        with pytest.raises(exceptions.NotFound):
            known.check(protection, None, OTHER)  # type: ignore[arg-type]
    protection.providers.add(OTHER)
    known.check(protection, None, OTHER)  # type: ignore[arg-type]
    assert protection.asked == [OTHER] * 3


def test_ttl_zero_asks_every_time() -> None:
    protection = Protection()
    known = KnownProviders(0.0, clock=Clock())
    for _ in range(3):
        known.check(protection, None, KNOWN)  # type: ignore[arg-type]
    assert protection.asked == [KNOWN] * 3
