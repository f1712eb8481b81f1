"""The dashboard behind Keystone, in headless Chromium: the all-in-one under keystonemiddleware's auth_token
against a real Keystone (:mod:`tests.servers.keystone`).  A member's token shows the project's data; a token
Keystone does not know sends the page back to the sign-in form with Keystone's refusal; a reader sees the
plans but is refused protecting one, and the page says so."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.functional import browser
from tests.functional.harness import PROVIDER_ID, AllInOne, keystone_all_in_one
from tests.servers import unavailable
from tests.servers.keystone import KeystoneServer

pytestmark = [pytest.mark.functional, pytest.mark.slow]

TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def deployed(keystone_server: KeystoneServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ks = keystone_server
    member, reader = ks.account("dash-a", "member"), ks.account("dash-a", "reader")
    root = tmp_path_factory.mktemp("dashboard-keystone")
    service = keystone_all_in_one(ks, root)
    service.start()
    try:
        yield {"service": service, "project": member.project_id, "member": ks.token(member),
               "reader": ks.token(reader)}
    finally:
        if service.process is not None and service.process.poll() is None:
            service.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    try:
        with browser.chromium() as found:
            yield found
    except RuntimeError as err:
        unavailable(str(err))


def _sign_in(chromium: Any, service: AllInOne, project: str, token: str) -> Any:
    page = chromium.new_context(viewport=browser.LAPTOP).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{service.url}/dashboard/")
    page.fill("#login-project", project)
    page.fill("#login-token", token)
    page.click("#login-submit")
    return page


def test_a_keystone_member_sees_the_project_and_an_unknown_token_is_sent_back(
        deployed: dict[str, Any], chromium: Any) -> None:
    from playwright.sync_api import expect

    service, project = deployed["service"], deployed["project"]
    api = f"{service.url}/v1/{project}"
    created = requests.post(f"{api}/plans", headers={"X-Auth-Token": deployed["member"]}, json={"plan": {
        "name": "keystone plan", "provider_id": PROVIDER_ID, "parameters": {},
        "resources": [{"id": "disk.img", "type": "OS::Cinder::Volume", "name": "disk.img"}]}}, timeout=30)
    assert created.status_code == 200, created.text

    page = _sign_in(chromium, service, project, deployed["member"])
    page.wait_for_selector("#nav:not([hidden])")
    expect(page.locator("#who-project")).to_have_text(f"Project {project}")
    expect(page.locator("[data-testid=provider]").first).to_contain_text("Local")
    page.click("#nav a[href='#plans']")
    expect(page.locator("[data-testid=plan-name]")).to_have_text("keystone plan")
    page.context.close()

    refused = _sign_in(chromium, service, project, "not-a-keystone-token")
    expect(refused.locator("#login-error")).to_contain_text("authentication")
    assert refused.locator("#nav").is_hidden()
    assert refused.evaluate("sessionStorage.length") == 0
    refused.context.close()


def test_a_reader_is_refused_protecting_and_the_page_says_so(deployed: dict[str, Any], chromium: Any) -> None:
    from playwright.sync_api import expect

    service, project = deployed["service"], deployed["project"]
    api = f"{service.url}/v1/{project}"
    requests.post(f"{api}/plans", headers={"X-Auth-Token": deployed["member"]}, json={"plan": {
        "name": "readers look", "provider_id": PROVIDER_ID, "parameters": {},
        "resources": [{"id": "disk.img", "type": "OS::Cinder::Volume", "name": "disk.img"}]}},
        timeout=30).raise_for_status()
    page = _sign_in(chromium, service, project, deployed["reader"])
    page.wait_for_selector("#nav:not([hidden])")
    page.click("#nav a[href='#plans']")
    row = page.locator("[data-testid=plans] tr", has_text="readers look")
    row.locator("[data-testid=protect]").click()
    expect(page.locator("#flash")).to_contain_text("checkpoint:create")
    assert page.url.endswith("#plans")
    listed = requests.get(f"{api}/providers/{PROVIDER_ID}/checkpoints", headers={"X-Auth-Token": deployed["member"]},
                          timeout=30).json()["checkpoints"]
    assert listed == []
    page.context.close()
