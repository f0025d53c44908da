"""Adan against a hand-computed update, schedulers, EMA."""

import copy
import math

import pytest
import torch

from dreamfusion.errors import UserError
from dreamfusion.optimizers import Adan, ExponentialMovingAverage, build_lr_scheduler, build_optimizer

B1, B2, B3 = 0.98, 0.92, 0.99


def reference_adan(params, grads_per_step, lr, wd, eps, max_norm, no_prox=False):
    """Adan written out with python floats: params = list of floats, grads_per_step = list of lists."""
    p = list(params)
    m = [0.0] * len(p)
    v = [0.0] * len(p)
    n = [0.0] * len(p)
    prev = None
    for k, raw in enumerate(grads_per_step, start=1):
        clip = 1.0
        if max_norm > 0:
            clip = min(1.0, max_norm / (math.sqrt(sum(g * g for g in raw)) + eps))
        g = [x * clip for x in raw]
        prev = g if prev is None else prev
        for i in range(len(p)):
            diff = g[i] - prev[i]
            m[i] = B1 * m[i] + (1 - B1) * g[i]
            v[i] = B2 * v[i] + (1 - B2) * diff
            n[i] = B3 * n[i] + (1 - B3) * (g[i] + B2 * diff) ** 2
            denom = math.sqrt(n[i]) / math.sqrt(1 - B3**k) + eps
            if no_prox:
                p[i] *= 1 - lr * wd
            p[i] -= lr / (1 - B1**k) * m[i] / denom + lr * B2 / (1 - B2**k) * v[i] / denom
            if not no_prox:
                p[i] /= 1 + lr * wd
        prev = g
    return p


GRADS = [[3.0, 4.0], [0.5, -2.0], [-1.0, 0.25], [2.0, 2.0]]


@pytest.mark.parametrize("max_norm", [0.0, 1.0])
@pytest.mark.parametrize("no_prox", [False, True])
def test_adan_matches_hand_computed_update(max_norm, no_prox):
    a = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([-2.0], dtype=torch.float64, requires_grad=True)
    opt = Adan([{"params": [a]}, {"params": [b]}], lr=0.1, weight_decay=0.05, eps=1e-8,
               max_grad_norm=max_norm, no_prox=no_prox)
    for g in GRADS:
        a.grad = torch.tensor([g[0]], dtype=torch.float64)
        b.grad = torch.tensor([g[1]], dtype=torch.float64)
        opt.step()
    expected = reference_adan([1.0, -2.0], GRADS, lr=0.1, wd=0.05, eps=1e-8, max_norm=max_norm, no_prox=no_prox)
    assert a.item() == pytest.approx(expected[0], abs=1e-12)
    assert b.item() == pytest.approx(expected[1], abs=1e-12)


def test_adan_first_step_is_signed_lr():
    # Step 1: m = (1-β1)g, v = 0, √n/√bc3 = |g|: the move is lr·sign(g), then the decay divides.
    p = torch.tensor([0.0, 0.0], requires_grad=True)
    opt = Adan([p], lr=0.01, weight_decay=0.0, eps=0.0)
    p.grad = torch.tensor([5.0, -0.001])
    opt.step()
    assert torch.allclose(p, torch.tensor([-0.01, 0.01]))


def test_adan_state_dict_resume_is_identical():
    torch.manual_seed(0)
    p1 = torch.nn.Parameter(torch.randn(5))
    opt1 = Adan([p1], lr=0.05, weight_decay=2e-5, max_grad_norm=5.0)
    grads = [torch.randn(5) for _ in range(6)]
    for g in grads[:3]:
        p1.grad = g.clone()
        opt1.step()
    p2 = torch.nn.Parameter(p1.detach().clone())
    opt2 = Adan([p2], lr=0.05, weight_decay=2e-5, max_grad_norm=5.0)
    opt2.load_state_dict(copy.deepcopy(opt1.state_dict()))  # as a save/load round trip would
    for g in grads[3:]:
        p1.grad, p2.grad = g.clone(), g.clone()
        opt1.step()
        opt2.step()
    assert torch.equal(p1, p2)


def test_build_optimizer_choices():
    p = torch.nn.Parameter(torch.zeros(2))
    adan = build_optimizer("adan", [{"params": [p], "lr": 5e-3}])
    assert isinstance(adan, Adan) and adan.defaults["max_grad_norm"] == 5.0 and adan.defaults["weight_decay"] == 2e-5
    adam = build_optimizer("adam", [{"params": [p], "lr": 1e-3}])
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["eps"] == 1e-15 and adam.defaults["betas"] == (0.9, 0.99)
    with pytest.raises(UserError):
        build_optimizer("sgd", [{"params": [p], "lr": 1.0}])


def test_lr_schedules():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_lr_scheduler("vanilla", opt, iters=10)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1.0)
    assert lrs[5] == pytest.approx(0.1**0.5)
    assert lrs[10] == pytest.approx(0.1) and lrs[11] == pytest.approx(0.1)
    opt2 = torch.optim.SGD([p], lr=0.5)
    sched2 = build_lr_scheduler("grid", opt2, iters=10)
    for _ in range(5):
        opt2.step()
        sched2.step()
    assert opt2.param_groups[0]["lr"] == 0.5


def test_lr_schedule_per_group_final_factor():
    """A group's ``final_lr_factor`` (the DMTet geometry's --dmtet_lr_decay) decays that group alone,
    geometrically, and stays there after --iters; the others keep the backbone's schedule."""
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 2.0}, {"params": [b], "lr": 4.0, "final_lr_factor": 0.25}], lr=1.0)
    sched = build_lr_scheduler("grid", opt, iters=8)
    seen = []
    for _ in range(10):
        seen.append((opt.param_groups[0]["lr"], opt.param_groups[1]["lr"]))
        opt.step()
        sched.step()
    assert all(lr_a == 2.0 for lr_a, _ in seen)
    assert seen[4][1] == pytest.approx(4.0 * 0.25 ** 0.5) and seen[8][1] == pytest.approx(1.0)
    assert seen[9][1] == pytest.approx(1.0)


def test_ema_with_num_updates_warmup():
    p = torch.nn.Parameter(torch.tensor([0.0]))
    ema = ExponentialMovingAverage([p], decay=0.95)
    with torch.no_grad():
        p.fill_(1.0)
    ema.update()  # decay = min(0.95, 2/11)
    d1 = 2 / 11
    assert ema.shadow[0].item() == pytest.approx(1 - d1)
    with torch.no_grad():
        p.fill_(3.0)
    ema.update()  # decay = 3/12
    expected = (1 - d1) * 0.25 + 3.0 * 0.75
    assert ema.shadow[0].item() == pytest.approx(expected)
    # swap in and out
    ema.store()
    ema.copy_to()
    assert p.item() == pytest.approx(expected)
    ema.restore()
    assert p.item() == 3.0
    # state dict round trip
    q = torch.nn.Parameter(torch.tensor([0.0]))
    ema2 = ExponentialMovingAverage([q], decay=0.5)
    ema2.load_state_dict(ema.state_dict())
    assert ema2.num_updates == 2 and ema2.decay == 0.95 and ema2.shadow[0].item() == pytest.approx(expected)


def test_ema_state_must_fit_the_parameters_as_they_are_now():
    """A resumed DMTet run re-grids its geometry (a parameter changes size) before the average's
    state is loaded: the saved shadow is checked against the parameters, not the stale shadow."""
    saved = ExponentialMovingAverage([torch.nn.Parameter(torch.arange(5.0))], decay=0.95).state_dict()
    p = torch.nn.Parameter(torch.zeros(3))
    ema = ExponentialMovingAverage([p], decay=0.95)
    with pytest.raises(ValueError, match="does not match"):
        ema.load_state_dict(saved)
    p.data = torch.zeros(5)
    ema.load_state_dict(saved)
    assert torch.equal(ema.shadow[0], torch.arange(5.0))
    ema.update()  # decay 2/11 towards the zeros
    assert torch.allclose(ema.shadow[0], torch.arange(5.0) * 2 / 11)


def test_ema_fixed_decay():
    p = torch.nn.Parameter(torch.tensor([0.0]))
    ema = ExponentialMovingAverage([p], decay=0.9, use_num_updates=False)
    with torch.no_grad():
        p.fill_(1.0)
    ema.update()
    assert ema.shadow[0].item() == pytest.approx(0.1)
