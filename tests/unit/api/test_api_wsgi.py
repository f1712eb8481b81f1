"""``strongroom.api.wsgi``: the lazily built WSGI application, called in-process (gunicorn runs it for real in
``tests/functional/test_deployed_api.py``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import webob

from strongroom.api import wsgi
from strongroom.db import migration
from strongroom.db.api import Database


def _conf(tmp_path: Path, db: str, extra: str = "") -> Path:
    path = tmp_path / "strongroom.conf"
    path.write_text(f"[DEFAULT]\ntransport_url = fake://\nstate_dir = {tmp_path / 'state'}\nhost = wsgi-test\n"
                    f"admin_token = wsgi-admin-token-0123\n{extra}[database]\nconnection = {db}\n")
    return path


def _get(app: wsgi.LazyApplication, path: str, token: str = "t") -> webob.Response:
    return webob.Request.blank(path, headers={"X-Auth-Token": token}).get_response(app)


def test_config_files_from_the_environment() -> None:
    assert wsgi.config_files({}) is None
    assert wsgi.config_files({"STRONGROOM_CONFIG_FILE": ""}) is None
    assert wsgi.config_files({"STRONGROOM_CONFIG_FILE": f"/a.conf{os.pathsep}/b.conf"}) == ["/a.conf", "/b.conf"]


def test_unsynced_store_answers_503_naming_db_sync_then_recovers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.sqlite'}"
    app = wsgi.LazyApplication([str(_conf(tmp_path, url))])
    try:
        resp = _get(app, "/v1/demo/plans")
        assert resp.status_int == 503
        message = json.loads(resp.body)["serviceUnavailable"]["message"]
        assert message == (f"The API cannot start: Invalid configuration: the metadata store {url} is at schema "
                           f"revision none but this API needs {migration.head()}: run 'strongroom-manage db sync'")
        db = Database(url)
        db.sync()
        resp = _get(app, "/v1/demo/plans")
        assert (resp.status_int, json.loads(resp.body)) == (200, {"plans": []})
        assert resp.headers["X-Openstack-Request-Id"].startswith("req-")
        # the API beats as strongroom-api of its configured host
        services = json.loads(_get(app, "/v1/demo/os-services", token="wsgi-admin-token-0123").body)["services"]
        assert [(s["host"], s["binary"]) for s in services] == [("wsgi-test", "strongroom-api")]
        db.dispose()
    finally:
        app.close()


def test_bad_configuration_is_named_and_the_password_is_not(tmp_path: Path) -> None:
    app = wsgi.LazyApplication([str(tmp_path / "absent.conf")])
    resp = _get(app, "/v1/demo/plans")
    assert resp.status_int == 503 and "absent.conf" in json.loads(resp.body)["serviceUnavailable"]["message"]

    conf = _conf(tmp_path, "postgresql://admin:hunter2@127.0.0.1:9/strongroom")
    resp = _get(wsgi.LazyApplication([str(conf)]), "/v1/demo/plans")
    assert resp.status_int == 503
    message = json.loads(resp.body)["serviceUnavailable"]["message"]
    assert "postgresql://admin:***@127.0.0.1:9/strongroom is unavailable" in message
    assert "hunter2" not in resp.text


def test_without_admin_token_one_is_generated_in_the_state_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.sqlite'}"
    Database(url).sync()
    conf = tmp_path / "strongroom.conf"
    conf.write_text(f"[DEFAULT]\ntransport_url = fake://\nstate_dir = {tmp_path / 'state'}\n"
                    f"[database]\nconnection = {url}\n")
    app = wsgi.LazyApplication([str(conf)])
    try:
        assert _get(app, "/v1/demo/os-services", token="admin").status_int == 403  # the old literal
        token_file = tmp_path / "state" / "admin-token"
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        assert _get(app, "/v1/demo/os-services", token=token_file.read_text().strip()).status_int == 200
    finally:
        app.close()
