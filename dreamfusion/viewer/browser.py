"""A headless Chromium for checking pages and the viewer (tests, benchmarks): the system's browser
driven by Playwright, never a downloaded one.

    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = launch_chromium(p)
"""

from __future__ import annotations

import os
import shutil

FLAGS = ("--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader")
"""WebGL 2 in software (SwiftShader), no sandbox (containers often run as root)."""

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium: ``$CHROMIUM`` if set, else the first of ``CANDIDATES`` on PATH."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if os.path.isfile(explicit) else shutil.which(explicit)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def launch_chromium(playwright):
    """A headless Chromium browser through Playwright (raises RuntimeError when none is installed)."""
    path = find_chromium()
    if path is None:
        raise RuntimeError("no Chromium found (install Debian's 'chromium' package, or set CHROMIUM=/path)")
    return playwright.chromium.launch(executable_path=path, args=list(FLAGS))
