"""Fixtures for the whole suite: every test runs offline against an empty private model cache."""

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
    import os

    folder = tmp_path_factory.mktemp("dreamfusion-cache")
    previous = os.environ.get("DREAMFUSION_CACHE")
    os.environ["DREAMFUSION_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("DREAMFUSION_CACHE", None)
    else:
        os.environ["DREAMFUSION_CACHE"] = previous
