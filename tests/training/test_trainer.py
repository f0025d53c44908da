"""The Trainer in-process: resume equivalence, Ctrl-C, test-mode reproduction, schedules, hooks."""

import os
import signal

import cv2
import numpy as np
import pytest
import torch

from dreamfusion.devices import seed_everything
from dreamfusion.training.entry import build_trainer
from dreamfusion.training.trainer import Trainer

from training_helpers import tiny_config

CPU = torch.device("cpu")


def make(workspace, sd, *extra, mode="train", seed=0, **kwargs):
    seed_everything(seed)
    return build_trainer(tiny_config(workspace, sd, *extra, **kwargs), CPU, mode=mode, progress_bar=False,
                         log_echo=False)


def weights(trainer):
    return {k: v.clone() for k, v in trainer.scene.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


RESUME_ARGS = ("--eval_interval", "99")   # no validation: these tests are about the training state


@pytest.fixture(scope="module")
def straight_weights(tmp_path_factory, tiny_sd):
    """Weights after an uninterrupted 6-step run (3 steps per epoch)."""
    trainer = make(tmp_path_factory.mktemp("straight"), tiny_sd, *RESUME_ARGS, iters=6, per_epoch=3)
    assert trainer.train() == 0
    yield weights(trainer)
    trainer.close()


def test_resume_after_a_crash_continues_identically(tmp_path, tiny_sd, straight_weights, monkeypatch):
    original = Trainer.optimize

    def crash_at_step_5(self, step):
        if step == 5:
            raise RuntimeError("simulated crash")
        return original(self, step)

    monkeypatch.setattr(Trainer, "optimize", crash_at_step_5)
    crashed = make(tmp_path, tiny_sd, *RESUME_ARGS, iters=6, per_epoch=3)
    with pytest.raises(RuntimeError):
        crashed.train()
    crashed.close()
    monkeypatch.setattr(Trainer, "optimize", original)
    # a different process state before resuming: the checkpoint must restore every generator
    np.random.seed(5)
    resumed = make(tmp_path, tiny_sd, *RESUME_ARGS, iters=6, per_epoch=3, seed=99)
    assert resumed.global_step == 3 and resumed.epoch == 1
    assert resumed.train() == 0
    assert_same_weights(straight_weights, weights(resumed))
    resumed.close()


def test_interrupt_saves_and_resumes_identically(tmp_path, tiny_sd, straight_weights, monkeypatch):
    original = Trainer.optimize

    def optimize_then_ctrl_c(self, step):
        terms = original(self, step)
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C during step 4
        return terms

    monkeypatch.setattr(Trainer, "optimize", optimize_then_ctrl_c)
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    interrupted = make(tmp_path, tiny_sd, *RESUME_ARGS, iters=6, per_epoch=3)
    assert interrupted.train() == 130
    assert interrupted.global_step == 4
    assert "interrupted after step 4" in (tmp_path / "log_df.txt").read_text()
    interrupted.close()
    assert signal.getsignal(signal.SIGINT) is before  # handler put back
    monkeypatch.setattr(Trainer, "optimize", original)

    resumed = make(tmp_path, tiny_sd, *RESUME_ARGS, iters=6, per_epoch=3)
    assert resumed.global_step == 4 and resumed.epoch == 1   # mid-epoch: epoch 2 not finished
    resumed.train()
    assert_same_weights(straight_weights, weights(resumed))
    resumed.close()


def test_test_mode_and_six_views_reproduce_training_renders(tmp_path, tiny_sd):
    trainer = make(tmp_path, tiny_sd, iters=4, per_epoch=2)
    trainer.train()
    trained = trainer.test_frames()
    trainer.close()
    tester = make(tmp_path, tiny_sd, "--test", mode="test", iters=4, per_epoch=2)
    assert tester.global_step == 4 and tester.epoch == 2
    again = tester.test_frames()
    assert len(again) == len(trained) == 3
    for a, b in zip(trained, again):
        assert torch.equal(a["rgb"], b["rgb"]) and torch.equal(a["depth"], b["depth"])
    paths = tester.six_views()
    tester.close()
    assert [p.name for p in paths] == [f"df_ep0002_{i:04d}_rgb.png" for i in range(6)]
    for p in paths:
        image = cv2.imread(str(p))
        assert image.shape == (16, 16, 3)
        assert (p.parent / p.name.replace("_rgb", "_depth")).is_file()
        assert (p.parent / p.name.replace("_rgb", "_normal")).is_file()


def test_progressive_level_and_lr(tmp_path, tiny_sd):
    trainer = make(tmp_path, tiny_sd, "--progressive_level", "--latent_iter_ratio", "0", iters=10, per_epoch=5)
    trainer.train_step(1)
    assert trainer.scene.field.max_level == pytest.approx(0.25 + 2 * 0.1)
    trainer.train_step(5)
    assert trainer.scene.field.max_level == 1.0
    # Adan runs at 5x --lr; the hash grid at 10x that
    lrs = sorted(g["lr"] for g in trainer.optimizer.param_groups)
    assert lrs[0] == pytest.approx(5e-3) and lrs[-1] == pytest.approx(5e-2)
    trainer.close()


def test_grad_clip_rgb_zero_blocks_guidance_gradient(tmp_path, tiny_sd):
    # With the entropy/orientation regularisers off, the only path to the weights is the rendered
    # image: clamping its gradient to 0 must zero every parameter gradient.
    common = ("--lambda_entropy", "0", "--lambda_orient", "0", "--latent_iter_ratio", "0")
    for clip, expect_zero in ((0.0, True), (-1.0, False)):
        trainer = make(tmp_path / str(clip), tiny_sd, *common, "--grad_clip_rgb", clip, iters=10)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss, terms = trainer.train_step(5)
        assert set(terms) == {"SD"}
        loss.backward()
        total = sum(float(p.grad.abs().sum()) for p in trainer.scene.parameters() if p.grad is not None)
        assert (total == 0.0) == expect_zero
        trainer.close()


def test_hash_grid_view_indexes_the_encoder_rows(tmp_path, tiny_sd):
    # Mark the row that HashGridView says belongs to vertex v of level l; encoding a point just past
    # v must then read that row (weight ~1) on level l: the TV/decay injections hit the right rows.
    trainer = make(tmp_path, tiny_sd, "--lambda_tv", "1e-3", "--lambda_wd", "1e-3", "--log2_hashmap_size", "14", iters=2)
    encoder = trainer.scene.field.encoder
    grid = trainer.scene.hash_grid()
    bound = encoder.bound
    saved = encoder.embeddings.detach().clone()
    gen = torch.Generator().manual_seed(0)
    kinds = set()
    with torch.no_grad():
        for level, lv in enumerate(encoder.levels):
            for _ in range(3):
                v = torch.randint(0, lv.resolution - 1, (1, 3), generator=gen)
                u = (v.float() + 0.5 + 1e-3) / lv.resolution
                encoder.embeddings.zero_()
                encoder.embeddings[grid.offsets[level] + grid.vertex_index(level, v)] = torch.tensor([1.0, 2.0])
                out = encoder(u * 2 * bound - bound).view(encoder.num_levels, encoder.level_dim)[level]
                assert torch.allclose(out, torch.tensor([1.0, 2.0]), atol=2e-2), (level, v)
            kinds.add(lv.hashed)
        encoder.embeddings.copy_(saved)
    assert kinds == {True, False}                 # both dense and hashed levels were checked
    assert trainer.train() == 0   # TV + weight decay injection run inside the optimiser step
    trainer.close()


def test_image_conditioned_run(tmp_path, tiny_sd):
    from dreamfusion.guidance.tiny_models import save_tiny_zero123

    from test_reference_and_outputs import write_reference

    zero123 = save_tiny_zero123(tmp_path / "zero123")
    image = write_reference(tmp_path, size=32)
    seed_everything(0)
    from dreamfusion.cli import parse_config

    config = parse_config(["--image", str(image), "--zero123_ckpt", str(zero123), "--workspace", str(tmp_path / "ws"),
                           "--iters", "4", "--dataset_size_train", "2", "--w", "16", "--h", "16", "--W", "16",
                           "--H", "16", "--dataset_size_valid", "1", "--dataset_size_test", "2",
                           "--log2_hashmap_size", "12", "--num_steps", "8", "--upsample_steps", "0",
                           "--known_view_interval", "2", "--lambda_normal", "1", "--device", "cpu"])
    assert config.guidance == ["zero123"]
    trainer = build_trainer(config, CPU, progress_bar=False, log_echo=False)
    assert trainer.references.rgb.shape == (1, 24, 24, 3)        # known_view_scale 1.5 x 16
    _, known = trainer.train_step(2)
    assert {"rgb", "mask", "depth", "normal"} <= set(known) and "zero123" not in known
    _, novel = trainer.train_step(3)
    assert "zero123" in novel and "rgb" not in novel
    assert trainer.train() == 0
    trainer.close()


def test_checkpoints_load_across_occupancy_grid_settings(tmp_path, tiny_sd):
    from dreamfusion.training.scene import build_scene

    plain = build_scene(tiny_config(tmp_path, tiny_sd))
    marched = build_scene(tiny_config(tmp_path, tiny_sd, "--cuda_ray"))
    assert marched.uses_occupancy_grid and not plain.uses_occupancy_grid
    marched.load_state_dict(plain.state_dict())          # -O test of a run trained without it
    for key, value in plain.state_dict().items():
        assert torch.equal(marched.state_dict()[key], value)
    plain.load_state_dict(marched.state_dict())          # and the other way round
    broken = {k: v for k, v in plain.state_dict().items() if "sigma_net" not in k}
    with pytest.raises(RuntimeError):                    # the field itself stays strict
        plain.load_state_dict(broken)
