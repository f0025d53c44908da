"""CLIP score and R-precision on embeddings built so that the answer is known, the caption pool,
and CLIP's image preprocessing."""

import pytest
import torch

from dreamfusion.evaluation.caption_pool import caption_key, caption_pool, pool_fingerprint, ranking_candidates
from dreamfusion.evaluation.clip_embedder import center_crop_resize
from dreamfusion.evaluation.clip_metrics import caption_ranks, cosine_matrix, ranking_report, recall_at

CAPTIONS = [f"caption {i}" for i in range(6)]


def orthonormal(count: int, dim: int = 16) -> torch.Tensor:
    """[count, dim] orthonormal rows whose dot products are exactly 0 (so ties are exact)."""
    return torch.eye(count, dim, dtype=torch.float64)


def test_images_equal_to_their_caption_rank_first():
    text = orthonormal(len(CAPTIONS))
    images = text[0].expand(5, -1) * torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0])[:, None]  # scale does not matter
    report = ranking_report(images, text, CAPTIONS)
    assert report["r_precision"] == 1.0 and report["recall_at"] == {"1": 1.0, "5": 1.0}
    assert report["mean_rank"] == 1.0 and report["candidates"] == 6
    assert report["clip_cosine"] == pytest.approx(1.0, abs=1e-12) and report["clip_score"] == pytest.approx(100.0)
    assert all(v["best_caption"] == "caption 0" and v["rank"] == 1 for v in report["per_view"])


def test_known_ranks_give_known_recall():
    """View v puts the true caption (index 0) at rank r_v by giving the captions descending weights."""
    text = orthonormal(len(CAPTIONS))
    wanted = [1, 1, 2, 3, 1, 6, 2, 5]
    weights = torch.tensor([6.0, 5.0, 4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    images = []
    for v, rank in enumerate(wanted):
        order = [c for c in range(1, 6)]
        order = order[v % 5:] + order[:v % 5]      # the distractors in a different order each view
        order.insert(rank - 1, 0)                  # caption 0 at position rank - 1
        w = torch.zeros(6, dtype=torch.float64)
        w[order] = weights
        images.append(w @ text)
    images = torch.stack(images)
    report = ranking_report(images, text, CAPTIONS)
    assert [v["rank"] for v in report["per_view"]] == wanted
    assert report["r_precision"] == 3 / 8 and report["recall_at"]["5"] == 7 / 8
    assert report["mean_rank"] == 21 / 8 and report["median_rank"] == 2.0
    # cosine with the truth: its weight over the weights' norm
    expected = torch.stack([weights[r - 1] for r in wanted]) / weights.norm()
    assert report["clip_cosine"] == pytest.approx(float(expected.mean()), abs=1e-12)
    assert [v["best_caption"] for v in report["per_view"]][:2] == ["caption 0", "caption 0"]


def test_permuted_images_score_by_the_fraction_matched():
    """Each view shows one caption exactly; views 0-3 show the truth, the rest show distractors."""
    text = orthonormal(len(CAPTIONS))
    shown = [0, 0, 0, 0, 1, 2, 3, 4, 5, 0]
    sims = cosine_matrix(text[shown], text)
    ranks = caption_ranks(sims)
    # a view of a distractor: the truth ties every other distractor at cosine 0 -> ranked last
    assert ranks.tolist() == [1, 1, 1, 1, 6, 6, 6, 6, 6, 1]
    assert recall_at(ranks, 1) == 0.5 and recall_at(ranks, 5) == 0.5


def test_ties_count_against_the_truth():
    same = torch.ones(4, 8)
    ranks = caption_ranks(cosine_matrix(torch.ones(3, 8), same))
    assert ranks.tolist() == [4, 4, 4] and recall_at(ranks, 1) == 0.0


def test_true_index_other_than_zero():
    text = orthonormal(4)
    assert caption_ranks(cosine_matrix(text[2:3], text), true_index=2).tolist() == [1]
    assert caption_ranks(cosine_matrix(text[2:3], text), true_index=1).tolist() == [4]


def test_pool_is_large_distinct_and_fixed():
    pool = caption_pool()
    assert len(pool) >= 150 and len({caption_key(c) for c in pool}) == len(pool)
    assert all(c == c.strip() and not c.startswith("#") for c in pool)
    assert len(pool_fingerprint()) == 12 and pool_fingerprint() == pool_fingerprint()


def test_prompt_from_the_pool_is_counted_once():
    pool = caption_pool()
    candidates = ranking_candidates("  A Bonsai tree. ")
    assert "a bonsai tree" in pool
    assert candidates[0] == "  A Bonsai tree. " and len(candidates) == len(pool)
    assert "a bonsai tree" not in candidates[1:]
    outside = ranking_candidates("a hamburger")
    assert outside[0] == "a hamburger" and outside[1:] == list(pool)


def test_center_crop_takes_the_middle_of_a_wide_image():
    image = torch.arange(32 * 64, dtype=torch.float32).reshape(1, 1, 32, 64).expand(2, 3, -1, -1) / (32 * 64)
    assert torch.equal(center_crop_resize(image, 32), image[:, :, :, 16:48])


def test_resize_keeps_a_flat_image_flat_and_in_range():
    flat = torch.full((1, 3, 64, 96), 0.25)
    out = center_crop_resize(flat, 32)
    assert out.shape == (1, 3, 32, 32) and torch.allclose(out, torch.full_like(out, 0.25), atol=1e-6)
    edge = torch.zeros(1, 3, 64, 64)
    edge[..., 32:] = 1.0  # bicubic rings at a step; CLIP's 8-bit images cannot leave [0, 1]
    out = center_crop_resize(edge, 24)
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0
