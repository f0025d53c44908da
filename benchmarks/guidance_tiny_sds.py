"""Time one SDS step (encode + CFG UNet + injected backward) for each tiny prior on CPU.

    .venv/bin/python benchmarks/guidance_tiny_sds.py

Real models are far larger: see docs/guidance.md for what these numbers do and do not mean.
"""

import tempfile
import time

import torch

torch.set_num_threads(2)

from dreamfusion.guidance import ScoreDistillation, SDSConfig, make_guidance  # noqa: E402
from dreamfusion.guidance.perpneg import perpneg_embeddings  # noqa: E402
from dreamfusion.guidance import tiny_models  # noqa: E402
from dreamfusion.guidance.zero123 import Zero123Guidance  # noqa: E402


def timed(fn, repeats=20):
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1000


def main():
    rgb = torch.rand(1, 3, 64, 64, requires_grad=True)
    az = torch.tensor([30.0])

    sd = tiny_models.tiny_stable_diffusion()
    views = sd.encode_text(["", "a cat, front view", "a cat, side view", "a cat, back view"])[:, None]
    cfg = torch.cat([views[0], views[1]])
    sds = ScoreDistillation(sd, SDSConfig())
    print(f"SD  (64² → 4×8×8, CFG):      {timed(lambda: sds.step(rgb, cfg).loss.backward()):6.1f} ms")
    emb, w = perpneg_embeddings(az, *views)
    print(f"SD  Perp-Neg (K=3):          "
          f"{timed(lambda: sds.step(rgb, emb, perpneg_weights=w).loss.backward()):6.1f} ms")
    rgba = torch.rand(1, 4, 64, 64, requires_grad=True)
    print(f"SD  latent mode:             "
          f"{timed(lambda: sds.step(rgba, cfg, as_latent=True).loss.backward()):6.1f} ms")

    if_prior = tiny_models.tiny_deepfloyd_if()
    if_cfg = if_prior.encode_text(["", "a cat"])
    if_sds = ScoreDistillation(if_prior, SDSConfig())
    print(f"IF  (64² → 3×16×16, CFG):    "
          f"{timed(lambda: if_sds.step(rgb, if_cfg).loss.backward()):6.1f} ms")

    z = Zero123Guidance(tiny_models.tiny_zero123())
    z.set_references(torch.rand(1, 3, 64, 64), [90], [0], [3.2])
    zero = torch.zeros(1)
    print(f"Zero123 (1 reference):       "
          f"{timed(lambda: z.step(rgb, zero, az, zero, torch.tensor([90.0]), az).loss.backward()):6.1f} ms")

    clip = tiny_models.tiny_clip()
    ref = clip.encode_images(torch.rand(1, 3, 64, 64))
    print(f"CLIP loss:                   {timed(lambda: clip.loss(rgb, ref).backward()):6.1f} ms")

    with tempfile.TemporaryDirectory() as folder:
        tiny_models.save_tiny_stable_diffusion(folder)
        start = time.perf_counter()
        make_guidance("SD", hf_key=folder)
        print(f"load tiny SD folder:         {(time.perf_counter() - start) * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
