"""Expected errors (404, 400, 409, 403, 503) cross RPC as answers: the caller gets them, the server's log
does not hold them at ERROR with a traceback.  Unexpected ones still are logged so.  The real protection
manager over ``fake://`` (and the machine's RabbitMQ when it runs)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strongroom import config, exceptions, rpc
from strongroom.context import get_context
from strongroom.db.api import Database
from strongroom.protection.providers import ProviderRegistry
from strongroom.protection.rpcapi import ProtectionAPI
from strongroom.protection.wiring import protection_manager
from tests.unit.protection.test_providers import GOOD, write
from tests.unit.protection.test_rpc_transports import transports


def _noisy(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name} {r.levelname} {r.getMessage()}" for r in caplog.records
            if r.levelno >= logging.WARNING or r.exc_info]


@pytest.fixture(params=transports())
def protection(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProtectionAPI]:
    conf = config.new_conf()
    transport = rpc.get_transport(conf, url=request.param)
    registry = ProviderRegistry.load(str(write(tmp_path, GOOD)), str(tmp_path))
    db = Database(f"sqlite:///{tmp_path / 'meta.sqlite'}")
    db.sync()
    manager = protection_manager(db, registry, host="rpc-test")
    topic = f"strongroom-test-{uuid.uuid4().hex[:8]}"
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


def test_expected_errors_of_the_manager_are_not_logged_as_errors(protection: ProtectionAPI,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ctx = get_context("proj")
    [provider] = protection.list_providers(ctx)
    for _ in range(3):
        with pytest.raises(exceptions.NotFound, match="no-such-provider"):
            protection.show_provider(ctx, "no-such-provider")
        with pytest.raises(exceptions.NotFound):
            protection.show_protectable_type(ctx, "OS::Nova::Nothing")
        with pytest.raises(exceptions.InvalidInput, match="colour"):
            protection.validate_plan_parameters(ctx, provider["id"], {"OS::Cinder::Volume": {"colour": 1}})
        with pytest.raises(exceptions.NotFound):
            protection.restore(ctx, str(uuid.uuid4()))
    assert _noisy(caplog) == []
    assert any("answered NotFound" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


class _Endpoint:
    def conflict(self, ctxt: Any) -> None:
        raise exceptions.InvalidStatusTransition(kind="Checkpoint", id="c", current="protecting", target="deleting")

    def forbidden(self, ctxt: Any) -> None:
        raise exceptions.Forbidden(reason="no")

    def unavailable(self, ctxt: Any) -> None:
        raise exceptions.ServiceUnavailable(what="bank", reason="down")

    def bug(self, ctxt: Any) -> None:
        raise RuntimeError("a bug")

    def ok(self, ctxt: Any, value: int) -> int:
        return value + 1


def test_every_expected_kind_reaches_the_caller_quietly_and_bugs_stay_loud(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    transport = rpc.get_transport(config.new_conf(), url="fake://")
    server = rpc.get_server(transport, "expected-errors", "host", [_Endpoint()])
    server.start()
    client = rpc.get_client(transport, "expected-errors", timeout=10).prepare()
    ctx = get_context("proj")
    try:
        assert client.call(ctx, "ok", value=1) == 2
        for method, kind in (("conflict", exceptions.InvalidStatusTransition), ("forbidden", exceptions.Forbidden),
                             ("unavailable", exceptions.ServiceUnavailable)):
            with pytest.raises(kind):
                client.call(ctx, method)
        assert _noisy(caplog) == []
        with pytest.raises(Exception, match="a bug"):
            client.call(ctx, "bug")
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and errors[0].exc_info is not None  # a bug keeps its traceback
    finally:
        server.stop()
        server.wait()
        transport.cleanup()
