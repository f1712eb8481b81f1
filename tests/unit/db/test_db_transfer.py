"""``strongroom-manage db export`` / ``db import``: sqlite to every reachable server, same API view after.

The round trip populates a sqlite store through the real API (fake protection over fake:// RPC, see
``tests/unit/api/apiharness.py``), exports it with the real ``strongroom-manage`` program, imports the file
into a fresh database on sqlite, PostgreSQL and MariaDB, starts the API on that database and compares the
list and show responses byte for byte.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))  # the shared API test harness

from apiharness import PROVIDER_ID, VOLUME, Stack, running_stack  # noqa: E402

from strongroom import exceptions  # noqa: E402
from strongroom.cmd import manage  # noqa: E402
from strongroom.db import migration, transfer  # noqa: E402
from strongroom.db.api import Database  # noqa: E402
from strongroom.db.models import ALL_MODELS, Base  # noqa: E402
from strongroom.objects.records import OperationLog, Plan, Resource, Restore  # noqa: E402

CP = f"/providers/{PROVIDER_ID}/checkpoints"


def _manage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "strongroom.cmd.manage", *args], capture_output=True, text=True,
                          timeout=120)


#: A service counts as up for six hours after its heartbeat (not one minute): the imported view is compared
#: with the exported one however long the run between them took.
SLOW_HEARTBEATS = {"heartbeat_interval": 3600.0}


def _conf(tmp: Path, url: str) -> str:
    path = tmp / f"strongroom-{uuid.uuid4().hex[:6]}.conf"
    path.write_text(f"[database]\nconnection = {url}\n")
    return str(path)


def _ok(resp: Any) -> dict[str, Any]:
    assert resp.status_code < 300, resp.text
    return dict(resp.json()) if resp.content else {}


def _populate(stack: Stack) -> None:
    """A little of everything, written the way the service writes it."""
    plans = []
    for i, name in enumerate(["nightly", "weekly \u00e9t\u00e9", "\U0001f4be disks"]):
        body = {"plan": {"name": name, "provider_id": PROVIDER_ID, "description": f"plan {i}",
                         "resources": [{"id": f"vol-0{i + 1}", "type": VOLUME, "name": f"volume {i + 1}",
                                        "extra_info": {"size_gb": i, "tags": ["a", "b"]}},
                                       {"id": "vol-07", "type": VOLUME}],
                         "parameters": {VOLUME: {"backup_mode": "full"}}}}
        plans.append(_ok(stack.call("POST", "/plans", body=body))["plan"])
    _ok(stack.call("PUT", f"/plans/{plans[0]['id']}", body={"plan": {"status": "started"}}))
    gone = _ok(stack.call("POST", "/plans", body={"plan": {
        "name": "deleted", "provider_id": PROVIDER_ID, "resources": [{"id": "vol-05", "type": VOLUME}]}}))
    stack.call("DELETE", f"/plans/{gone['plan']['id']}")
    other = _ok(stack.call("POST", "/plans", project="proj-b", body={"plan": {
        "name": "theirs", "provider_id": PROVIDER_ID, "resources": [{"id": "vol-06", "type": VOLUME}]}}))

    protecting = _ok(stack.call("POST", CP, body={"checkpoint": {"plan_id": plans[0]["id"],
                                                                 "extra_info": {"note": "first"}}}))
    base = _dt.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=_dt.UTC)
    done = [stack.add_checkpoint(plan_id=plans[i % 3]["id"], created_at=base + _dt.timedelta(hours=i),
                                 bytes_total=1 << 40, bytes_done=1 << 40, status_reason=None)
            for i in range(5)]
    stack.add_checkpoint(project="proj-b", plan_id=other["plan"]["id"], status="error",
                         status_reason="bank unreachable: \u00e9\n2nd line")
    stack.call("DELETE", f"{CP}/{done[4].id}")  # -> deleting
    _ok(stack.call("POST", "/restores", body={"restore": {
        "provider_id": PROVIDER_ID, "checkpoint_id": done[0].id, "parameters": {VOLUME: {"restore_name": "r"}},
        "restore_auth": {"type": "password", "username": "u", "password": "never-stored"}}}))
    _ok(stack.call("POST", "/verifications", body={"verification": {
        "provider_id": PROVIDER_ID, "checkpoint_id": done[1].id, "parameters": {}}}))
    for i in range(3):
        stack.db.create_operation_log(OperationLog(
            id=str(uuid.uuid4()), project_id="proj-a", operation_type="protect", status="success",
            provider_id=PROVIDER_ID, checkpoint_id=done[i].id, plan_id=plans[0]["id"], host=f"worker-{i}",
            extra_info={"bytes": i}, started_at=base, ended_at=base + _dt.timedelta(seconds=i),
            created_at=base + _dt.timedelta(minutes=i)))
    assert protecting["checkpoint"]["status"] == "protecting"
    stack.db.service_heartbeat("node-1", "strongroom-protection", "strongroom-protection")
    api = stack.db.service_heartbeat("node-1", "strongroom-api", "strongroom-protection")
    worker = stack.db.service_heartbeat("node-2", "strongroom-protection", "strongroom-protection")
    stack.db.update_service(worker.id, {"disabled": True, "disabled_reason": "new disks"})
    stack.db.update_service(api.id, {"last_heartbeat": base})  # down
    _ok(stack.admin("PUT", "/quotas/proj-b", body={"quota": {"plans": 5, "checkpoints": 7}}))
    _ok(stack.admin("PUT", "/quota_classes/default", body={"quota_class": {"checkpoints": 100}}))


def _view(stack: Stack) -> dict[str, Any]:
    """Every list and show response a user or an administrator would read."""
    out: dict[str, Any] = {}

    def get(path: str, admin: bool = False, **params: Any) -> Any:
        resp = (stack.admin if admin else stack.call)("GET", path, params=params)
        assert resp.status_code == 200, resp.text
        text = resp.text.replace(stack.url, "<url>")
        out[f"{'admin ' if admin else ''}{path} {sorted(params.items())}"] = json.loads(text)
        return json.loads(text)

    plans = get("/plans")["plans"]
    get("/plans", limit=2)
    get("/plans", admin=True, all_tenants=1, sort="name:asc")
    get("/plans", status="started")
    for plan in plans:
        get(f"/plans/{plan['id']}")
    checkpoints = get(CP)["checkpoints"]
    get(CP, limit=3)
    get(CP, admin=True, all_tenants=1)
    get(CP, start_date="2026-03-01", end_date="2026-03-01")
    for cp in checkpoints:
        get(f"{CP}/{cp['id']}")
    for kind in ("restores", "verifications", "operation_logs"):
        for item in get(f"/{kind}")[kind]:
            get(f"/{kind}/{item['id']}")
    get("/operation_logs", limit=2, sort="created_at:asc")
    get("/os-services", admin=True)
    for project in ("proj-a", "proj-b"):
        get(f"/quotas/{project}", admin=True)
        get(f"/quotas/{project}/detail", admin=True)
    get("/quota_classes/default", admin=True)
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("export")
    with running_stack(tmp, defaults=SLOW_HEARTBEATS) as stack:
        _populate(stack)
        view = _view(stack)
        # the view is worth comparing: every kind of row, pages with links, services up, down and disabled
        assert len(view["admin /os-services []"]["services"]) == 3
        assert {(s["state"], s["status"]) for s in view["admin /os-services []"]["services"]} == {
            ("up", "enabled"), ("down", "enabled"), ("up", "disabled")}
        assert "plans_links" in view["/plans [('limit', 2)]"]
        assert len(view[f"admin {CP} [('all_tenants', 1)]"]["checkpoints"]) == 7
        assert len([k for k in view if k.startswith(("/restores/", "/verifications/", "/operation_logs/"))]) == 5
        source_url = f"sqlite:///{tmp / 'api.sqlite'}"
        out = _manage("--config-file", _conf(tmp, source_url), "db", "export", str(tmp / "meta.jsonl"))
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("Exported ") and f"at schema revision {migration.head()}" in out.stdout
        # runs that had not finished are reported (the fake protection service never finishes them)
        assert "warning: operations still running (checkpoints: 2, restores/verifications: 2)" in out.stderr
    yield tmp / "meta.jsonl", view


def test_round_trip_gives_the_same_api_view(exported: tuple[Path, dict[str, Any]], fresh_url: str,
                                            tmp_path: Path) -> None:
    path, view = exported
    out = _manage("--config-file", _conf(tmp_path, fresh_url), "db", "import", str(path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Imported ") and "plans: 5" in out.stdout and "resources: 8" in out.stdout
    with running_stack(tmp_path, db_url=fresh_url, defaults=SLOW_HEARTBEATS) as stack:
        assert _view(stack) == view
        # the imported store keeps working: new rows get new ids (PostgreSQL sequences follow the ids)
        _ok(stack.call("POST", "/plans", body={"plan": {
            "name": "after", "provider_id": PROVIDER_ID, "resources": [{"id": "vol-01", "type": VOLUME}]}}))
        new = stack.db.service_heartbeat("node-3", "strongroom-protection")
        assert new.id > max(s.id for s in stack.db.list_services() if s.host != "node-3")


def test_export_file_holds_no_secret_and_names_its_schema(exported: tuple[Path, dict[str, Any]]) -> None:
    path, _ = exported
    lines = path.read_text(encoding="utf-8").splitlines()
    header, end = json.loads(lines[0]), json.loads(lines[-1])
    assert (header["format"], header["format_version"], header["schema_revision"]) == (
        "strongroom-metadata", 1, migration.head())
    order = list(header["tables"])
    assert order.index("plans") < order.index("resources") and header["tables"]["resources"][0] == "id"
    assert order.index("triggers") < order.index("scheduled_operations") < order.index("scheduled_fires")
    assert end["end"]["plans"] == 5 and sum(end["end"].values()) == len(lines) - 2
    assert "never-stored" not in path.read_text(encoding="utf-8")
    assert not list(path.parent.glob("*.partial*"))


# -- behaviour of import and export, in-process, on every server ---------------------------------------------


def _small_export(db: Database, plans: int = 2) -> str:
    for i in range(plans):
        db.create_plan(Plan(id=f"plan-{i}", name=f"p{i}", provider_id=PROVIDER_ID, project_id="proj",
                            resources=[Resource(id=f"vol-{i}", type=VOLUME), Resource(id="shared", type=VOLUME)]))
    db.service_heartbeat("node-1", "strongroom-protection")
    out = io.StringIO()
    transfer.export(db, out)
    return out.getvalue()


def _rows(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {m.__tablename__: conn.execute(sa.select(sa.func.count()).select_from(m)).scalar_one()
                for m in ALL_MODELS}


def test_non_empty_target_is_refused_then_force_and_merge(db: Database, fresh_url: str) -> None:
    text = _small_export(db)
    target = Database(fresh_url)
    try:
        assert transfer.import_(target, text.splitlines(True), name="f").rows["plans"] == 2
        target.create_plan(Plan(id="plan-local", name="local", provider_id=PROVIDER_ID, project_id="proj",
                                resources=[Resource(id="vol-9", type=VOLUME)]))
        target.update_plan("plan-0", {"name": "renamed in the target"})
        with pytest.raises(exceptions.Conflict, match=r"is not empty \(plans: 3, services: 1, resources: 5\); "
                                                      r"import with --force"):
            transfer.import_(target, text.splitlines(True), name="f")

        db.create_plan(Plan(id="plan-new", name="new", provider_id=PROVIDER_ID, project_id="proj",
                            resources=[Resource(id="vol-0", type=VOLUME)]))
        db.service_heartbeat("node-2", "strongroom-protection")
        out = io.StringIO()
        transfer.export(db, out)
        merged = transfer.import_(target, out.getvalue().splitlines(True), mode=transfer.Mode.MERGE, name="f")
        assert (merged.rows["plans"], merged.rows["resources"], merged.rows["services"]) == (1, 1, 1)
        assert (merged.skipped["plans"], merged.skipped["resources"], merged.skipped["services"]) == (2, 4, 1)
        assert target.get_plan("plan-0").name == "renamed in the target"  # kept
        assert [r.id for r in target.get_plan("plan-new").resources] == ["vol-0"]
        assert {s.host for s in target.list_services()} == {"node-1", "node-2"}
        assert target.get_plan("plan-local").name == "local"

        forced = transfer.import_(target, text.splitlines(True), mode=transfer.Mode.FORCE, name="f")
        assert forced.rows == {"plans": 2, "checkpoints": 0, "restores": 0, "operation_logs": 0, "services": 1,
                               "resources": 4, "triggers": 0, "scheduled_operations": 0, "scheduled_fires": 0,
                               "quotas": 0, "quota_classes": 0}
        assert sorted(p.id for p in target.list_plans(None)) == ["plan-0", "plan-1"]
        assert target.get_plan("plan-0").name == "p0"
    finally:
        target.dispose()


def test_truncated_or_corrupt_file_changes_nothing(db: Database, fresh_url: str) -> None:
    lines = _small_export(db).splitlines(True)
    target = Database(fresh_url)
    try:
        with pytest.raises(exceptions.InvalidInput, match="the file is truncated; nothing was imported"):
            transfer.import_(target, lines[:-1], name="meta.jsonl")
        assert set(_rows(target).values()) == {0}
        with pytest.raises(exceptions.InvalidInput, match=r"meta.jsonl line 3: not a JSON line"):
            transfer.import_(target, [*lines[:2], '{"table": "pla', *lines[2:]], name="meta.jsonl")
        bad_count = [*lines[:-1], json.dumps({"end": {"plans": 7}}) + "\n"]
        with pytest.raises(exceptions.InvalidInput, match="announces"):
            transfer.import_(target, bad_count, name="meta.jsonl")
        assert set(_rows(target).values()) == {0}
    finally:
        target.dispose()


def test_bad_rows_are_named(db: Database, tmp_path: Path) -> None:
    lines = _small_export(db, plans=1).splitlines(True)
    target = Database(f"sqlite:///{tmp_path / 't.sqlite'}")
    header = json.loads(lines[0])
    plan_line = next(i for i, line in enumerate(lines) if '"table":"plans"' in line)
    row = json.loads(lines[plan_line])

    def attempt(replaced: dict[int, Any]) -> str:
        changed = [json.dumps(replaced[i]) + "\n" if i in replaced else line for i, line in enumerate(lines)]
        with pytest.raises(exceptions.StrongroomError) as info:
            transfer.import_(target, changed, name="f")
        return str(info.value)

    bad_time = {**row, "row": {**row["row"], "created_at": "yesterday"}}
    assert f"f line {plan_line + 1}: plans.created_at: 'yesterday' is not a valid datetime" in attempt(
        {plan_line: bad_time})
    extra = {**row, "row": {**row["row"], "colour": "red"}}
    assert "plans: row has unexpected column 'colour'" in attempt({plan_line: extra})
    unknown_column = {**header, "tables": {**header["tables"], "plans": [*header["tables"]["plans"], "colour"]}}
    assert "f line 1: table plans has no column 'colour'" in attempt({0: unknown_column})
    unknown_table = {**header, "tables": {**header["tables"], "triggers2": ["id"]}}
    assert "table 'triggers2' is unknown to this Strongroom" in attempt({0: unknown_table})
    assert "not a Strongroom metadata export" in attempt({0: {"hello": 1}})
    assert set(_rows(target).values()) == {0}
    target.dispose()


def test_newer_files_are_refused(db: Database, tmp_path: Path) -> None:
    lines = _small_export(db, plans=1).splitlines(True)
    header = json.loads(lines[0])
    target = Database(f"sqlite:///{tmp_path / 't.sqlite'}")
    newer_schema = [json.dumps({**header, "schema_revision": "0099_from_the_future"}) + "\n", *lines[1:]]
    with pytest.raises(exceptions.InvalidInput, match=r"schema_revision: '0099_from_the_future' is newer than "
                                                      rf"this Strongroom knows \(its newest is {migration.head()}\)"):
        transfer.import_(target, newer_schema, name="f")
    newer_format = [json.dumps({**header, "format_version": 2}) + "\n", *lines[1:]]
    with pytest.raises(exceptions.InvalidInput, match="format version 2 by a newer Strongroom"):
        transfer.import_(target, newer_format, name="f")
    target.dispose()


def test_restore_progress_and_resume_state_travel(db: Database, fresh_url: str) -> None:
    resume = {f"{VOLUME}#vol-1": {"volume_id": "partial-1"}}
    progress = {"bytes_total": 1 << 40, "bytes_done": 1 << 20}
    db.create_restore(Restore(id="restore-1", project_id="proj", provider_id=PROVIDER_ID, checkpoint_id="cp-1",
                              progress=progress, resume_state=resume, extra_info={"note": "n"}))
    lines = _small_export(db, plans=1).splitlines(True)
    assert {"progress", "resume_state"} <= set(json.loads(lines[0])["tables"]["restores"])
    # The same restore in a file written before 0003_restore_progress: both inside extra_info.
    header = json.loads(lines[0])
    header["schema_revision"] = "0002_scheduling"
    header["tables"]["restores"] = [c for c in header["tables"]["restores"] if c not in ("progress", "resume_state")]
    old = [json.dumps(header) + "\n"]
    for line in lines[1:]:
        record = json.loads(line)
        if record.get("table") == "restores":
            row = record["row"]
            row["extra_info"] = {**row["extra_info"], "progress": row.pop("progress"),
                                 "resume": row.pop("resume_state")}
        old.append(json.dumps(record) + "\n")

    for text in (lines, old):
        target = Database(fresh_url)
        try:
            transfer.import_(target, text, mode=transfer.Mode.FORCE, name="f")
            got = target.get_restore("restore-1")
            assert (got.progress, got.resume_state, got.extra_info) == (progress, resume, {"note": "n"})
        finally:
            target.dispose()


def test_every_table_of_the_schema_is_exported(db: Database) -> None:
    assert {t.name for t in transfer.tables()} == set(Base.metadata.tables)
    created = set(sa.inspect(db.engine).get_table_names()) - {migration.VERSION_TABLE}
    assert created == {t.name for t in transfer.tables()}
    order = [t.name for t in transfer.tables()]
    assert order.index("plans") < order.index("resources")


def test_export_refuses_a_store_without_schema(tmp_path: Path) -> None:
    empty = Database(f"sqlite:///{tmp_path / 'none.sqlite'}")
    with pytest.raises(exceptions.InvalidInput, match="has no schema: there is nothing to export"):
        transfer.export(empty, io.StringIO())


def test_manage_gz_stdout_and_password_masking(server: Any, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    url = server.create_database()
    if server.backend == "postgresql":  # trust authentication accepts any password: it must never be shown
        url = url.replace("://postgres@", "://postgres:hunter2@").replace("://root@", "://root:hunter2@")
    source = Database(url)
    source.sync()
    _small_export(source)
    source.dispose()
    conf = _conf(tmp_path, url)
    assert manage.main(["--config-file", conf, "db", "export", str(tmp_path / "m.jsonl.gz")]) == 0
    out, err = capsys.readouterr()
    assert "hunter2" not in out + err
    assert out.startswith("Exported 7 rows") and "m.jsonl.gz" in out
    assert manage.main(["--config-file", conf, "db", "export", "-"]) == 0
    out, err = capsys.readouterr()  # '-': the data on stdout, the summary on stderr
    assert "hunter2" not in out + err
    assert json.loads(out.splitlines()[0])["format"] == "strongroom-metadata" and len(out.splitlines()) == 9
    assert err.startswith("Exported 7 rows")
    target = _conf(tmp_path, f"sqlite:///{tmp_path / 'target.sqlite'}")
    assert manage.main(["--config-file", target, "db", "import", str(tmp_path / "m.jsonl.gz")]) == 0
    assert manage.main(["--config-file", target, "db", "import", str(tmp_path / "m.jsonl.gz"), "--merge"]) == 0
    out, err = capsys.readouterr()
    assert "Imported 7 rows" in out and "Kept 7 rows (plans: 2, services: 1, resources: 4) already present." in out
    assert manage.main(["--config-file", target, "db", "import", str(tmp_path / "absent.jsonl")]) == 1
    assert "absent.jsonl: No such file or directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        manage.main(["--config-file", target, "db", "import", "x", "--merge", "--force"])
    assert "not allowed with argument" in capsys.readouterr().err
