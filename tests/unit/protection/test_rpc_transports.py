"""The same rpcapi/manager code over the in-process transport and over the machine's real RabbitMQ."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom import config, exceptions, rpc
from strongroom.context import get_context
from strongroom.db.api import Database
from strongroom.protection.providers import ProviderRegistry
from strongroom.protection.rpcapi import ProtectionAPI
from strongroom.protection.wiring import protection_manager
from tests.unit.protection.test_providers import GOOD, write

RABBIT = "rabbit://guest:guest@127.0.0.1:5672/"


def rabbit_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
        return True
    except OSError:
        return False


def transports() -> list[str]:
    out = ["fake://"]
    if rabbit_reachable() or os.environ.get("CI") == "true":
        out.append(RABBIT)
    return out


@pytest.fixture(params=transports())
def protection(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProtectionAPI]:
    conf = config.new_conf()
    transport = rpc.get_transport(conf, url=request.param)
    registry = ProviderRegistry.load(str(write(tmp_path, GOOD)), str(tmp_path))
    db = Database(f"sqlite:///{tmp_path / 'meta.sqlite'}")
    db.sync()
    manager = protection_manager(db, registry, host="rpc-test")
    topic = f"strongroom-test-{uuid.uuid4().hex[:8]}"  # never shared with another run's queues
    server = rpc.get_server(transport, topic, "rpc-test", [manager])
    server.start()
    try:
        yield ProtectionAPI(transport, topic, timeout=20)
    finally:
        server.stop()
        server.wait()
        manager.stop()
        transport.cleanup()
        db.dispose()


def test_calls_and_errors_cross_the_transport(protection: ProtectionAPI) -> None:
    ctx = get_context("proj")
    [provider] = protection.list_providers(ctx)
    assert provider["name"] == "Test"
    assert protection.show_protectable_type(ctx, "OS::Keystone::Project") == {
        "name": "OS::Keystone::Project", "dependent_types": ["OS::Cinder::Volume"]}
    with pytest.raises(exceptions.NotFound) as info:
        protection.show_provider(ctx, "no-such-provider")
    assert "no-such-provider" in info.value.message
    with pytest.raises(exceptions.InvalidInput) as bad:
        protection.validate_plan_parameters(ctx, provider["id"], {"OS::Cinder::Volume": {"colour": 1}})
    assert "colour" in bad.value.message
