"""Immutable retention on a real moto_server (issue 13, done-when 4; ``doc/immutability.md``).

The service runs in this process (the real API on port 0, the real protection service, sqlite) with an s3
bank whose bucket has Object Lock, and a clock that runs one day minus ``LOCK_SECONDS`` (40) behind real time.
A plan with ``retention_lock_days = 1`` then locks each checkpoint until ``LOCK_SECONDS`` of *real* time
after its creation: moto compares lock dates with its real clock (it has no API to move them), and a day
is the unit of the option.  Once the locks have lapsed by moto's clock, the service's clock is set to real
time (the day has passed), and the checkpoint is deleted normally.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from strongroom import backend

backend.init()  # threading backend for oslo.service before oslo.messaging is imported (test harness only)

from strongroom import exceptions  # noqa: E402
from strongroom.bank_plugins import Bank  # noqa: E402
from strongroom.bank_plugins.layout import BankLayout  # noqa: E402
from strongroom.clock import Clock  # noqa: E402
from strongroom.config import new_conf  # noqa: E402
from strongroom.operationengine import retention  # noqa: E402
from strongroom.protection.checkpoint import CheckpointStore  # noqa: E402
from strongroom.service import Services  # noqa: E402
from tests.functional.banks import referenced_chunks  # noqa: E402
from tests.servers.moto import MotoServer  # noqa: E402

PROVIDER_ID = "5c0e7a52-4f3b-4b8e-9d0c-0b7a1f2e3d4c"
FS_PROVIDER_ID = "0d5b7e2a-9c41-4e6f-8a3b-2f1c0e9d8b7a"
PROJECT = "demo"
VOLUME = "OS::Cinder::Volume"
CHUNK = 65536
#: Real seconds a checkpoint stays locked: long enough for the checks below, short enough to wait out.
LOCK_SECONDS = 40
DAY = _dt.timedelta(days=1)


class OffsetClock(Clock):
    """Real time plus an offset the test changes (monotonic time is the real one)."""

    def __init__(self, offset: _dt.timedelta) -> None:
        self.offset = offset

    def now(self) -> _dt.datetime:
        return _dt.datetime.now(_dt.UTC) + self.offset


def _ini(options: dict[str, Any]) -> str:
    return "".join(f"{k} = {str(v).lower() if isinstance(v, bool) else v}\n" for k, v in options.items())


@contextlib.contextmanager
def service(tmp_path: Path, s3_options: dict[str, Any], clock: Clock) -> Iterator[Services]:
    state = tmp_path / "state"
    (state / "volumes").mkdir(parents=True)
    providers = tmp_path / "providers.d"
    providers.mkdir()
    volume = f"[volume]\nblock_backend = loopback\nchunk_size = {CHUNK}\nworkers = 2\n\n" \
             f"[loopback]\npath = {state / 'volumes'}\n\n"
    (providers / "s3.conf").write_text(
        f"[provider]\nname = Locked\nid = {PROVIDER_ID}\nplugin = volume\nbank = s3\n\n{volume}"
        f"[s3]\n{_ini(s3_options)}")
    (providers / "fs.conf").write_text(
        f"[provider]\nname = Plain\nid = {FS_PROVIDER_ID}\nplugin = volume\nbank = fs\n\n{volume}"
        f"[fs]\npath = {state / 'bank'}\n")
    conf = new_conf(overrides={
        "DEFAULT": {"state_dir": str(state), "providers_dir": str(providers), "heartbeat_interval": 60},
        "api": {"bind_port": 0, "threads": 4},
        "protection": {"gc_interval": 0, "gc_chunk_grace_period": 0, "bank_retry_attempts": 4,
                       "bank_retry_initial_delay": 0.05},
    })
    services = Services(conf, transport_url="fake://", embedded=True, clock=clock, run_operationengine=False)
    services.start()
    try:
        yield services
    finally:
        services.stop(graceful=True, timeout=30)


class Client:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.url = f"{services.url}/v1/{PROJECT}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.url + path, timeout=30, **kwargs)

    def plan(self, provider_id: str, volume: str, parameters: dict[str, Any]) -> requests.Response:
        return self.call("POST", "/plans", json={"plan": {
            "name": "locked", "provider_id": provider_id, "parameters": parameters,
            "resources": [{"id": volume, "type": VOLUME, "name": volume}]}})

    def protected(self, plan_id: str) -> dict[str, Any]:
        resp = self.call("POST", f"/providers/{PROVIDER_ID}/checkpoints", json={"checkpoint": {"plan_id": plan_id}})
        assert resp.status_code == 200, resp.text
        self.services.manager.wait_idle(120)
        return self.checkpoint(resp.json()["checkpoint"]["id"])

    def checkpoint(self, checkpoint_id: str) -> dict[str, Any]:
        resp = self.call("GET", f"/providers/{PROVIDER_ID}/checkpoints/{checkpoint_id}")
        assert resp.status_code == 200, resp.text
        return resp.json()["checkpoint"]  # type: ignore[no-any-return]

    def delete(self, checkpoint_id: str) -> requests.Response:
        return self.call("DELETE", f"/providers/{PROVIDER_ID}/checkpoints/{checkpoint_id}")


def _raw_versions(client: Any, bucket: str, key: str) -> list[str]:
    page = client.list_object_versions(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for v in page.get("Versions", ()) if v["Key"] == key]


def _refused_raw_delete(client: Any, bucket: str, key: str) -> None:
    """A delete of the current version of ``key`` (the one its publish locked; an index's older versions,
    ``protecting``, are stale) with the service's own credentials: the server refuses it."""
    from botocore.exceptions import ClientError

    versions = _raw_versions(client, bucket, key)
    assert versions, key
    with pytest.raises(ClientError) as excinfo:
        client.delete_object(Bucket=bucket, Key=key, VersionId=versions[0])  # newest first
    assert excinfo.value.response["Error"]["Code"] == "AccessDenied", key


def _collect(services: Services) -> list[dict[str, Any]]:
    return services.manager.collection.collect(PROVIDER_ID)  # type: ignore[no-any-return]


def test_locked_checkpoint_survives_delete_retention_gc_and_raw_deletes(tmp_path: Path,
                                                                         moto_server: MotoServer) -> None:
    bucket = moto_server.new_bucket("locked")
    options = moto_server.bank_options(bucket, object_lock=True)  # GOVERNANCE, the default
    clock = OffsetClock(-DAY + _dt.timedelta(seconds=LOCK_SECONDS))
    raw = moto_server.client()  # the service's own credentials: the bank options' access key and secret
    assert raw.meta.config is not None and options["access_key_id"] == moto_server.access_key
    with service(tmp_path, options, clock) as services:
        api = Client(services)
        volumes = tmp_path / "state" / "volumes"
        (volumes / "disk.img").write_bytes(bytes(range(256)) * (6 * CHUNK // 256))

        # A bank without object lock: refused at plan creation, naming the provider and its bank.
        refused = api.plan(FS_PROVIDER_ID, "disk.img", {"retention_lock_days": 1})
        assert refused.status_code == 400, refused.text
        message = refused.json()["badRequest"]["message"]
        assert "retention_lock_days" in message and FS_PROVIDER_ID in message and "'fs'" in message
        bad = api.plan(PROVIDER_ID, "disk.img", {"retention_lock_days": 0})
        assert bad.status_code == 400 and "retention_lock_days" in bad.text

        plain_plan = api.plan(FS_PROVIDER_ID, "disk.img", {})
        assert plain_plan.status_code == 200, plain_plan.text
        trigger = api.call("POST", "/triggers", json={"trigger_info": {
            "name": "hourly", "type": "time", "properties": {"format": "crontab", "pattern": "0 * * * *"}}})
        assert trigger.status_code == 200, trigger.text
        op = api.call("POST", "/scheduled_operations", json={"scheduled_operation": {
            "name": "locked", "operation_type": "protect", "trigger_id": trigger.json()["trigger_info"]["id"],
            "operation_definition": {"provider_id": FS_PROVIDER_ID, "plan_id": plain_plan.json()["plan"]["id"],
                                     "retention_lock_days": 1}}})
        assert op.status_code == 400, op.text
        message = op.json()["badRequest"]["message"]
        assert "operation_definition.retention_lock_days" in message and FS_PROVIDER_ID in message, message

        created = api.plan(PROVIDER_ID, "disk.img", {"retention_lock_days": 1})
        assert created.status_code == 200, created.text
        plan_id = created.json()["plan"]["id"]
        accepted = api.call("POST", "/scheduled_operations", json={"scheduled_operation": {
            "name": "locked", "operation_type": "retention_protect",
            "trigger_id": trigger.json()["trigger_info"]["id"],
            "operation_definition": {"provider_id": PROVIDER_ID, "plan_id": plan_id, "max_backups": 1,
                                     "retention_lock_days": 2}}})
        assert accepted.status_code == 200, accepted.text
        first = api.protected(plan_id)
        assert first["status"] == "available", first
        until = _dt.datetime.fromisoformat(first["extra_info"]["locked_until"])
        created_at = _dt.datetime.fromisoformat(first["created_at"])
        assert until == created_at.astimezone(_dt.UTC) + DAY
        assert "lock_error" not in first["extra_info"]

        bank: Bank = services.registry.get(PROVIDER_ID).bank
        store = CheckpointStore(bank)
        assert store.read(first["id"]).extra_info["locked_until"] == until.isoformat()  # the index says it too
        project = store.read(first["id"]).project_id
        chunk_prefix = bank.section(BankLayout.chunks_prefix(project)).prefix
        chunks = sorted(referenced_chunks(bank, first["id"]))
        assert chunks
        chunk_keys = [chunk_prefix + BankLayout.chunk_key(d) for d in chunks]
        index_key = BankLayout.index_key(first["id"])
        own = [k for k in bank.iter(BankLayout.checkpoint_prefix(first["id"]))]
        rounded = until.replace(microsecond=0) + _dt.timedelta(seconds=1 if until.microsecond else 0)
        data_keys = [k for k in bank.iter(BankLayout.keys_prefix(project))]
        assert data_keys, "encryption at rest is on by default: the project has a wrapped data key"
        for key in chunk_keys + own + data_keys:
            assert bank.object_lock(key) == rounded, key
        # A KEK rotation rewrites each wrapped data key: the new version keeps the lock.
        assert bank.keyring is not None
        bank.keyring.rotate(delete_old=False)
        for key in data_keys:
            assert bank.object_lock(key) == rounded, key

        # A second checkpoint of the same volume shares every chunk: they take its later date.
        time.sleep(2)
        second = api.protected(plan_id)
        assert second["status"] == "available", second
        second_until = _dt.datetime.fromisoformat(second["extra_info"]["locked_until"])
        assert second_until > until
        assert set(referenced_chunks(bank, second["id"])) == set(chunks)
        for key in chunk_keys:
            lock = bank.object_lock(key)
            assert lock is not None and lock > rounded, key

        # DELETE through the API: 409 naming the date it unlocks.
        resp = api.delete(first["id"])
        assert resp.status_code == 409, resp.text
        assert until.isoformat() in resp.json()["conflict"]["message"]
        assert api.checkpoint(first["id"])["status"] == "available"

        # Retention (the engine's decision): due, but locked, so not deleted and no delete is tried.
        rows = services.db.list_checkpoints(PROVIDER_ID, PROJECT, filters={"plan_id": plan_id})
        decision = retention.decide(retention.Policy(max_backups=1), rows, clock.now())
        assert decision.delete == [] and decision.due == {first["id"]: until.isoformat()}

        # Garbage collection: a locked chunk nobody references is left alone, and that is no error.
        orphan = chunk_prefix + BankLayout.chunk_key("f" * 64)
        bank.put(orphan, b"orphan")
        bank.lock(orphan, until)
        [report] = _collect(services)
        assert report["errors"] == [] and report["chunks_removed"] == 0, report
        assert bank.exists(orphan) and all(bank.exists(k) for k in chunk_keys)

        # The service's own credentials cannot remove a locked chunk or index version behind its back.
        _refused_raw_delete(raw, bucket, chunk_keys[0])
        _refused_raw_delete(raw, bucket, index_key)
        _refused_raw_delete(raw, bucket, data_keys[0])
        with pytest.raises(exceptions.BankObjectLocked) as excinfo:
            bank.delete(chunk_keys[0])
        assert chunk_keys[0] in str(excinfo.value)
        assert api.checkpoint(first["id"])["status"] == "available"

        # After the lock date (moto's real clock), with the service's clock a day later: deleted normally.
        wait = (second_until.replace(microsecond=0) + _dt.timedelta(seconds=2) - _dt.datetime.now(_dt.UTC))
        time.sleep(max(wait.total_seconds(), 0))
        clock.offset = _dt.timedelta(0)
        rows = services.db.list_checkpoints(PROVIDER_ID, PROJECT, filters={"plan_id": plan_id})
        decision = retention.decide(retention.Policy(max_backups=1), rows, clock.now())
        assert decision.delete == [first["id"]] and decision.due == {}
        resp = api.delete(first["id"])
        assert resp.status_code == 202, resp.text
        services.manager.wait_idle(120)
        assert api.checkpoint(first["id"])["status"] == "deleted"
        assert _raw_versions(raw, bucket, BankLayout.checkpoint_prefix(first["id"]) + "resources") == []
        # The second one's chunks (shared) stay: referenced, not locked any more, and not swept.
        assert all(bank.exists(k) for k in chunk_keys)
        resp = api.delete(second["id"])
        assert resp.status_code == 202, resp.text
        services.manager.wait_idle(120)
        assert api.checkpoint(second["id"])["status"] == "deleted"
        [report] = _collect(services)
        assert report["errors"] == [], report
        for key in [*chunk_keys, orphan]:
            assert not bank.exists(key) and _raw_versions(raw, bucket, key) == [], key
    raw.close()


def test_a_copy_to_a_locked_bank_is_locked_there(tmp_path: Path, moto_server: MotoServer) -> None:
    """The offsite immutable copy: checkpoints taken on a filesystem bank (no lock), copied to an S3 bank with
    Object Lock with ``retention_lock_days``: the copy is locked there (API delete 409, raw deletes refused),
    the source stays deletable; a lock asked of a bank that cannot keep it is refused, naming the field."""
    bucket = moto_server.new_bucket("offsite")
    raw = moto_server.client()
    with service(tmp_path, moto_server.bank_options(bucket, object_lock=True), OffsetClock(_dt.timedelta(0))) as svc:
        api = Client(svc)
        (tmp_path / "state" / "volumes" / "disk.img").write_bytes(bytes(range(256)) * (4 * CHUNK // 256))
        created = api.plan(FS_PROVIDER_ID, "disk.img", {})
        assert created.status_code == 200, created.text
        plan_id = created.json()["plan"]["id"]
        fs_cps = f"/providers/{FS_PROVIDER_ID}/checkpoints"
        taken = api.call("POST", fs_cps, json={"checkpoint": {"plan_id": plan_id}})
        assert taken.status_code == 200, taken.text
        svc.manager.wait_idle(120)
        cp_id = taken.json()["checkpoint"]["id"]

        def copy(target: str, parameters: dict[str, Any], source: str = FS_PROVIDER_ID) -> requests.Response:
            return api.call("POST", f"/providers/{source}/checkpoints/action", json={"copy": {
                "plan_id": plan_id, "parameters": {"target_provider_id": target, **parameters}}})

        # A copy locked in a bank that cannot lock is refused, naming the field and that bank; the lock of a
        # scheduled copy is checked against its target's bank, not its plan's.
        s3_plan = api.plan(PROVIDER_ID, "disk.img", {})
        assert s3_plan.status_code == 200, s3_plan.text
        s3_plan_id = s3_plan.json()["plan"]["id"]
        refused = api.call("POST", f"/providers/{PROVIDER_ID}/checkpoints/action", json={"copy": {
            "plan_id": s3_plan_id, "parameters": {"target_provider_id": FS_PROVIDER_ID, "retention_lock_days": 1}}})
        assert refused.status_code == 400, refused.text
        message = refused.json()["badRequest"]["message"]
        assert "copy.parameters.retention_lock_days: bank 'fs'" in message, message
        bad = copy(PROVIDER_ID, {"retention_lock_days": 0})
        assert bad.status_code == 400 and "retention_lock_days" in bad.text, bad.text
        trigger = api.call("POST", "/triggers", json={"trigger_info": {
            "name": "hourly", "type": "time", "properties": {"format": "crontab", "pattern": "0 * * * *"}}})
        assert trigger.status_code == 200, trigger.text
        trigger_id = trigger.json()["trigger_info"]["id"]

        def scheduled(plan: str, provider: str, target: str) -> requests.Response:
            return api.call("POST", "/scheduled_operations", json={"scheduled_operation": {
                "name": "offsite", "operation_type": "copy", "trigger_id": trigger_id,
                "operation_definition": {"provider_id": provider, "plan_id": plan, "target_provider_id": target,
                                         "retention_lock_days": 3}}})

        answer = scheduled(s3_plan_id, PROVIDER_ID, FS_PROVIDER_ID)
        assert answer.status_code == 400 and FS_PROVIDER_ID in answer.text, answer.text
        answer = scheduled(plan_id, FS_PROVIDER_ID, PROVIDER_ID)
        assert answer.status_code == 200, answer.text

        started = copy(PROVIDER_ID, {"retention_lock_days": 2})
        assert started.status_code == 200, started.text
        assert started.json()["copy"]["checkpoints"] == [cp_id]
        svc.manager.wait_idle(120)
        there = api.call("GET", f"/providers/{PROVIDER_ID}/checkpoints/{cp_id}").json()["checkpoint"]
        assert there["status"] == "available", there
        source = api.call("GET", f"{fs_cps}/{cp_id}").json()["checkpoint"]
        until = _dt.datetime.fromisoformat(there["extra_info"]["locked_until"])
        assert until == _dt.datetime.fromisoformat(source["created_at"]).astimezone(_dt.UTC) + 2 * DAY
        assert "lock_error" not in there["extra_info"] and "locked_until" not in source["extra_info"]

        bank: Bank = svc.registry.get(PROVIDER_ID).bank
        chunk_prefix = bank.section(BankLayout.chunks_prefix(CheckpointStore(bank).read(cp_id).project_id)).prefix
        chunk_keys = [chunk_prefix + BankLayout.chunk_key(d) for d in sorted(referenced_chunks(bank, cp_id))]
        assert chunk_keys
        _refused_raw_delete(raw, bucket, chunk_keys[0])
        _refused_raw_delete(raw, bucket, BankLayout.index_key(cp_id))
        refused = api.call("DELETE", f"/providers/{PROVIDER_ID}/checkpoints/{cp_id}")
        assert refused.status_code == 409 and until.isoformat() in refused.text, refused.text
        # The source, in a bank without lock, is not held by its copy's lock.
        assert api.call("DELETE", f"{fs_cps}/{cp_id}").status_code == 202
        svc.manager.wait_idle(120)
        assert api.call("GET", f"{fs_cps}/{cp_id}").json()["checkpoint"]["status"] == "deleted"
        assert api.call("GET", f"/providers/{PROVIDER_ID}/checkpoints/{cp_id}").json()["checkpoint"][
            "status"] == "available"
    raw.close()
