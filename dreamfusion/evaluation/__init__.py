"""Scores of trained workspaces: CLIP score and CLIP R-precision (DreamFusion's metrics) of the
turntable views, and for exemplar runs the ground-truth 3D scores; written to
``<workspace>/eval.json`` (docs/evaluation.md).

* :mod:`.score`: :func:`score_workspace`, the whole evaluation of one workspace;
* :mod:`.turntable`: the views it is scored on, rendered from the checkpoint;
* :mod:`.clip_embedder`: CLIP image/text embeddings with CLIP's own preprocessing, in torch;
* :mod:`.clip_metrics`: CLIP score, caption ranks, R@k from embeddings;
* :mod:`.caption_pool`: the shipped distractor captions (``captions.txt``);
* :mod:`.exemplar_3d`: :func:`dreamfusion.exemplar.metrics.evaluate_workspace` at a bounded cost;
* :mod:`.clip_vocabulary`, :mod:`.tiny_clip`: OpenAI's tokenizer from its BPE file, and a tiny
  random CLIP over it (tests);
* :mod:`.cli`: ``dreamfusion evaluate <workspace>...``.

    from dreamfusion.evaluation import score_workspace
    report = score_workspace(Path("workspace/demo-hamburger"), device=torch.device("cuda"))
"""

from dreamfusion.evaluation.caption_pool import caption_pool, ranking_candidates
from dreamfusion.evaluation.clip_embedder import DEFAULT_CLIP, ClipEmbedder
from dreamfusion.evaluation.clip_metrics import caption_ranks, cosine_matrix, ranking_report, recall_at
from dreamfusion.evaluation.score import EVAL_FILE, score_workspace

__all__ = ["DEFAULT_CLIP", "EVAL_FILE", "ClipEmbedder", "caption_pool", "caption_ranks", "cosine_matrix",
           "ranking_candidates", "ranking_report", "recall_at", "score_workspace"]
