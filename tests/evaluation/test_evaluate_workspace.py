"""score_workspace and ``dreamfusion evaluate`` end to end: a tiny trained exemplar workspace scored
with a tiny random CLIP over the real vocabulary; eval.json; one-line errors for bad input."""

import json
import shutil

import pytest
import torch

from dreamfusion.errors import UserError
from dreamfusion.evaluation import EVAL_FILE, ClipEmbedder, caption_pool, ranking_candidates, score_workspace
from dreamfusion.evaluation.cli import evaluate_main
from dreamfusion.evaluation.turntable import render_turntable

CPU = torch.device("cpu")
CHEAP_3D = dict(exemplar_size=32, exemplar_volume_resolution=64)


def test_score_workspace_end_to_end(trained_workspace, tiny_clip_folder):
    lines = []
    report = score_workspace(trained_workspace, clip_model=str(tiny_clip_folder), views=4, device=CPU,
                             log=lines.append, **CHEAP_3D)
    assert json.loads((trained_workspace / EVAL_FILE).read_text()) == report
    assert not list(trained_workspace.glob(f".{EVAL_FILE}.tmp-*"))
    assert report["prompt"] == "a hamburger" and report["step"] == 20 and report["views"] == 4
    assert report["clip_model"] == str(tiny_clip_folder) and report["image_size"] == 32
    assert report["camera"] == {"polar": 90.0, "radius": 3.2, "fovy": pytest.approx(38.31, abs=0.01)}  # the run's framing
    assert report["checkpoint"].endswith("df_ep0002.pth")
    # 'a hamburger' is not in the pool: it is ranked against every pool caption
    pool = caption_pool()
    assert len(set(pool)) >= 150 and report["pool_size"] == len(pool) + 1 == len(ranking_candidates("a hamburger"))
    views = report["per_view"]
    assert [v["azimuth"] for v in views] == [0.0, 90.0, -180.0, -90.0]
    ranks = [v["rank"] for v in views]
    assert report["r_precision"] == sum(r == 1 for r in ranks) / 4 and report["mean_rank"] == sum(ranks) / 4
    assert report["recall_at"]["5"] == sum(r <= 5 for r in ranks) / 4
    assert report["clip_score"] == pytest.approx(100 * sum(v["cosine"] for v in views) / 4, rel=1e-12)
    assert all(v["best_caption"] in ranking_candidates("a hamburger") for v in views)
    # the cosines are those of the prompt's embedding with the renders (column 0 is the prompt)
    clip = ClipEmbedder.from_pretrained(str(tiny_clip_folder), CPU)
    turntable = render_turntable(trained_workspace, views=4, size=32, device=CPU)
    cosines = (clip.encode_images(turntable.rgb) @ clip.encode_texts(["a hamburger"]).T)[:, 0]
    assert [v["cosine"] for v in views] == pytest.approx(cosines.tolist(), abs=1e-6)
    # an exemplar run also gets its ground-truth 3D scores (no mesh was exported)
    exemplar = report["exemplar_3d"]
    assert exemplar["object"] == "a hamburger" and exemplar["mesh"] is None
    assert exemplar["rings"] == [30.0, 60.0, 90.0, 120.0, 150.0] and exemplar["size"] == 32  # inside polar 30-150
    assert 0.0 <= exemplar["field"]["views"]["all"]["iou"] <= 1.0 and 0.0 <= exemplar["field"]["volume_iou"] <= 1.0
    assert len(lines) == 2 and "R@1" in lines[0] and "volume IoU" in lines[1]


def test_evaluate_command(trained_workspace, tiny_clip_folder, capsys):
    code = evaluate_main([str(trained_workspace), "--clip_model", str(tiny_clip_folder), "--views", "2",
                          "--device", "cpu", "--no_exemplar_3d"])
    out = capsys.readouterr().out.strip().splitlines()
    saved = json.loads((trained_workspace / EVAL_FILE).read_text())
    assert code == 0 and len(out) == 1
    assert out[0].startswith(f"{trained_workspace}: step 20, 2 views: CLIP score {saved['clip_score']:.2f}, "
                             f"R@1 {saved['r_precision']:.3f}")
    assert saved["views"] == 2 and "exemplar_3d" not in saved


def test_three_d_scores_without_clip(trained_workspace):
    report = score_workspace(trained_workspace, clip_model=None, device=CPU, log=lambda _: None, **CHEAP_3D)
    assert report["clip_model"] is None and report["step"] == 20 and "clip_score" not in report
    assert report["exemplar_3d"]["object"] == "a hamburger"


def test_bad_input_is_one_line_and_writes_nothing(trained_workspace, tmp_path):
    def refused(path, match, **options):
        with pytest.raises(UserError, match=match) as error:
            score_workspace(path, device=CPU, log=lambda _: None, **options)
        assert "\n" not in str(error.value)
        assert not (path / EVAL_FILE).exists()

    refused(tmp_path / "missing", "workspace not found")
    refused(tmp_path, "no config.yaml")
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    shutil.copy(trained_workspace / "config.yaml", untrained / "config.yaml")
    refused(untrained, "no checkpoint to evaluate")
    copy = tmp_path / "copy"
    shutil.copytree(trained_workspace, copy)
    (copy / EVAL_FILE).unlink(missing_ok=True)
    # the default CLIP is not in the (empty, offline) test cache: one line saying what to do
    refused(copy, r"CLIP weights 'openai/clip-vit-base-patch32' are not in the Hugging Face cache .*--clip_model")
    refused(copy, "views 0", clip_model=None, views=0)
    refused(copy, "nothing to score", clip_model=None, exemplar_3d=False)
    with pytest.raises(UserError, match="workspace not found"):
        evaluate_main([str(copy), str(tmp_path / "typo"), "--device", "cpu"])
