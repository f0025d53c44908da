"""The per-step schedule: known view, latent warm-up, albedo, lambertian/textureless, background."""

import pytest
import torch

from dreamfusion.training.schedules import plan_step, progress_ratio, progressive_level

BASE = dict(known_view_interval=4, has_references=False, latent_iter_ratio=0.2, albedo_iter_ratio=0.0,
            min_ambient_ratio=0.1, textureless_ratio=0.2, has_background_net=True)


def test_progress_and_level():
    assert progress_ratio(50, 0, 100) == 0.5
    assert progress_ratio(150, 100, 200) == 0.5
    assert progressive_level(0.0) == 0.25
    assert progressive_level(0.2) == pytest.approx(0.65)
    assert progressive_level(0.5) == 1.0


def test_latent_warmup_then_shading():
    plan = plan_step(10, 0.1, **BASE)
    assert plan.as_latent and plan.shading == "normal" and plan.ambient_ratio == 1.0 and plan.background == "network"
    plan = plan_step(10, 0.1, **{**BASE, "has_background_net": False})
    assert plan.background == "white"
    albedo = plan_step(30, 0.3, **{**BASE, "albedo_iter_ratio": 0.5})
    assert albedo.shading == "albedo" and albedo.ambient_ratio == 1.0 and not albedo.as_latent


def test_known_view_every_interval():
    args = {**BASE, "has_references": True, "latent_iter_ratio": 0.0}
    assert plan_step(8, 0.5, **args).known_view
    plan = plan_step(8, 0.5, **args)
    assert plan.shading == "lambertian" and plan.ambient_ratio == 1.0 and plan.background == "pixels"
    assert not plan_step(9, 0.5, **args).known_view


def test_random_shading_statistics():
    gen = torch.Generator().manual_seed(0)
    plans = [plan_step(1000 + i, 0.9, generator=gen, **BASE) for i in range(4000)]
    textureless = sum(p.shading == "textureless" for p in plans) / len(plans)
    network = sum(p.background == "network" for p in plans) / len(plans)
    ambients = torch.tensor([p.ambient_ratio for p in plans])
    assert textureless == pytest.approx(0.2, abs=0.03)
    assert network == pytest.approx(0.5, abs=0.03)
    assert ambients.min() >= 0.1 and ambients.max() <= 1.0
    assert ambients.mean().item() == pytest.approx(0.55, abs=0.02)
    assert all(p.shading in ("lambertian", "textureless") for p in plans)
    no_net = plan_step(1000, 0.9, generator=gen, **{**BASE, "has_background_net": False})
    assert no_net.background == "color"


def test_plan_replays_from_the_same_generator_state():
    a = [plan_step(100 + i, 0.9, generator=torch.Generator().manual_seed(3), **BASE) for i in range(3)]
    b = [plan_step(100 + i, 0.9, generator=torch.Generator().manual_seed(3), **BASE) for i in range(3)]
    assert a == b
