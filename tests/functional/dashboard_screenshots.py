"""Screenshots of the dashboard's main pages with real data: ``make screenshots`` (doc/dashboard.md).

Starts an all-in-one in a temporary directory, gives it two volumes, a plan, a checkpoint, a restore, a
verification and a nightly schedule through the REST API, a VM image (GPT, ext4) protected with a restore of some
of its files, starts protecting a larger volume, then signs in with Debian's headless Chromium and shoots each
page on a laptop's screen and a few on a phone's, the VM checkpoint's files in ``/etc`` among them::

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

from strongroom.testing import disk_images
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


def populate_vm(service: AllInOne) -> str | None:
    """A VM image (a GPT table, an ext4 filesystem with an ``/etc`` tree) protected, and a restore of two of its
    paths; the checkpoint's id, or None (said on stderr) without the tools that build the image."""
    missing = disk_images.tools_missing()
    if missing:
        print(f"no files page: needs {missing} (make system-packages)", file=sys.stderr)
        return None
    api = service.api()
    scratch = service.state_dir.parent / "vm"
    disk_images.populate_etc(scratch / "tree")
    disk_images.make_gpt_disk(scratch / "app-01.img", scratch / "tree")
    (scratch / "app-01.img").rename(service.volumes / "app-01.img")
    plan = _post(f"{api}/plans", {"plan": {"name": "app server", "provider_id": PROVIDER_ID, "parameters": {},
                                           "resources": [{"id": "app-01.img", "type": "OS::Cinder::Volume",
                                                          "name": "app-01.img"}]}})["plan"]
    cp_url = f"{api}/providers/{PROVIDER_ID}/checkpoints"
    cp = _post(cp_url, {"checkpoint": {"plan_id": plan["id"]}})["checkpoint"]
    wait_for(f"{cp_url}/{cp['id']}", "checkpoint", {"available", "error"})
    restore = _post(f"{api}/restores", {"restore": {
        "provider_id": PROVIDER_ID, "checkpoint_id": cp["id"], "restore_target": None,
        "parameters": {"OS::Cinder::Volume#app-01.img": {"paths": ["/etc/ssh", "/etc/passwd"],
                                                         "restore_name": "app-01-etc.tar"}}}})["restore"]
    wait_for(f"{api}/restores/{restore['id']}", "restore", {"success", "fail"})
    return str(cp["id"])


def populate(service: AllInOne) -> str | None:
    """A plan protected, restored and verified; a schedule; a VM image protected (:func:`populate_vm`, whose
    checkpoint's id is returned); a second, larger volume being protected."""
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
    vm_checkpoint = populate_vm(service)
    archive = _post(f"{api}/plans", {"plan": {"name": "archive", "provider_id": PROVIDER_ID, "parameters": {},
                                              "resources": [{"id": "archive.img", "type": "OS::Cinder::Volume",
                                                             "name": "archive.img"}]}})["plan"]
    _post(cp_url, {"checkpoint": {"plan_id": archive["id"]}})  # left running: the checkpoints page shows it
    return vm_checkpoint


def shoot_files(page: Any, checkpoint_id: str, path: Path) -> None:
    """The checkpoint's files in ``/etc``, opened by clicking, with a file and a directory ticked."""
    from playwright.sync_api import expect

    page.click("#nav a[href='#checkpoints']")
    page.locator(f"[data-testid=checkpoint][data-id='{checkpoint_id}'] [data-testid=files]").click()
    page.locator("[data-testid=files] tr[data-path='/etc'] [data-testid=open]").click()
    for ticked in ("/etc/ssh", "/etc/passwd"):
        page.locator(f"[data-testid=files] tr[data-path='{ticked}'] [data-testid=select]").check()
    expect(page.locator("[data-testid=picked] li")).to_have_count(2)
    page.wait_for_timeout(300)
    page.screenshot(path=str(path), full_page=True)


def shoot(service: AllInOne, out: Path, vm_checkpoint: str | None = None) -> list[Path]:
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
            if vm_checkpoint is not None:
                path = out / f"{device}-files.png"
                shoot_files(page, vm_checkpoint, path)
                shots.append(path)
            context.close()
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="strongroom-screenshots-") as tmp, running_all_in_one(Path(tmp)) as svc:
        vm_checkpoint = populate(svc)
        shots = shoot(svc, args.out, vm_checkpoint)
    for path in shots:
        print(path)
    print(f"{len(shots)} screenshots in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
