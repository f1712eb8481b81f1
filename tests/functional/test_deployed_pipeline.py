"""The shipped paste pipeline (``etc/strongroom/api-paste.ini``) through the real WSGI stack: gunicorn serving
``strongroom.api.wsgi:application`` and the threaded ``strongroom-api`` runner, on a PostgreSQL metadata
store, with a real ``strongroom-protection`` over the machine's RabbitMQ.  /healthcheck (plain, detailed for
the administrator, 503 once the database is dropped), the request ids, CORS, the size limit, the dashboard, the version
documents behind a TLS proxy's headers.  PostgreSQL or RabbitMQ unreachable: SKIP, or FAIL with ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.functional.test_deployed_api import BIN, ROOT, Node, _wait_for
from tests.servers import free_port, require_port

ADMIN = "pipeline-admin-token"
ORIGIN = "https://dashboard.example"
BODY_LIMIT = 4096
PG_ADMIN = os.environ.get("STRONGROOM_TEST_POSTGRESQL_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "backup.example"}

pytestmark = [pytest.mark.functional, pytest.mark.slow]


@pytest.fixture
def pg_node(tmp_path: Path) -> Iterator[tuple[Node, sa.Engine, str]]:
    require_port("127.0.0.1", 5672, "RabbitMQ")
    require_port("127.0.0.1", 5432, "PostgreSQL")
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    name = f"strongroom_pipeline_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    state = tmp_path / "state"
    (state / "volumes").mkdir(parents=True)
    host = f"pipeline-{uuid.uuid4().hex[:8]}"
    conf = tmp_path / "strongroom.conf"
    conf.write_text(
        "[DEFAULT]\n"
        f"state_dir = {state}\n"
        f"providers_dir = {ROOT / 'providers.d'}\n"
        "transport_url = rabbit://guest:guest@127.0.0.1:5672/\n"
        f"protection_topic = strongroom-protection-{host}\n"
        f"host = {host}\n"
        f"admin_token = {ADMIN}\n"
        "heartbeat_interval = 0.5\n"
        "debug = true\n"
        f"[api]\nbind_port = 0\nmax_request_body_size = {BODY_LIMIT}\n"
        f"[database]\nconnection = {url}\n"
        f"[cors]\nallowed_origin = {ORIGIN}\n"
        "[oslo_middleware]\nenable_proxy_headers_parsing = true\n")
    node = Node(tmp=tmp_path, host=host, conf=conf)
    try:
        yield node, admin, name
    finally:
        for proc in node.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _all_logs(node: Node) -> str:
    return "\n".join(p.read_text() for p in sorted(node.tmp.glob("*.log")))


def _check_pipeline(base: str, node: Node) -> None:
    """Everything but the database's loss, against one server at ``base``."""
    # /healthcheck: plain for anyone once protection beats; the administrator sees each check's details
    deadline = time.monotonic() + 60
    while (health := requests.get(f"{base}/healthcheck", timeout=10)).status_code != 200:
        assert time.monotonic() < deadline, f"{health.status_code} {health.text}\n{node.logs()}"
        time.sleep(0.2)
    assert (health.headers["Content-Type"].split(";")[0], health.text) == ("text/plain", "OK")
    assert requests.get(f"{base}/healthcheck", headers={"X-Auth-Token": "someone"}, timeout=10).text == "OK"
    detailed = requests.get(f"{base}/healthcheck", headers={"X-Auth-Token": ADMIN, "Accept": "application/json"},
                            timeout=10)
    assert detailed.status_code == 200, detailed.text
    details = {r["class"]: r["details"] for r in detailed.json()["reasons"]}
    assert re.fullmatch(r"metadata database postgresql\+psycopg2://postgres@127\.0\.0\.1:5432/strongroom_pipeline_"
                        r"\w+: SELECT 1 answered in [\d.]+ ms", details["MetadataDatabase"]), details
    assert details["ProtectionRPC"] == (f"RPC topic strongroom-protection-{node.host}: strongroom-protection up on "
                                        f"{node.host}"), details

    # request ids: ours on the answer, an incoming valid one recorded as the global id in the API's log
    incoming = f"req-{uuid.uuid4()}"
    listed = requests.get(f"{base}/v1/demo/plans", headers={"X-OpenStack-Request-ID": incoming}, timeout=10)
    assert listed.status_code == 200, listed.text
    ours = listed.headers["X-Openstack-Request-Id"]
    assert re.fullmatch(r"req-[0-9a-f-]{36}", ours) and ours != incoming
    deadline = time.monotonic() + 10
    while f"request {ours}: GET /v1/demo/plans, global request id {incoming}" not in _all_logs(node):
        assert time.monotonic() < deadline, node.logs()
        time.sleep(0.1)

    # CORS preflight for the configured origin (and not for another)
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "X-Auth-Token, Content-Type"}
    answer = requests.options(f"{base}/v1/demo/plans", headers=preflight, timeout=10)
    assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == ORIGIN, answer.headers
    assert "POST" in answer.headers["Access-Control-Allow-Methods"]
    other = requests.options(f"{base}/v1/demo/plans", headers={**preflight, "Origin": "https://x.example"}, timeout=10)
    assert "Access-Control-Allow-Origin" not in other.headers

    # a body over the limit: 413 naming it
    big = requests.post(f"{base}/v1/demo/plans", data=b"{" + b" " * (BODY_LIMIT + 1) + b"}",
                        headers={"Content-Type": "application/json"}, timeout=10)
    assert big.status_code == 413, big.text
    assert str(BODY_LIMIT) in big.json()["requestEntityTooLarge"]["message"]

    # the version documents behind a TLS proxy name the proxy
    root = requests.get(f"{base}/", headers=PROXY, timeout=10)
    assert root.status_code == 200, root.text
    entry = root.json()["versions"][0]
    assert (entry["id"], entry["version"], entry["min_version"]) == ("v1.0", "", "")
    assert entry["links"] == [{"rel": "self", "href": "https://backup.example/v1/"}]
    for path in ("/v1/", "/v1"):
        v1 = requests.get(f"{base}{path}", headers=PROXY, timeout=10, allow_redirects=False)
        assert (v1.status_code, v1.json()) == (200, {"version": entry}), path
    assert requests.get(f"{base}/", timeout=10).json()["versions"][0]["links"][0]["href"] == f"{base}/v1/"

    # the dashboard's pages, without a token; behind the proxy its bare path redirects to the proxy's URL
    page = requests.get(f"{base}/dashboard/", timeout=10)
    assert page.status_code == 200 and "<title>Strongroom</title>" in page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    bare = requests.get(f"{base}/dashboard", headers={**PROXY, "X-Forwarded-Prefix": "/backup"}, timeout=10,
                        allow_redirects=False)
    assert (bare.status_code, bare.headers["Location"]) == (301, "https://backup.example/backup/dashboard/")


def _wait_down(base: str) -> requests.Response:
    deadline = time.monotonic() + 30
    while (health := requests.get(f"{base}/healthcheck", timeout=10)).status_code != 503:
        assert time.monotonic() < deadline, f"{health.status_code} {health.text}"
        time.sleep(0.2)
    return health


def test_pipeline_under_gunicorn_and_the_threaded_runner(pg_node: tuple[Node, sa.Engine, str]) -> None:
    node, admin, name = pg_node
    assert node.manage("db", "sync").returncode == 0
    port = free_port()
    node.start(str(BIN / "gunicorn"), "--workers", "2", "--worker-class", "gthread", "--threads", "4",
               "--bind", f"127.0.0.1:{port}", "--no-control-socket", "--graceful-timeout", "5",
               "strongroom.api.wsgi:application", env={"STRONGROOM_CONFIG_FILE": str(node.conf)})
    gunicorn = f"http://127.0.0.1:{port}"
    _wait_for(f"{gunicorn}/", {200})
    node.start(str(BIN / "strongroom-protection"), "--config-file", str(node.conf))
    runner = node.start(str(BIN / "strongroom-api"), "--config-file", str(node.conf))
    deadline = time.monotonic() + 60
    threaded = None
    while threaded is None:
        found = re.search(r"strongroom-api running: (http://127\.0\.0\.1:\d+)", _all_logs(node))
        threaded = found.group(1) if found else None
        assert runner.poll() is None and time.monotonic() < deadline, node.logs()
        time.sleep(0.1)

    for base in (gunicorn, threaded):
        try:
            _check_pipeline(base, node)
        except AssertionError as err:
            raise AssertionError(f"{base}: {err}\n{node.logs()}") from None

    # the metadata database is dropped under both: /healthcheck answers 503 naming it
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    for base in (gunicorn, threaded):
        down = _wait_down(base)
        assert "the metadata database is unreachable" in down.text, down.text
        detailed = requests.get(f"{base}/healthcheck", timeout=10,
                                headers={"X-Auth-Token": ADMIN, "Accept": "application/json"})
        assert detailed.status_code == 503
        details = {r["class"]: r["details"] for r in detailed.json()["reasons"]}
        assert "SELECT 1 failed: OperationalError" in details["MetadataDatabase"], details
