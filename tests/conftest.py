"""Selects oslo.service's threading backend before any test imports oslo.messaging."""

from strongroom import backend

backend.init()

# Session fixtures that start real servers (only when a test asks for them).
pytest_plugins = ["tests.servers.swift", "tests.servers.moto", "tests.servers.ceph", "tests.servers.cinder"]
