"""The names of a backend's volumes and of the staged volumes that will be published under them.

A restore writes a staged volume, hidden behind a prefix, and publishes it under its name once whole
(:meth:`~strongroom.block.base.BlockBackend.publish_volume`). Every backend that names volumes itself
(loopback files, RBD images, qcow2 files) keeps that mapping here, with its own prefix and name rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from strongroom import exceptions


class StagedNames:
    """Valid volume names (``validate`` raises ``InvalidInput`` for others) and their staged twins."""

    def __init__(self, prefix: str, validate: Callable[[Any], str]) -> None:
        self.prefix = prefix
        self._validate = validate

    def is_valid(self, name: Any) -> bool:
        """Whether ``name`` may name a volume of the backend."""
        try:
            self._validate(name)
        except exceptions.InvalidInput:
            return False
        return True

    def staged_id(self, name: str) -> str:
        """The id of the staged volume that will be published as ``name``."""
        return self.prefix + name

    def name_of_staged(self, volume_id: Any) -> str | None:
        """The name a staged volume's id will be published as, or None if it is no staged volume's id."""
        if not isinstance(volume_id, str) or not volume_id.startswith(self.prefix):
            return None
        name = volume_id[len(self.prefix):]
        return name if self.is_valid(name) else None
