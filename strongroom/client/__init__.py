"""Python client and ``strongroom`` CLI of the Strongroom v1 REST API (pure HTTP: no server imports)."""

from __future__ import annotations

from strongroom.client.client import Client, ClientError

__all__ = ["Client", "ClientError"]
