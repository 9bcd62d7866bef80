"""Fixtures `browser` and `page` (a plugin of tests/conftest.py): Debian's chromium, driven
by Playwright, never a browser it downloads."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from devtools.procs import ROOT, poll_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"  # screenshots, kept out of git
# Headless, and nothing that phones home: this machine's network is closed.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            raise RuntimeError("chromium is missing: .ci/run installs Debian's chromium package")
        pytest.skip("Debian's chromium is not installed: apt install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"the page threw: {errors}"


def wait_image_loaded(page: Page, selector: str, width: int, what: str) -> None:
    """Until the shown image at `selector` has loaded, `width` pixels wide."""
    # page.evaluate goes through the DevTools protocol, so the page's CSP (no eval) still holds.
    script = (
        "([selector, width]) => { const img = document.querySelector(selector);"
        " return !img.hidden && img.complete && img.naturalWidth === width; }"
    )
    poll_until(lambda: page.evaluate(script, [selector, width]), timeout=10, what=what)
