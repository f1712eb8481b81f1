"""Service rows on every database: filters, lookup, the disabled flag workers consult, the heartbeat loop."""

from __future__ import annotations

import threading

import pytest

from strongroom import exceptions, heartbeat
from strongroom.db.api import Database


def test_list_filters_get_and_disabled_flag(db: Database) -> None:
    a = db.service_heartbeat("node-a", "strongroom-protection", "strongroom-protection")
    b = db.service_heartbeat("node-a", "strongroom-operationengine")
    c = db.service_heartbeat("node-b", "strongroom-protection")
    assert [s.id for s in db.list_services()] == [a.id, b.id, c.id]
    assert [s.id for s in db.list_services(host="node-a")] == [a.id, b.id]
    assert [s.id for s in db.list_services(binary="strongroom-protection")] == [a.id, c.id]
    assert [s.id for s in db.list_services(host="node-b", binary="strongroom-protection")] == [c.id]
    assert db.list_services(host="node-c") == []
    assert db.get_service(b.id).binary == "strongroom-operationengine"
    with pytest.raises(exceptions.NotFound):
        db.get_service(c.id + 1000)

    assert db.service_is_disabled("node-a", "strongroom-protection") is False
    db.update_service(a.id, {"disabled": True, "disabled_reason": "maintenance"})
    assert db.service_is_disabled("node-a", "strongroom-protection") is True
    assert db.service_is_disabled("node-b", "strongroom-protection") is False
    assert db.service_is_disabled("node-z", "strongroom-protection") is False


def test_heartbeat_loop_beats_until_stopped(db: Database) -> None:
    beats: list[str] = []
    two_beats = threading.Event()

    class Counting:
        def service_heartbeat(self, host: str, binary: str, topic: str) -> object:
            beats.append(binary)
            if len(beats) >= 4:
                two_beats.set()
            return db.service_heartbeat(host, binary, topic)

    stop = threading.Event()
    loop = threading.Thread(target=heartbeat.run, args=(Counting(), "node-h", ["strongroom-api",
                                                                             "strongroom-protection"],
                                                        "topic-x", 0.01, stop))
    loop.start()
    assert two_beats.wait(10)
    stop.set()
    loop.join(10)
    assert not loop.is_alive()
    assert beats[:4] == ["strongroom-api", "strongroom-protection"] * 2
    assert {(s.host, s.binary, s.topic) for s in db.list_services(host="node-h")} == {
        ("node-h", "strongroom-api", "topic-x"), ("node-h", "strongroom-protection", "topic-x")}


def test_a_failed_beat_is_not_fatal() -> None:
    calls: list[int] = []
    stop = threading.Event()

    class Broken:
        def service_heartbeat(self, host: str, binary: str, topic: str) -> object:
            calls.append(1)
            if len(calls) >= 3:
                stop.set()
            raise exceptions.ServiceUnavailable(what="metadata store", reason="down")

    heartbeat.run(Broken(), "node", ["strongroom-protection"], "", 0.001, stop)
    assert len(calls) == 3
