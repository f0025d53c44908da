"""Per-step schedules of the NeRF stage (spec §3.10 steps 1-3): what to render and how to shade it.

    rho = progress_ratio(step, cfg.exp_start_iter, cfg.exp_end_iter)
    plan = plan_step(step, rho, cfg, has_references=True, has_background_net=True)
    # plan.known_view, plan.shading, plan.ambient_ratio, plan.as_latent, plan.background

All random choices draw from the global torch CPU generator (or ``generator``), so a checkpoint's
saved RNG state replays them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def progress_ratio(step: int, exp_start: int, exp_end: int) -> float:
    """``ρ = (step - exp_start) / (exp_end - exp_start)``: the run's progress for schedules."""
    return (step - exp_start) / max(exp_end - exp_start, 1)


def progressive_level(progress: float) -> float:
    """Fraction of active encoder levels with ``--progressive_level``: ``min(1, 0.25 + 2ρ)``."""
    return min(1.0, 0.25 + 2.0 * max(progress, 0.0))


@dataclass(frozen=True)
class StepPlan:
    """Decisions for one training step.

    Attributes:
        known_view: render the reference camera(s) and use the reference losses (no SDS).
        shading: ``normal`` | ``albedo`` | ``lambertian`` | ``textureless``.
        ambient_ratio: ambient term of the lambertian/textureless shading.
        as_latent: feed ``cat(normal image, opacity)`` to the prior as its latent (warm-up).
        background: ``network`` (background MLP), ``color`` (one random colour per batch),
            ``pixels`` (random colour per pixel, known views) or ``white``.
    """

    known_view: bool
    shading: str
    ambient_ratio: float
    as_latent: bool
    background: str


def _uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def plan_step(step: int, progress: float, *, known_view_interval: int, has_references: bool,
              latent_iter_ratio: float, albedo_iter_ratio: float, min_ambient_ratio: float,
              textureless_ratio: float, has_background_net: bool,
              generator: torch.Generator | None = None) -> StepPlan:
    """The shading/background schedule of stable-dreamfusion's ``train_step``.

    * every ``known_view_interval``-th step of an image run: reference view, lambertian with
      ambient 1 (= albedo), random per-pixel background;
    * ``ρ <= latent_iter_ratio``: normal shading, fed to the prior as a latent;
    * ``ρ <= albedo_iter_ratio``: albedo;
    * else ambient ``U[min_ambient, 1]`` and textureless with probability ``textureless_ratio``,
      lambertian otherwise; background MLP with probability 1/2 when there is one, else a random
      colour. (The uniform draws happen in this order so runs replay.)
    """
    if has_references and step % known_view_interval == 0:
        return StepPlan(True, "lambertian", 1.0, False, "pixels")
    if progress <= latent_iter_ratio:
        return StepPlan(False, "normal", 1.0, True, "network" if has_background_net else "white")
    if progress <= albedo_iter_ratio:
        shading, ambient = "albedo", 1.0
    else:
        ambient = min_ambient_ratio + (1.0 - min_ambient_ratio) * _uniform(generator)
        shading = "textureless" if _uniform(generator) < textureless_ratio else "lambertian"
    if has_background_net and _uniform(generator) > 0.5:
        background = "network"
    else:
        background = "color"
    return StepPlan(False, shading, ambient, False, background)
