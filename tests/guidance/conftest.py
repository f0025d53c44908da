"""Shared fixtures for the guidance tests: tiny random priors, saved folders, an offline hub."""

import pytest

from dreamfusion.guidance import tiny_models


@pytest.fixture(scope="session")
def sd_prior():
    return tiny_models.tiny_stable_diffusion(seed=0)


@pytest.fixture(scope="session")
def sd_folder(tmp_path_factory):
    return tiny_models.save_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny-sd"), seed=0)


@pytest.fixture(scope="session")
def text_embeddings(sd_prior):
    """[uncond, cond] rows of the tiny SD text encoder, [2, 16, 32]."""
    return sd_prior.encode_text(["", "a cat"])

