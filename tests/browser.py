"""Headless Chromium for tests of pages (the run page, the viewers), driven by playwright.

Playwright drives the system's Chromium (``chromium`` on PATH, e.g. Debian's package) and never
downloads a browser of its own. SwiftShader gives it WebGL 2 in software, so pages that draw with
three.js render without a GPU. The fixtures ``chromium_browser`` (session) and ``browser_page``
(one fresh context and page per test) live in ``tests/conftest.py``:

    @pytest.mark.browser
    def test_page(browser_page, tmp_path):
        browser_page.goto(path.as_uri())
        pixels = screenshot_pixels(browser_page.locator("canvas"))   # uint8 [H, W, 3]

Without playwright or Chromium a browser test is skipped, except under CI (``CI=true``), where it
fails: CI must never pass by skipping them.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from dreamfusion.viewer.browser import FLAGS as CHROMIUM_ARGS, find_chromium  # noqa: F401 (re-exported)

TIMEOUT_MS = 15_000  # default bound of every wait in a browser test


def unavailable(reason: str) -> None:
    """Skip the test, or fail it when running under CI."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def screenshot_pixels(locator) -> np.ndarray:
    """An element's screenshot as uint8 ``[H, W, 3]`` (CSS pixels at device scale 1)."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB"))
