"""Tiny settings for training tests: 16x16 renders, 8 samples per ray, 2^12 hash tables, tiny SD."""

import pytest

@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    from dreamfusion.guidance.tiny_models import save_tiny_stable_diffusion

    return save_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny-sd"), seed=0)
