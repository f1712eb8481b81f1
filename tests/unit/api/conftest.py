from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apiharness import Stack, running_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("api"))) as running:
        yield running
