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
