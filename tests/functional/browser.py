"""Debian's Chromium, driven headless by Playwright (never a browser Playwright downloads itself)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import Any

#: Where Debian's ``chromium`` package puts the browser itself (``/usr/bin/chromium`` is a shell wrapper).
DEBIAN_CHROMIUM = "/usr/lib/chromium/chromium"
#: A laptop's and a phone's screens (CSS pixels).
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str | None:
    """``$CHROMIUM``, Debian's Chromium, or a ``chromium`` on the PATH; None when there is none."""
    for candidate in (os.environ.get("CHROMIUM"), DEBIAN_CHROMIUM, shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (a Playwright ``Browser``), closed at the end; RuntimeError naming what is missing."""
    path = chromium_path()
    if path is None:
        raise RuntimeError("no Chromium: install Debian's chromium package (make system-packages)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        raise RuntimeError("no Playwright: pip install -e '.[test]'") from err
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True,
                                     args=["--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()
