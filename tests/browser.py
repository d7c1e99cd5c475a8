"""A real headless browser for the page tests: Playwright driving the system chromium (the OS package).

Install: `pip install "ftkit[browser]"` and `apt-get install -y chromium` (Debian/Ubuntu; any chromium or
chrome on PATH works). Tests skip with the reason when either is missing. Screenshots go to
$FTKIT_SCREENSHOTS when set (e.g. to look at them after CI), else to the test's temp folder.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def executable() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


@contextlib.contextmanager
def page(width: int = 1280, height: int = 900):
    """A Playwright page in headless chromium; skips the test when Playwright or a browser is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason='Playwright is not installed: pip install "ftkit[browser]"')
    exe = executable()
    if exe is None:
        pytest.skip("no chromium on PATH: apt-get install -y chromium (or any chrome), see README 'Tests'")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def screenshot_path(tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("FTKIT_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name
