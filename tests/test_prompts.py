import pytest
import torch

from dreamfusion.prompts import EmbeddingCache, ViewPrompts, interpolation_weights, view_prompt


class OneHotPrior:
    """Embeds each distinct prompt as a one-hot vector and counts encoder calls."""

    def __init__(self, key="model-a"):
        self.cache_key, self.calls, self.vocab = key, [], {}

    def encode_text(self, prompts):
        self.calls.append(list(prompts))
        rows = []
        for p in prompts:
            index = self.vocab.setdefault(p, len(self.vocab))
            row = torch.zeros(16)
            row[index] = 1.0
            rows.append(row)
        return torch.stack(rows)


def test_view_prompt_text():
    assert view_prompt("a hamburger", 0) == "a hamburger, front view"
    assert view_prompt("a hamburger", 3) == "a hamburger, side view"
    assert view_prompt("a hamburger", 5) == "a hamburger, bottom view"


@pytest.mark.parametrize("az, expected", [(0, (1, 0, 0)), (45, (0.5, 0.5, 0)), (-45, (0.5, 0.5, 0)), (90, (0, 1, 0)),
                                          (-90, (0, 1, 0)), (135, (0, 0.5, 0.5)), (-180, (0, 0, 1)), (180, (0, 0, 1)),
                                          (-135, (0, 0.5, 0.5)), (30, (2 / 3, 1 / 3, 0))])
def test_interpolation_weights(az, expected):
    assert interpolation_weights(torch.tensor([float(az)]))[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_interpolated_embeddings_mix_front_side_back():
    prior = OneHotPrior()
    prompts = ViewPrompts(prior, "a duck")
    front, side, back = (prompts.views[k] for k in ("front", "side", "back"))
    mixed = prompts.interpolated(torch.tensor([0.0, 60.0, 150.0]))
    assert torch.allclose(mixed[0], front)
    assert torch.allclose(mixed[1], front / 3 + 2 * side / 3)
    assert torch.allclose(mixed[2], side / 3 + 2 * back / 3)
    cfg = prompts.with_uncond(mixed)
    assert cfg.shape[0] == 6 and torch.equal(cfg[0], prompts.uncond)


def test_view_independent_mode_uses_the_plain_prompt():
    prompts = ViewPrompts(OneHotPrior(), "a duck", view_dependent=False)
    assert torch.equal(prompts.interpolated(torch.tensor([0.0, 170.0]))[1], prompts.plain)
    assert torch.equal(prompts.by_direction(torch.tensor([2]))[0], prompts.plain)


def test_by_direction_picks_the_class_prompt():
    prior = OneHotPrior()
    prompts = ViewPrompts(prior, "a duck")
    chosen = prompts.by_direction(torch.tensor([4, 2, 3]))
    assert torch.equal(chosen[0], prompts.views["overhead"])
    assert torch.equal(chosen[1], prompts.views["back"])
    assert torch.equal(chosen[2], prompts.views["side"])


def test_cache_is_keyed_by_model_and_prompt():
    cache = EmbeddingCache()
    prior = OneHotPrior("model-a")
    ViewPrompts(prior, "a duck", cache=cache)
    encoded = sum(len(c) for c in prior.calls)
    assert encoded == 7  # "", plain, five views
    ViewPrompts(prior, "a duck", cache=cache)
    assert sum(len(c) for c in prior.calls) == encoded  # nothing re-encoded
    other = OneHotPrior("model-b")
    ViewPrompts(other, "a duck", cache=cache)
    assert sum(len(c) for c in other.calls) == 7  # another model gets its own entries
    assert len(cache) == 14
