"""CLIP score and CLIP R-precision from embeddings (DreamFusion, section 4): plain tensor maths.

* CLIP score: the cosine similarity of each view's image embedding with the prompt's text
  embedding, averaged over views; reported ×100 (the usual "CLIP score" scale) and raw.
* R-precision: each view ranks the true caption among ``C`` candidates (the true one first, then
  the distractors) by cosine similarity. R@k is the fraction of views whose true caption ranks k or
  better. A distractor that ties the true caption counts as ranked above it, so a model that maps
  every caption to the same embedding scores R@1 = 0, not 1.

    sims = cosine_matrix(image_embeddings, caption_embeddings)     # [V, C], column 0 the truth
    ranks = caption_ranks(sims)                                     # [V], 1 = first
    recall_at(ranks, 1)                                             # R@1 in [0, 1]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def cosine_matrix(image_embeddings: Tensor, text_embeddings: Tensor) -> Tensor:
    """[V, D] x [C, D] -> [V, C] cosine similarities (inputs need not be unit norm)."""
    return F.normalize(image_embeddings.double(), dim=-1) @ F.normalize(text_embeddings.double(), dim=-1).T


def caption_ranks(similarity: Tensor, true_index: int = 0) -> Tensor:
    """[V, C] similarities -> [V] rank of caption ``true_index`` per view: 1 + the number of other
    captions at least as similar (ties count against the true caption)."""
    truth = similarity[:, true_index:true_index + 1]
    others = torch.ones(similarity.shape[1], dtype=torch.bool, device=similarity.device)
    others[true_index] = False
    return 1 + (similarity[:, others] >= truth).sum(dim=1)


def recall_at(ranks: Tensor, k: int) -> float:
    """Fraction of views whose true caption ranks ``k`` or better (R@k; R@1 is R-precision)."""
    return float((ranks <= k).double().mean())


def ranking_report(image_embeddings: Tensor, caption_embeddings: Tensor, captions: list[str],
                   ks: tuple[int, ...] = (1, 5)) -> dict:
    """Everything CLIP says about V views against C captions (``captions[0]`` the prompt).

    Returns:
        {"clip_score" (mean cosine ×100), "clip_cosine" (mean cosine), "r_precision" (R@1),
        "recall_at": {k: R@k}, "mean_rank", "median_rank", "candidates" (C),
        "per_view": [{"cosine", "rank", "best_caption", "best_cosine"}]}
    """
    sims = cosine_matrix(image_embeddings, caption_embeddings)
    ranks = caption_ranks(sims)
    cosine = sims[:, 0]
    best = sims.argmax(dim=1)
    per_view = [{"cosine": float(cosine[v]), "rank": int(ranks[v]), "best_caption": captions[int(best[v])],
                 "best_cosine": float(sims[v, best[v]])} for v in range(sims.shape[0])]
    return {"clip_score": 100.0 * float(cosine.mean()), "clip_cosine": float(cosine.mean()),
            "r_precision": recall_at(ranks, 1), "recall_at": {str(k): recall_at(ranks, k) for k in ks},
            "mean_rank": float(ranks.double().mean()), "median_rank": float(ranks.double().quantile(0.5)),
            "candidates": int(sims.shape[1]), "per_view": per_view}
