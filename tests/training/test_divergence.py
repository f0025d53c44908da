"""A diverging run stops at the first non-finite loss, gradient or weight, with one line naming the
step and the term, and keeps the last good checkpoint (nothing of the bad state is saved)."""

import math

import pytest
import torch
from training_helpers import tiny_args

from dreamfusion.cli import main
from dreamfusion.training.trainer import DIVERGED_EXIT_CODE, Trainer


@pytest.mark.parametrize("poison", ["loss", "gradient"])
def test_non_finite_step_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, tiny_sd, monkeypatch, capsys,
                                                                          poison):
    original = Trainer.train_step

    def train_step(self, step):
        loss, terms = original(self, step)
        if step == 3:
            if poison == "loss":
                terms["sds"] = math.nan
            else:
                weight = next(p for p in self.scene.parameters() if p.requires_grad)
                weight.register_hook(lambda g: g * math.nan)
        return loss, terms

    monkeypatch.setattr(Trainer, "train_step", train_step)
    ws = tmp_path / "ws"
    assert main(tiny_args(ws, tiny_sd, iters=4, per_epoch=2)) == DIVERGED_EXIT_CODE
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("dreamfusion: error: training diverged at step 3: ")
    assert ("the sds loss is nan" if poison == "loss" else "the gradient of") in err[-1]
    assert "df_ep0001.pth, is kept" in err[-1]
    saved = sorted(p.name for p in (ws / "checkpoints").glob("df_ep*.pth"))
    assert saved == ["df_ep0001.pth"]
    state = torch.load(ws / "checkpoints" / "df_ep0001.pth", weights_only=True)
    assert state["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
