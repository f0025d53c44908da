"""Fixtures for the evaluation tests: OpenAI's CLIP vocabulary (``make models``), a tiny random CLIP
over it, and one tiny trained exemplar workspace (~30 s, once per session)."""

import os
from pathlib import Path

import pytest


def vocabulary_unavailable(reason: str) -> None:
    """Skip the test, or fail it under CI (``CI=true``): CI must never pass by skipping it."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the CLIP vocabulary is needed under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def bpe_path() -> Path:
    from dreamfusion.evaluation.clip_vocabulary import default_bpe_path

    path = default_bpe_path()
    if not path.is_file():
        vocabulary_unavailable(f"OpenAI's CLIP vocabulary {path} is missing (run `make models`)")
    return path


@pytest.fixture(scope="session")
def clip_tokenizer(bpe_path):
    from dreamfusion.evaluation.clip_vocabulary import clip_tokenizer_from_bpe

    return clip_tokenizer_from_bpe(bpe_path)


@pytest.fixture(scope="session")
def tiny_clip_folder(bpe_path, tmp_path_factory) -> Path:
    from dreamfusion.evaluation.tiny_clip import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "clip", bpe_path=bpe_path)


@pytest.fixture(scope="session")
def trained_workspace(tmp_path_factory) -> Path:
    """'a hamburger' distilled with the exemplar prior for 20 steps at 32² (its checkpoint is what counts)."""
    from dreamfusion.cli import main

    workspace = tmp_path_factory.mktemp("evaluation") / "hamburger"
    code = main(["--guidance", "exemplar", "--text", "a hamburger", "--w", "24", "--h", "24", "--W", "32", "--H", "32",
                 "--num_steps", "16", "--upsample_steps", "0", "--log2_hashmap_size", "14", "--iters", "20",
                 # the demo's camera ranges: the exemplar image set is then the one other tests of a session built
                 "--radius_range", "3.2", "3.2", "--theta_range", "30", "150",
                 "--dataset_size_train", "10", "--dataset_size_valid", "1", "--dataset_size_test", "2", "--seed", "0",
                 "--device", "cpu", "--workspace", str(workspace)])
    assert code == 0
    return workspace
