"""The shipped pipeline serves the dashboard's pages at /dashboard/ without a token, with a policy that lets
no inline or foreign script run; anything else still goes through authentication."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import webob
from apiharness import ADMIN_TOKEN

from strongroom import dashboard
from strongroom.api.app import make_app
from strongroom.config import new_conf
from strongroom.db.api import Database

STATIC = Path(dashboard.__file__).parent / "static"


@pytest.fixture()
def app(tmp_path: Path) -> Iterator[Any]:
    from keystonemiddleware import auth_token

    conf = new_conf(overrides={"DEFAULT": {"admin_token": ADMIN_TOKEN}})
    conf.set_override("auth_strategy", "keystone")
    for group, opts in auth_token.list_opts():
        conf.register_opts(opts, group=group)
    conf.set_override("www_authenticate_uri", "http://keystone.invalid:5000/v3", group="keystone_authtoken")
    db = Database(f"sqlite:///{tmp_path / 'dash.sqlite'}")
    db.sync()
    yield make_app(conf, db, None)  # type: ignore[arg-type]
    db.dispose()


def _get(app: Any, path: str, method: str = "GET", **headers: str) -> webob.Response:
    return webob.Request.blank(path, method=method, headers=headers).get_response(app)


def test_pages_are_served_without_a_token_even_under_keystone(app: Any) -> None:
    page = _get(app, "/dashboard/")
    assert page.status_int == 200 and page.content_type == "text/html"
    assert page.body == (STATIC / "index.html").read_bytes()
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["X-Content-Type-Options"] == "nosniff"
    script = _get(app, "/dashboard/app.js")
    assert script.status_int == 200 and script.content_type in ("text/javascript", "application/javascript")
    assert script.body == (STATIC / "app.js").read_bytes()
    assert _get(app, "/dashboard/style.css").content_type == "text/css"


def test_the_bare_path_redirects_and_nothing_outside_the_directory_is_served(app: Any) -> None:
    bare = _get(app, "/dashboard")
    assert bare.status_int == 301 and bare.location.endswith("/dashboard/")
    for path in ("/dashboard/../../setup.cfg", "/dashboard/%2e%2e/__init__.py", "/dashboard/..%2f__init__.py"):
        outside = _get(app, path)
        assert outside.status_int in (403, 404), path
        assert b"[metadata]" not in outside.body and b"import" not in outside.body, path
    assert _get(app, "/dashboard/missing.js").status_int == 404
    posted = _get(app, "/dashboard/", method="POST")
    assert posted.status_int == 405 and "GET and HEAD" in posted.text


def test_the_api_behind_it_still_asks_for_a_token(app: Any) -> None:
    answer = _get(app, "/v1/demo/plans")
    assert answer.status_int == 401
    near = _get(app, "/dashboardx/app.js")  # only the dashboard's own directory is served
    assert near.status_int == 404 and near.body != (STATIC / "app.js").read_bytes()
