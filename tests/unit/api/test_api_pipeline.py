"""The paste pipeline of ``etc/strongroom/api-paste.ini`` in-process (gunicorn serves it for real in
``tests/functional/test_deployed_pipeline.py``): request ids, /healthcheck, proxy headers, CORS, size limit,
version documents, and the paste file option."""

from __future__ import annotations

import datetime as _dt
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import webob
from apiharness import ADMIN_TOKEN, Stack

from strongroom import exceptions
from strongroom.api import pipeline
from strongroom.api.app import make_app
from strongroom.config import new_conf
from strongroom.db.api import Database

ORIGIN = "https://dashboard.example"


def _conf(tmp_path: Path, extra: str = "") -> Any:
    path = tmp_path / "strongroom.conf"
    path.write_text(f"[DEFAULT]\nadmin_token = {ADMIN_TOKEN}\nprotection_topic = pipeline-topic\n"
                    f"[api]\nmax_request_body_size = 2048\n"
                    f"[cors]\nallowed_origin = {ORIGIN}\n"
                    f"[oslo_middleware]\nenable_proxy_headers_parsing = true\n{extra}")
    return new_conf(default_config_files=[str(path)])


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'pipeline.sqlite'}")
    database.sync()
    yield database
    database.dispose()


@pytest.fixture()
def app(tmp_path: Path, db: Database) -> Any:
    return make_app(_conf(tmp_path), db, None)  # type: ignore[arg-type]


def _call(app: Any, path: str, method: str = "GET", **headers: str) -> webob.Response:
    return webob.Request.blank(path, method=method, headers=headers).get_response(app)


def test_request_id_is_the_middlewares_and_an_incoming_one_is_the_global_id(
        app: Any, caplog: pytest.LogCaptureFixture) -> None:
    incoming = f"req-{uuid.uuid4()}"
    with caplog.at_level("DEBUG", logger="strongroom.api.app"):
        resp = _call(app, "/v1/p1/plans", **{"X-Auth-Token": "t", "X-OpenStack-Request-ID": incoming})
    assert resp.status_int == 200
    ours = resp.headers["X-Openstack-Request-Id"]
    assert re.fullmatch(r"req-[0-9a-f-]{36}", ours) and ours != incoming
    assert resp.headers.getall("X-Openstack-Request-Id") == [ours]  # once, not once per layer
    assert any(ours in r.getMessage() and incoming in r.getMessage() for r in caplog.records)
    # a malformed incoming id is not taken as global id
    caplog.clear()
    with caplog.at_level("DEBUG", logger="strongroom.api.app"):
        _call(app, "/v1/p1/plans", **{"X-Auth-Token": "t", "X-OpenStack-Request-ID": "not-an-id"})
    assert not any("not-an-id" in r.getMessage() for r in caplog.records)


def test_healthcheck_plain_detailed_and_down(app: Any, db: Database) -> None:
    # no protection service beats yet: the RPC check fails, and says so
    down = _call(app, "/healthcheck")
    assert down.status_int == 503
    assert down.text == "no strongroom-protection service answers RPC topic pipeline-topic"
    db.service_heartbeat("node-1", "strongroom-protection", "pipeline-topic")
    ok = _call(app, "/healthcheck")
    assert (ok.status_int, ok.content_type, ok.text) == (200, "text/plain", "OK")
    assert _call(app, "/healthcheck", method="HEAD").status_int == 204
    # a member's token gets the plain view; the admin token the details of each check
    assert _call(app, "/healthcheck", **{"X-Auth-Token": "member"}).text == "OK"
    detailed = _call(app, "/healthcheck", **{"X-Auth-Token": ADMIN_TOKEN, "Accept": "application/json"})
    body = json.loads(detailed.text)
    assert detailed.status_int == 200 and body["detailed"] is True
    details = {r["class"]: r["details"] for r in body["reasons"]}
    assert "SELECT 1 answered" in details["MetadataDatabase"]
    assert details["ProtectionRPC"] == "RPC topic pipeline-topic: strongroom-protection up on node-1"


def test_healthcheck_reports_a_heartbeat_gone_stale(app: Any, db: Database) -> None:
    service = db.service_heartbeat("node-1", "strongroom-protection", "pipeline-topic")
    db.update_service(service.id, {"last_heartbeat": _dt.datetime.now(_dt.UTC) - _dt.timedelta(minutes=5)})
    assert _call(app, "/healthcheck").status_int == 503


def test_versions_and_v1_with_proxy_headers(app: Any) -> None:
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "backup.example"}
    root = json.loads(_call(app, "/", **proxied).text)
    assert root == {"versions": [{"id": "v1.0", "status": "CURRENT", "version": "", "min_version": "",
                                  "links": [{"rel": "self", "href": "https://backup.example/v1/"}]}]}
    for path in ("/v1/", "/v1"):
        resp = _call(app, path, **proxied)
        assert resp.status_int == 200, path
        assert json.loads(resp.text) == {"version": root["versions"][0]}
    assert _call(app, "/v1/", method="POST").status_int == 405
    plain = json.loads(_call(app, "/").text)
    assert plain["versions"][0]["links"][0]["href"] == "http://localhost/v1/"


def test_proxy_headers_ignored_unless_enabled(db: Database) -> None:
    app = make_app(new_conf(overrides={"DEFAULT": {"admin_token": ADMIN_TOKEN}}), db, None)  # type: ignore[arg-type]
    body = json.loads(_call(app, "/", **{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}).text)
    assert body["versions"][0]["links"][0]["href"] == "http://localhost/v1/"


def test_list_links_honour_the_proxy(app: Any, db: Database) -> None:
    stack = Stack(url="", db=db, endpoint=None, server=None)  # type: ignore[arg-type]
    for name in ("a", "b"):
        stack.add_plan(project="p1", name=name)
    resp = _call(app, "/v1/p1/plans?limit=1", **{"X-Auth-Token": "t", "X-Forwarded-Proto": "https",
                                                   "X-Forwarded-Host": "backup.example"})
    links = json.loads(resp.text)["plans_links"]
    assert links[0]["href"].startswith("https://backup.example/v1/p1/plans?"), links


def test_cors_preflight_for_the_configured_origin_only(app: Any) -> None:
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    resp = _call(app, "/v1/p1/plans", method="OPTIONS", **preflight)
    assert resp.status_int == 200
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    other = _call(app, "/v1/p1/plans", method="OPTIONS", **{**preflight, "Origin": "https://elsewhere.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    simple = _call(app, "/v1/p1/plans", **{"Origin": ORIGIN, "X-Auth-Token": "t"})
    assert simple.status_int == 200 and simple.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_body_over_the_limit_is_413_naming_it(app: Any) -> None:
    req = webob.Request.blank("/v1/p1/plans", method="POST", headers={"X-Auth-Token": "t"},
                              body=b"{" + b" " * 4096 + b"}", content_type="application/json")
    resp = req.get_response(app)
    assert resp.status_int == 413
    assert json.loads(resp.text)["requestEntityTooLarge"]["message"] == \
        "Request body is larger than 2048 bytes."
    assert resp.headers["X-Openstack-Request-Id"].startswith("req-")


def test_paste_file_option(tmp_path: Path, db: Database) -> None:
    conf = _conf(tmp_path)
    assert pipeline.paste_config_path(conf).endswith("etc/strongroom/api-paste.ini")
    minimal = tmp_path / "minimal-paste.ini"
    minimal.write_text("[pipeline:strongroom-api]\npipeline = versions auth strongroom\n"
                       "[filter:versions]\npaste.filter_factory = strongroom.api.pipeline:versions_factory\n"
                       "[filter:auth]\npaste.filter_factory = strongroom.api.pipeline:auth_factory\n"
                       "[app:strongroom]\npaste.app_factory = strongroom.api.pipeline:app_factory\n")
    conf.set_override("api_paste_config", str(minimal), group="api")
    app = make_app(conf, db, None)  # type: ignore[arg-type]
    assert _call(app, "/healthcheck").status_int == 404  # not in this pipeline
    assert _call(app, "/v1/p1/plans", **{"X-Auth-Token": "t"}).status_int == 200
    conf.set_override("api_paste_config", str(tmp_path / "absent.ini"), group="api")
    with pytest.raises(exceptions.ConfigError, match="absent.ini does not exist"):
        make_app(conf, db, None)  # type: ignore[arg-type]
    minimal.write_text("[pipeline:other]\npipeline = strongroom\n")
    conf.set_override("api_paste_config", str(minimal), group="api")
    with pytest.raises(exceptions.ConfigError, match="minimal-paste.ini"):
        make_app(conf, db, None)  # type: ignore[arg-type]


def test_factories_refuse_to_build_outside_make_app() -> None:
    with pytest.raises(exceptions.ConfigError, match="make_app"):
        pipeline.app_factory({})


def test_keystone_healthcheck_detail_needs_a_token_keystone_confirms(tmp_path: Path, db: Database) -> None:
    """With keystone, the detailed view's token goes through auth_token: one it cannot confirm (here: no
    Keystone is reachable) gets the plain view, never an error."""
    from keystonemiddleware import auth_token

    conf = _conf(tmp_path)
    conf.set_override("auth_strategy", "keystone")
    for group, opts in auth_token.list_opts():
        conf.register_opts(opts, group=group)
    conf.set_override("www_authenticate_uri", "http://127.0.0.1:9/v3", group="keystone_authtoken")
    db.service_heartbeat("node-1", "strongroom-protection", "pipeline-topic")
    app = make_app(conf, db, None)  # type: ignore[arg-type]
    assert _call(app, "/healthcheck").text == "OK"
    resp = _call(app, "/healthcheck", **{"X-Auth-Token": "unconfirmed", "Accept": "application/json"})
    assert resp.status_int == 200 and json.loads(resp.text) == {"detailed": False, "reasons": ["OK", "OK"]}
    assert _call(app, "/v1/p1/plans").status_int == 401  # the API itself still wants a token
