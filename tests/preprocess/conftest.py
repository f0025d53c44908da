"""Fixtures for the preprocessing tests."""

import pytest


@pytest.fixture
def folder(tmp_path):
    """An empty folder for photos and outputs (tmp_path itself holds the suite's private HF cache)."""
    path = tmp_path / "photos"
    path.mkdir()
    return path
