"""Helpers shared by the viewer tests (imported by module name, like tests/training's helpers)."""

import time

import torch

from dreamfusion.cli import parse_config
from dreamfusion.training.entry import build_trainer
from dreamfusion.viewer.link import TrainingLink, viewer_copy

CPU = torch.device("cpu")

VIEWER_ARGS = ["--guidance", "exemplar", "--text", "a hamburger", "--w", "24", "--h", "24", "--W", "32", "--H", "32",
               "--num_steps", "16", "--upsample_steps", "0", "--log2_hashmap_size", "14",
               "--dataset_size_train", "20", "--dataset_size_valid", "1", "--dataset_size_test", "2",
               "--radius_range", "3.2", "3.2", "--theta_range", "30", "150", "--mcubes_resolution", "48",
               "--decimate_target", "3000", "--texture_size", "64", "--seed", "0", "--device", "cpu"]


def wait_until(condition, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def linked_trainer(workspace, iters):
    config = parse_config([*VIEWER_ARGS, "--iters", str(iters), "--workspace", str(workspace)])
    trainer = build_trainer(config, CPU, progress_bar=False, log_echo=False)
    link = TrainingLink(viewer_copy(trainer.scene), iters=iters, text=config.text, training=True)
    link.attach_trainer(trainer)
    trainer.observer = link
    return trainer, link


