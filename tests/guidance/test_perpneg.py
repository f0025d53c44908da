"""Perp-Neg: perpendicular component, aggregation, azimuth weights, and SDS through a tiny SD."""

import math

import torch

from dreamfusion.guidance.perpneg import (aggregate_perpneg, perpendicular_component,
                                          perpneg_embeddings, perpneg_view_weights)
from dreamfusion.guidance.sds import ScoreDistillation, SDSConfig


def test_perpendicular_component_is_orthogonal_per_sample():
    torch.manual_seed(0)
    x, y = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    p = perpendicular_component(x, y)
    dots = (p * y).flatten(1).sum(1)
    assert dots.abs().max() < 1e-4 * y.flatten(1).norm(dim=1).min()
    # x − p is the projection on y: a multiple of y
    coef = ((x * y).flatten(1).sum(1) / (y * y).flatten(1).sum(1)).view(-1, 1, 1, 1)
    torch.testing.assert_close(x - p, coef * y)
    assert perpendicular_component(2.5 * y, y).abs().max() < 1e-5      # parallel → nothing left


def test_aggregate_by_hand_skips_zero_weights():
    torch.manual_seed(1)
    deltas = torch.randn(3, 2, 4, 2, 2)                 # K=3 prompts, B=2
    weights = torch.tensor([[1.0, -0.5, 0.0], [1.0, 0.0, -2.0]])
    out = aggregate_perpneg(deltas, weights)

    def perp(x, y):
        return x - (x * y).sum() / (y * y).sum() * y

    want0 = deltas[0, 0] - 0.5 * perp(deltas[1, 0], deltas[0, 0])
    want1 = deltas[0, 1] - 2.0 * perp(deltas[2, 1], deltas[0, 1])
    torch.testing.assert_close(out, torch.stack([want0, want1]))


def test_view_weights_match_spec_values():
    # front view (r = 1): front negative off (r > 0.8), side negative at full strength exp(0)·w
    assert perpneg_view_weights(0.0) == ("front", "side", 1.0, ["positive", "front", "side"], [1.0, 0.0, -2.0])
    start, end, r, _, w = perpneg_view_weights(45.0)
    assert (start, end, r) == ("front", "side", 0.5)
    assert math.isclose(w[1], -2 * math.exp(-1.0)) and math.isclose(w[2], -2 * math.exp(-5.0))
    # back view (r = 0): side negative exp(0)·w/2, front negative = w
    assert perpneg_view_weights(180.0)[2:] == (0.0, ["positive", "side", "front"], [1.0, -1.0, -2.0])
    start, end, r, _, w = perpneg_view_weights(-135.0, negative_w=-3.0)
    assert (start, end, r) == ("side", "back", 0.5)
    assert math.isclose(w[1], math.exp(-5.0) * -1.5) and w[2] == -3.0
    assert perpneg_view_weights(80.0)[4][1] == -2 * math.exp(-2 * (1 - 80 / 90))


def test_embeddings_layout():
    uncond, front, side, back = (torch.full((1, 2, 3), v) for v in (0.0, 1.0, 2.0, 3.0))
    emb, w = perpneg_embeddings(torch.tensor([45.0, 180.0]), uncond, front, side, back)
    assert emb.shape == (8, 2, 3) and w.shape == (2, 3)
    assert torch.all(emb[:2] == 0)                               # uncond block first
    assert torch.all(emb[2] == 1.5) and torch.all(emb[3] == 3.0)   # positives: ½front+½side, back
    assert torch.all(emb[4] == 1.0) and torch.all(emb[5] == 2.0)   # block 2: front | side
    assert torch.all(emb[6] == 2.0) and torch.all(emb[7] == 1.0)   # block 3: side | front
    assert torch.all(w[:, 0] == 1)


def test_sds_negative_component_is_perpendicular_to_positive_delta(sd_prior):
    uncond, front, side, back = sd_prior.encode_text(
        ["blurry", "a cat, front view", "a cat, side view", "a cat, back view"])[:, None]
    azimuth = torch.tensor([30.0, -150.0])
    emb, w = perpneg_embeddings(azimuth, uncond, front, side, back, negative_w=-2.0)
    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([300, 600])
    scale = 7.5
    out = ScoreDistillation(sd_prior, SDSConfig(guidance_scale=scale)).step_latents(
        latents, emb, perpneg_weights=w, t=t, noise=noise)
    eps = sd_prior.predict_noise(torch.cat([out.x_t] * 4), torch.cat([t] * 4), emb).view(4, 2, 4, 8, 8)
    positive = eps[1] - eps[0]
    negative = (out.eps_hat - eps[0]) / scale - positive
    assert negative.abs().max() > 1e-3                       # the negatives did something
    cos = (negative * positive).flatten(1).sum(1) / (negative.flatten(1).norm(dim=1) * positive.flatten(1).norm(dim=1))
    assert cos.abs().max() < 1e-4
