"""The web dashboard in a real headless Chromium against the all-in-one: sign in, create a plan from the
protectable instances, protect it and watch the progress, restore the volume and verify the checkpoint, all by
clicking; browse the files of a checkpoint of an ext4 VM image, download one and restore one; on a phone's screen
too; and a plan or a file named like an HTML element stays text."""

from __future__ import annotations

import hashlib
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from strongroom.testing import disk_images
from tests.functional import banks, browser
from tests.functional.harness import AllInOne, MiB, wait_for
from tests.servers import unavailable

pytestmark = pytest.mark.functional

XSS_NAME = "<img src=x onerror=alert(1)>"
TIMEOUT_MS = 30_000


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


#: zstd at level 15 on unique compressible bytes (tests/functional/banks.py): slow enough that the page shows
#: the protect running before it ends.
VOLUME = {"compression_level": 15}
VOLUME_SIZE = 8 * MiB
PROVIDER: dict[str, str] = {}
#: The VM image's volume (GPT, a BIOS boot partition and an ext4 one, strongroom/testing/disk_images.py) and
#: the tree its ext4 filesystem was made from.
VM_VOLUME = "vm.img"
VM_TREE: dict[str, Path] = {}
LONG_NAME = "a-configuration-file-whose-name-has-no-space-and-must-wrap-on-a-phone.cfg"
needs_disk_tools = pytest.mark.skipif(bool(disk_images.tools_missing()),
                                      reason=f"needs {disk_images.tools_missing()} (make system-packages)")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[AllInOne]:
    root = tmp_path_factory.mktemp("dashboard")
    svc, PROVIDER["id"] = banks.configure(root, banks.bank_under_test("fs", request, root), "dashboard-test",
                                          volume=VOLUME)
    (svc.volumes / "disk.img").write_bytes(banks.random_compressible(random.Random(5), VOLUME_SIZE))
    if not disk_images.tools_missing():
        tree = VM_TREE["root"] = root / "vm-tree"
        disk_images.populate_etc(tree)
        (tree / "etc" / XSS_NAME).write_text("a file named like an HTML element\n")
        (tree / "etc" / "default" / "grub.d" / LONG_NAME).write_text("GRUB_TERMINAL=console\n")  # for the phone
        disk_images.make_gpt_disk(root / VM_VOLUME, tree)  # made beside, then moved in whole
        (root / VM_VOLUME).rename(svc.volumes / VM_VOLUME)
    svc.start()
    try:
        yield svc
    finally:
        if svc.process is not None and svc.process.poll() is None:
            svc.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    try:
        with browser.chromium() as found:
            yield found
    except RuntimeError as err:
        unavailable(str(err))


class Watch:
    """What a page did that a user would not want: script dialogs, script errors, requests to elsewhere."""

    def __init__(self, page: Any, origin: str) -> None:
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.api_tokens: set[str] = set()

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        def on_request(request: Any) -> None:
            # A download is a blob of the page's own origin (blob:http://127.0.0.1:port/<uuid>): not a network fetch.
            if not request.url.startswith((origin, "data:", f"blob:{origin}/")):
                self.foreign.append(request.url)
            if "/v1/" in request.url:
                self.api_tokens.add(request.headers.get("x-auth-token", ""))

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda err: self.errors.append(str(err)))
        page.on("request", on_request)


def sign_in(page: Any, service: AllInOne, token: str = "") -> None:
    page.goto(f"{service.url}/dashboard/")
    page.fill("#login-project", "demo")
    page.fill("#login-token", token)
    page.click("#login-submit")
    page.wait_for_selector("#nav:not([hidden])")


def test_protect_progress_restore_verify_by_clicking(service: AllInOne, chromium: Any) -> None:
    from playwright.sync_api import expect

    context = chromium.new_context(viewport=browser.LAPTOP)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    watch = Watch(page, service.url)
    html = requests.get(f"{service.url}/dashboard/", timeout=10)
    assert html.status_code == 200 and "script-src 'self'" in html.headers["Content-Security-Policy"]

    sign_in(page, service, token="my-session-token")
    assert page.evaluate("sessionStorage.getItem('strongroom.token')") == "my-session-token"
    assert service.admin_token not in page.content()

    # The overview: the provider of providers.d/local.conf and its usage.
    provider = page.locator("[data-testid=provider]").first
    expect(provider).to_contain_text("Test fs")
    expect(provider.locator("[data-testid=logical]")).to_have_text("0 B")

    # A plan named like an HTML element, from the protectable instances.
    page.click("#nav a[href='#plans']")
    page.fill("#plan-name-input", XSS_NAME)
    page.check("input[name=resource][data-type='OS::Cinder::Volume'][value='disk.img']")
    page.click("#plan-create")
    name = page.locator("[data-testid=plan-name]")
    expect(name).to_have_text(XSS_NAME)
    expect(page.locator("#flash")).to_contain_text(XSS_NAME)
    assert page.locator("img").count() == 0

    # Protect: the checkpoints page shows the run and follows it to the end without a reload.
    page.locator("[data-testid=protect]").first.click()
    page.wait_for_url("**#checkpoints")
    row = page.locator("[data-testid=checkpoint]").first
    expect(row.locator(".name")).to_contain_text(XSS_NAME)
    expect(row).to_have_attribute("data-status", "protecting")
    expect(row.locator("[data-testid=progress]")).to_contain_text("of 8.0 MiB")
    expect(row.locator("[data-testid=restore]")).to_be_disabled()
    expect(row).to_have_attribute("data-status", "available", timeout=60_000)  # the page asked again by itself
    expect(row.locator("[data-testid=progress]")).to_contain_text("100% · 8.0 MiB of 8.0 MiB")
    checkpoint_id = row.get_attribute("data-id")
    api = service.api()
    [listed] = requests.get(f"{api}/providers/{PROVIDER['id']}/checkpoints", timeout=10) \
        .json()["checkpoints"]
    assert listed["id"] == checkpoint_id and listed["status"] == "available"

    # Restore the whole volume under a new name: the restores page follows it to success.
    row.locator("[data-testid=restore]").click()
    page.fill("#restore-form input[name=restore_name]", "from-the-browser.img")
    page.click("#restore-submit")
    page.wait_for_url("**#restores")
    restore = page.locator("[data-testid=restore-row]").first
    expect(restore).to_have_attribute("data-status", "success")
    expect(restore).to_contain_text("disk.img: success")
    assert sha256(service.volumes / "from-the-browser.img") == sha256(service.volumes / "disk.img")

    # Verify: every chunk re-read, shown as a success.
    page.click("#nav a[href='#checkpoints']")
    page.locator(f"[data-testid=checkpoint][data-id='{checkpoint_id}'] [data-testid=verify]").click()
    page.wait_for_url("**#restores")
    verification = page.locator("[data-testid=verification-row]").first
    expect(verification).to_have_attribute("data-status", "success")

    # Its volume is random bytes: Files shows the API's refusal, which names what it found, not a blank page.
    page.click("#nav a[href='#checkpoints']")
    page.locator(f"[data-testid=checkpoint][data-id='{checkpoint_id}'] [data-testid=files]").click()
    expect(page.locator("[data-testid=files-error]")).to_contain_text("no filesystem signature")
    expect(page.locator("#view h2")).to_contain_text(XSS_NAME)

    # The operation logs name all three.
    page.click("#nav a[href='#logs']")
    logs = page.locator("[data-testid=log]")
    expect(logs).to_have_count(3)
    for op in ("protect", "restore", "verify"):
        expect(page.locator("[data-testid=logs]")).to_contain_text(op)

    # Usage now counts the checkpoint.
    page.click("#nav a[href='#overview']")
    expect(page.locator("[data-testid=provider] [data-testid=logical]").first).to_have_text("8.0 MiB")

    for view in ("#schedules", "#alerts"):
        page.click(f"#nav a[href='{view}']")
        expect(page.locator("#view h2").first).to_be_visible()
    assert page.locator("img").count() == 0
    assert watch.dialogs == [] and watch.errors == [] and watch.foreign == []
    assert watch.api_tokens == {"my-session-token"}
    context.close()


def vm_checkpoint(service: AllInOne) -> str:
    """An available checkpoint of the VM image: one made earlier (by clicking), else one protected now."""
    api = service.api()
    listed = requests.get(f"{api}/providers/{PROVIDER['id']}/checkpoints", timeout=10).json()["checkpoints"]
    for cp in listed:
        if cp["status"] == "available" and [r["id"] for r in cp["protection_plan"]["resources"]] == [VM_VOLUME]:
            return str(cp["id"])
    plan = requests.post(f"{api}/plans", json={"plan": {"name": "vm", "provider_id": PROVIDER["id"], "parameters": {},
                                                        "resources": [{"id": VM_VOLUME, "type": "OS::Cinder::Volume",
                                                                       "name": VM_VOLUME}]}}, timeout=10)
    assert plan.status_code == 200, plan.text
    created = requests.post(f"{api}/providers/{PROVIDER['id']}/checkpoints",
                            json={"checkpoint": {"plan_id": plan.json()["plan"]["id"]}}, timeout=10)
    assert created.status_code == 200, created.text
    cp_id = str(created.json()["checkpoint"]["id"])
    done = wait_for(f"{api}/providers/{PROVIDER['id']}/checkpoints/{cp_id}", "checkpoint", {"available", "error"})
    assert done["status"] == "available", done
    return cp_id


@needs_disk_tools
def test_browse_download_and_restore_chosen_files_by_clicking(service: AllInOne, chromium: Any,
                                                              tmp_path: Path) -> None:
    from playwright.sync_api import expect

    source = VM_TREE["root"]
    context = chromium.new_context(viewport=browser.LAPTOP, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    watch = Watch(page, service.url)
    sign_in(page, service, token="files-token")

    # A plan of the VM image, protected by clicking.
    page.click("#nav a[href='#plans']")
    page.fill("#plan-name-input", "vm by clicking")
    page.check(f"input[name=resource][data-type='OS::Cinder::Volume'][value='{VM_VOLUME}']")
    page.click("#plan-create")
    plan_row = page.locator("[data-testid=plans] tr", has_text="vm by clicking")
    plan_row.locator("[data-testid=protect]").click()
    page.wait_for_url("**#checkpoints")
    row = page.locator("[data-testid=checkpoint]", has_text="vm by clicking").first
    expect(row).to_have_attribute("data-status", "available", timeout=60_000)
    checkpoint_id = str(row.get_attribute("data-id"))

    # Files: the volume's partitions, the largest readable one chosen, its root listed.
    row.locator("[data-testid=files]").click()
    page.wait_for_url("**#files?*")
    listing = page.locator("[data-testid=files]")
    expect(listing.locator("tr[data-path='/etc']")).to_have_attribute("data-type", "directory")
    partitions = page.locator("[data-testid=partition]")
    expect(partitions).to_have_count(2)
    expect(partitions.nth(1)).to_have_attribute("aria-current", "true")
    expect(partitions.nth(1)).to_contain_text("root")
    expect(partitions.nth(1)).to_contain_text("ext4")
    expect(page.locator("[data-testid=filesystem]")).to_contain_text("ext4 on partition 2")

    # The BIOS boot partition holds no filesystem: the API's 400, which names what it found, is shown.
    partitions.nth(0).click()
    error = page.locator("[data-testid=files-error]")
    expect(error).to_contain_text("partition 1: no filesystem signature")
    expect(page.locator("[data-testid=partitions]")).to_be_visible()  # the way back is still there
    partitions.nth(1).click()

    # Into /etc: names, sizes, modes; the symlink's target; a file named like an HTML element stays text.
    listing.locator("tr[data-path='/etc'] [data-testid=open]").click()
    expect(page.locator("[data-testid=breadcrumb]")).to_contain_text("etc")
    names = {p.name for p in (source / "etc").iterdir()}
    expect(listing.locator("tr[data-testid=file]")).to_have_count(len(names))
    passwd = listing.locator("tr[data-path='/etc/passwd']")
    expect(passwd.locator("td[data-label=Size]")).to_have_text(
        f"{(source / 'etc/passwd').stat().st_size / 1024:.1f} KiB")
    expect(passwd.locator("td[data-label=Mode]")).to_have_text("-rw-r--r--")
    expect(listing.locator("tr[data-path='/etc/localtime']")).to_contain_text("→ /usr/share/zoneinfo/UTC")
    expect(listing.locator(f"tr[data-path='/etc/{XSS_NAME}'] .name")).to_have_text(XSS_NAME)
    assert page.locator("img").count() == 0

    # Download one file: fetched with the session's token, the same bytes as the source.
    with page.expect_download() as info:
        listing.locator("tr[data-path='/etc/ld.so.cache'] [data-testid=download]").click()
    download = info.value
    assert download.suggested_filename == "ld.so.cache"
    assert sha256(Path(download.path())) == sha256(source / "etc/ld.so.cache")

    # Tick one file, go down into /etc/ssh and back up by the breadcrumb: it stays ticked.
    passwd.locator("[data-testid=select]").check()
    expect(page.locator("[data-testid=picked]")).to_have_text("/etc/passwd")
    listing.locator("tr[data-path='/etc/ssh'] [data-testid=open]").click()
    expect(listing.locator("tr[data-path='/etc/ssh/ssh_host_ed25519_key'] td[data-label=Mode]")) \
        .to_have_text("-rw-------")
    page.locator("[data-testid=breadcrumb] a", has_text="etc").click()
    expect(listing.locator("tr[data-path='/etc/passwd'] [data-testid=select]")).to_be_checked()

    # Restore selected into a new volume: the restores page follows it to success.
    page.fill("#files-restore-name", "passwd-from-the-browser.tar")
    page.click("#files-restore-submit")
    page.wait_for_url("**#restores")
    restore = page.locator("[data-testid=restore-row]", has_text=checkpoint_id[:8]).first
    expect(restore).to_have_attribute("data-status", "success", timeout=60_000)
    expect(restore).to_contain_text(f"{VM_VOLUME}: success")
    with tarfile.open(service.volumes / "passwd-from-the-browser.tar") as tar:
        assert [m.name for m in tar.getmembers() if m.isfile()] == ["etc/passwd"]
        member = tar.extractfile("etc/passwd")
        assert member is not None
        assert member.read() == (source / "etc/passwd").read_bytes()

    # Then verify the checkpoint.
    page.click("#nav a[href='#checkpoints']")
    page.locator(f"[data-testid=checkpoint][data-id='{checkpoint_id}'] [data-testid=verify]").click()
    page.wait_for_url("**#restores")
    verification = page.locator("[data-testid=verification-row]", has_text=checkpoint_id[:8]).first
    expect(verification).to_have_attribute("data-status", "success", timeout=60_000)

    assert page.locator("img").count() == 0
    assert watch.dialogs == [] and watch.errors == [] and watch.foreign == []
    assert watch.api_tokens == {"files-token"}
    context.close()


def test_a_phone_screen_shows_every_page_without_sideways_scrolling(service: AllInOne, chromium: Any) -> None:
    from playwright.sync_api import expect

    created = requests.post(f"{service.api()}/plans", json={"plan": {
        "name": "a plan with a rather long name that must wrap on a phone", "provider_id": PROVIDER["id"],
        "parameters": {}, "resources": [{"id": "disk.img", "type": "OS::Cinder::Volume", "name": "disk.img"}]}},
                            timeout=10)
    assert created.status_code == 200, created.text
    vm_checkpoint_id = None if disk_images.tools_missing() else vm_checkpoint(service)
    context = chromium.new_context(viewport=browser.PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    watch = Watch(page, service.url)
    sign_in(page, service)
    # The page's width against the layout viewport's (clientWidth): a mobile browser zooms out to show a page
    # wider than the screen, and window.innerWidth then grows with it (to 745 px for a 745 px page).
    widths = "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    for view in ("overview", "plans", "checkpoints", "restores", "schedules", "alerts", "logs"):
        page.click(f"#nav a[href='#{view}']")
        expect(page.locator(f"#view[data-view={view}]:not([aria-busy])")).to_be_attached()
        expect(page.locator("#view h2").first).to_be_visible()
        width = page.evaluate(widths)
        assert width[0] <= width[1], f"#{view} is {width[0]} px wide on a {width[1]} px screen"
    if vm_checkpoint_id is not None:
        # A checkpoint's files too: its partitions, the breadcrumb deep in /etc, a long name, a ticked file.
        page.click("#nav a[href='#checkpoints']")
        page.locator(f"[data-testid=checkpoint][data-id='{vm_checkpoint_id}'] [data-testid=files]").click()
        page.locator("[data-testid=files] tr[data-path='/etc'] [data-testid=open]").click()
        page.locator("[data-testid=files] tr[data-path='/etc/default'] [data-testid=open]").click()
        page.locator("[data-testid=files] tr[data-path='/etc/default/grub.d'] [data-testid=open]").click()
        box = page.locator("[data-testid=files] tr[data-path='/etc/default/grub.d/50-cloud.cfg'] "
                           "[data-testid=select]")
        box.check()
        expect(page.locator("[data-testid=picked]")).to_contain_text("/etc/default/grub.d/50-cloud.cfg")
        expect(page.locator(f"[data-testid=files] tr[data-path='/etc/default/grub.d/{LONG_NAME}']")).to_be_visible()
        expect(page.locator("[data-testid=partition]")).to_have_count(2)
        expect(page.locator("td[data-label=Mode]").first).to_be_visible()
        width = page.evaluate(widths)
        assert width[0] <= width[1], f"the files page is {width[0]} px wide on a {width[1]} px screen"
    # On the phone a table row is a card whose cells are labelled.
    page.click("#nav a[href='#plans']")
    cell = page.locator("td[data-label=Plan]").first
    expect(cell).to_be_visible()
    label = cell.evaluate("td => getComputedStyle(td, '::before').content")
    assert label == '"Plan"'
    assert watch.errors == [] and watch.dialogs == []
    context.close()


def test_signing_out_forgets_the_token(service: AllInOne, chromium: Any) -> None:
    context = chromium.new_context(viewport=browser.LAPTOP)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    sign_in(page, service, token="t-123")
    page.click("#sign-out")
    page.wait_for_selector("#login:not([hidden])")
    assert page.evaluate("[sessionStorage.getItem('strongroom.token'), sessionStorage.length]") == [None, 0]
    page.reload()
    page.wait_for_selector("#login:not([hidden])")
    assert page.locator("#nav").is_hidden()
    context.close()


def test_schedules_show_each_trigger_and_operation(service: AllInOne, chromium: Any) -> None:
    from playwright.sync_api import expect

    api = service.api()
    plan = requests.post(f"{api}/plans", json={"plan": {"name": "scheduled", "provider_id": PROVIDER['id'],
                                                        "parameters": {}, "resources": [
                                                            {"id": "disk.img", "type": "OS::Cinder::Volume",
                                                             "name": "disk.img"}]}}, timeout=10).json()["plan"]
    nightly = requests.post(f"{api}/triggers", json={"trigger_info": {"name": "nightly", "type": "time", "properties": {
        "pattern": "0 2 * * *", "format": "crontab", "window": 600}}}, timeout=10).json()["trigger_info"]
    op = requests.post(f"{api}/scheduled_operations", json={"scheduled_operation": {
        "name": "nightly, keep 7", "operation_type": "retention_protect", "trigger_id": nightly["id"],
        "operation_definition": {"provider_id": PROVIDER['id'], "plan_id": plan["id"], "max_backups": 7}}},
                       timeout=10).json()["scheduled_operation"]
    requests.post(f"{api}/scheduled_operations/{op['id']}/action", json={"suspend": {}}, timeout=10) \
        .raise_for_status()

    context = chromium.new_context(viewport=browser.LAPTOP)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    sign_in(page, service)
    page.click("#nav a[href='#schedules']")
    trigger_row = page.locator(f"[data-testid=triggers] tr[data-id='{nightly['id']}']")
    expect(trigger_row).to_contain_text("0 2 * * *")
    expect(trigger_row).to_contain_text("600 s")
    expect(trigger_row).to_contain_text(nightly["properties"]["start_time"].replace("T", " ")[:19] + " UTC")
    op_row = page.locator(f"[data-testid=operations] tr[data-id='{op['id']}']")
    expect(op_row.locator("td[data-label=Trigger]")).to_have_text("nightly")
    expect(op_row.locator("td[data-label=Enabled]")).to_have_text("suspended")
    expect(op_row.locator("td[data-label='Last run']")).to_have_text("never")
    context.close()
