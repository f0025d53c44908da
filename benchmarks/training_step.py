"""Time full training steps (render + tiny-SD SDS + regularisers + backward + Adan) on CPU.

    .venv/bin/python benchmarks/training_step.py            # the settings below, 2 threads

Each setting builds a Trainer in a temporary workspace with the tiny random Stable Diffusion, runs
2 warm-up steps, then times 5 steps after the latent warm-up (lambertian/textureless shading, so
finite-difference normals are included). Prints seconds per iteration and the epoch-end costs.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

import torch

torch.set_num_threads(2)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dreamfusion.cli import parse_config  # noqa: E402
from dreamfusion.devices import seed_everything  # noqa: E402
from dreamfusion.guidance.tiny_models import save_tiny_stable_diffusion  # noqa: E402
from dreamfusion.training.entry import build_trainer  # noqa: E402

SETTINGS = {
    "tests (16x16, 8 samples, 2^12 table)": ["--w", "16", "--h", "16", "--num_steps", "8", "--upsample_steps", "0",
                                             "--log2_hashmap_size", "12"],
    "32x32, 16+8 samples, 2^14 table": ["--w", "32", "--h", "32", "--num_steps", "16", "--upsample_steps", "8",
                                        "--log2_hashmap_size", "14"],
    "64x64, 64+32 samples, 2^19 table (defaults)": [],
}


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="df-bench-"))
    sd = save_tiny_stable_diffusion(root / "tiny-sd")
    for name, extra in SETTINGS.items():
        if len(sys.argv) > 1 and sys.argv[1] not in name:
            continue
        seed_everything(0)
        config = parse_config(["--text", "a hamburger", "--workspace", str(root / name.split()[0]), "--hf_key", str(sd),
                               "--iters", "100", "--W", "32", "--H", "32", "--dataset_size_valid", "2",
                               "--dataset_size_test", "4", "--device", "cpu", "--ckpt", "scratch", *extra])
        trainer = build_trainer(config, torch.device("cpu"), progress_bar=False, log_echo=False)
        for step in (1, 2):
            trainer.optimize(step)
        start = time.perf_counter()
        for step in range(30, 35):  # past the latent warm-up (20 % of 100)
            trainer.optimize(step)
        per_step = (time.perf_counter() - start) / 5
        t0 = time.perf_counter()
        trainer.ckpt.save_full(trainer.full_state(), 1)
        t_ckpt = time.perf_counter() - t0
        t0 = time.perf_counter()
        trainer.validate()
        t_val = time.perf_counter() - t0
        t0 = time.perf_counter()
        trainer.test_video()
        t_video = time.perf_counter() - t0
        print(f"{name}: {per_step:.3f} s/it; checkpoint {t_ckpt:.2f} s; validation (2 views 32x32) {t_val:.2f} s; "
              f"test video (4 frames 32x32) {t_video:.2f} s", flush=True)
        trainer.close()


if __name__ == "__main__":
    main()
