"""Screenshots of the dashboard's main pages with real data: ``make screenshots`` (doc/dashboard.md).

Starts an all-in-one in a temporary directory, gives it two volumes, a plan, a checkpoint, a restore, a
verification and a nightly schedule through the REST API, starts protecting a larger volume, then signs in with
Debian's headless Chromium and shoots each page on a laptop's screen and a few on a phone's::

    .venv/bin/python -m tests.functional.dashboard_screenshots [OUT_DIR]   # default .bench/screenshots
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from tests.functional import browser
from tests.functional.harness import PROVIDER_ID, AllInOne, MiB, running_all_in_one, wait_for, write_mixed_image

DEFAULT_OUT = Path(".bench") / "screenshots"
LAPTOP_PAGES = ("overview", "plans", "checkpoints", "restores", "schedules", "alerts", "logs")
PHONE_PAGES = ("overview", "checkpoints", "restores")


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = requests.post(url, json=body, timeout=30)
    resp.raise_for_status()
    answer: dict[str, Any] = resp.json()
    return answer


def populate(service: AllInOne) -> None:
    """A plan protected, restored and verified; a schedule; a second, larger volume being protected."""
    api = service.api()
    write_mixed_image(service.volumes / "web-01.img", size=48 * MiB)
    write_mixed_image(service.volumes / "db-01.img", size=64 * MiB, seed=11)
    with open(service.volumes / "archive.img", "wb") as fh:
        fh.write(os.urandom(384 * MiB))
    web = _post(f"{api}/plans", {"plan": {"name": "web tier", "provider_id": PROVIDER_ID, "parameters": {},
                                          "resources": [{"id": "web-01.img", "type": "OS::Cinder::Volume",
                                                         "name": "web-01.img"},
                                                        {"id": "db-01.img", "type": "OS::Cinder::Volume",
                                                         "name": "db-01.img"}]}})["plan"]
    cp_url = f"{api}/providers/{PROVIDER_ID}/checkpoints"
    for _ in range(2):
        cp = _post(cp_url, {"checkpoint": {"plan_id": web["id"]}})["checkpoint"]
        wait_for(f"{cp_url}/{cp['id']}", "checkpoint", {"available", "error"})
    restore = _post(f"{api}/restores", {"restore": {
        "provider_id": PROVIDER_ID, "checkpoint_id": cp["id"], "restore_target": None,
        "parameters": {"OS::Cinder::Volume#web-01.img": {"restore_name": "web-01.restored.img"},
                       "OS::Cinder::Volume#db-01.img": {"restore_name": "db-01.restored.img"}}}})["restore"]
    wait_for(f"{api}/restores/{restore['id']}", "restore", {"success", "fail"})
    verification = _post(f"{api}/verifications", {"verification": {
        "provider_id": PROVIDER_ID, "checkpoint_id": cp["id"], "parameters": {}}})["verification"]
    wait_for(f"{api}/verifications/{verification['id']}", "verification", {"success", "fail"})
    nightly = _post(f"{api}/triggers", {"trigger_info": {"name": "nightly", "type": "time", "properties": {
        "pattern": "0 2 * * *", "format": "crontab"}}})["trigger_info"]
    _post(f"{api}/scheduled_operations", {"scheduled_operation": {
        "name": "web tier nightly, keep 7", "operation_type": "retention_protect", "trigger_id": nightly["id"],
        "operation_definition": {"provider_id": PROVIDER_ID, "plan_id": web["id"], "max_backups": 7}}})
    minute = (_dt.datetime.now(_dt.UTC) + _dt.timedelta(minutes=5)).minute  # hourly, its first fire soon
    hourly = _post(f"{api}/triggers", {"trigger_info": {"name": f"hourly at :{minute:02d}", "type": "time",
                                                        "properties": {"pattern": f"{minute} * * * *",
                                                                       "format": "crontab", "window": 300}}})
    _post(f"{api}/scheduled_operations", {"scheduled_operation": {
        "name": "web tier hourly", "operation_type": "protect", "trigger_id": hourly["trigger_info"]["id"],
        "operation_definition": {"provider_id": PROVIDER_ID, "plan_id": web["id"]}}})
    archive = _post(f"{api}/plans", {"plan": {"name": "archive", "provider_id": PROVIDER_ID, "parameters": {},
                                              "resources": [{"id": "archive.img", "type": "OS::Cinder::Volume",
                                                             "name": "archive.img"}]}})["plan"]
    _post(cp_url, {"checkpoint": {"plan_id": archive["id"]}})  # left running: the checkpoints page shows it


def shoot(service: AllInOne, out: Path) -> list[Path]:
    from playwright.sync_api import expect

    out.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []
    with browser.chromium() as chromium:
        # On the laptop as the administrator (the pools are theirs to see), on the phone as a member.
        for device, viewport, pages, token, extra in (
                ("laptop", browser.LAPTOP, LAPTOP_PAGES, service.admin_token, {}),
                ("phone", browser.PHONE, PHONE_PAGES, "", {"is_mobile": True, "has_touch": True})):
            context = chromium.new_context(viewport=viewport, device_scale_factor=1, **extra)
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{service.url}/dashboard/")
            page.fill("#login-project", "demo")
            page.fill("#login-token", token)
            page.click("#login-submit")
            page.wait_for_selector("#nav:not([hidden])")
            for name in pages:
                page.click(f"#nav a[href='#{name}']")
                expect(page.locator(f"#view[data-view={name}]:not([aria-busy])")).to_be_attached()
                expect(page.locator("#view h2").first).to_be_visible()
                page.wait_for_timeout(300)
                path = out / f"{device}-{name}.png"
                page.screenshot(path=str(path), full_page=True)
                shots.append(path)
            context.close()
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="strongroom-screenshots-") as tmp, running_all_in_one(Path(tmp)) as svc:
        populate(svc)
        shots = shoot(svc, args.out)
    for path in shots:
        print(path)
    print(f"{len(shots)} screenshots in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
