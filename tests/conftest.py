"""Fixtures for the whole suite: every test runs offline against an empty private model cache."""

import os

import pytest


@pytest.fixture(autouse=True)
def offline_hub(tmp_path, monkeypatch):
    """Never touch the network: HF_HUB_OFFLINE and an empty private Hugging Face cache."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(autouse=True, scope="session")
def private_dreamfusion_cache(tmp_path_factory):
    """Exemplar image sets go to a per-session folder, not the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("dreamfusion-cache")
    previous = os.environ.get("DREAMFUSION_CACHE")
    os.environ["DREAMFUSION_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("DREAMFUSION_CACHE", None)
    else:
        os.environ["DREAMFUSION_CACHE"] = previous


@pytest.fixture(scope="session")
def device():
    """The device under test of tests/test_device_paths.py: ``DREAMFUSION_TEST_DEVICE`` (default
    ``cpu``; benchmarks/gpu_check.sh sets ``cuda``). Asking for CUDA where there is none is an error,
    not a skip, so that a GPU check cannot pass without having run on the GPU."""
    import torch

    device = torch.device(os.environ.get("DREAMFUSION_TEST_DEVICE", "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.fail(f"DREAMFUSION_TEST_DEVICE={device} but torch {torch.__version__} sees no CUDA device")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


@pytest.fixture(scope="session")
def chromium_browser():
    """A headless Chromium (playwright over the system's browser, WebGL by SwiftShader) for the
    whole session; skipped without one, failed instead under CI (see tests/browser.py)."""
    from browser import CHROMIUM_ARGS, find_chromium, unavailable

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install playwright)")
    executable = find_chromium()
    if executable is None:
        unavailable("no Chromium on PATH (e.g. apt-get install chromium)")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
    except Exception as error:  # noqa: BLE001 - a browser that does not start is as good as none
        playwright.stop()
        unavailable(f"{executable} did not start: {error}")
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture
def browser_page(chromium_browser):
    """A fresh page in its own context (no shared cookies or storage), 1000x1000 CSS pixels at
    device scale 1, every wait bounded by ``browser.TIMEOUT_MS``; closed after the test."""
    from browser import TIMEOUT_MS

    context = chromium_browser.new_context(viewport={"width": 1000, "height": 1000}, device_scale_factor=1)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()
