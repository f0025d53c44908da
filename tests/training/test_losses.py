"""Each regulariser and reference-view loss on a hand-made input with a known value."""

import math

import pytest
import torch

from dreamfusion import losses


def test_ramps():
    assert losses.entropy_ramp(25, 100) == pytest.approx(0.5)
    assert losses.entropy_ramp(60, 100) == 1.0
    assert losses.linear_ramp(25, 100) == pytest.approx(0.25)
    assert losses.linear_ramp(250, 100) == 1.0
    assert losses.tv_ramp(25, 100) == pytest.approx(0.5)
    assert losses.tv_ramp(80, 100) == 1.0


def test_alpha_entropy_known_values():
    # H(0.5) = 1 bit, H(0.25) = 0.811278 bits
    w = torch.tensor([[0.5, 0.25]])
    h025 = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    assert losses.alpha_entropy(w).item() == pytest.approx((1.0 + h025) / 2, rel=1e-6)
    # 0 and 1 are clamped to 1e-5 / 1-1e-5, so the entropy is tiny but finite with a finite gradient
    w01 = torch.tensor([[0.0, 1.0]], requires_grad=True)
    e = -(1e-5 * math.log2(1e-5) + (1 - 1e-5) * math.log2(1 - 1e-5))
    value = losses.alpha_entropy(w01)
    assert value.item() == pytest.approx(e, rel=2e-3)  # float32 rounding of 1 - 1e-5
    value.backward()
    assert torch.isfinite(w01.grad).all()


def test_alpha_entropy_gradient_pushes_to_binary():
    w = torch.tensor([0.3, 0.7], requires_grad=True)
    losses.alpha_entropy(w).backward()
    # dH/da = log2((1-a)/a) / N: positive below 0.5 (gradient descent lowers it), negative above.
    expected = torch.log2((1 - w.detach()) / w.detach()) / 2
    assert torch.allclose(w.grad, expected, atol=1e-6)


def test_opacity_loss():
    assert losses.opacity_loss(torch.tensor([0.5, 1.0])).item() == pytest.approx(0.625)


def test_orientation_loss_value_and_gradient():
    weights = torch.tensor([[0.5, 0.5]], requires_grad=True)
    normals = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]], requires_grad=True)
    dirs = torch.tensor([[0.0, 0.0, 2.0]])  # normalised inside
    loss = losses.orientation_loss(weights, normals, dirs)
    # sample 1 faces along the ray: 0.5·1² ; sample 2 faces the camera: 0
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    assert weights.grad is None  # weights are stop-gradient
    assert torch.allclose(normals.grad, torch.tensor([[[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]]))


def test_distortion_loss_closed_forms():
    # All weight in one interval of length 0.3: w²·δ/3.
    one = losses.distortion_loss(torch.tensor([[1.0]]), torch.tensor([[2.0]]), torch.tensor([[0.3]]))
    assert one.item() == pytest.approx(0.1)
    # Two half weights 0.8 apart, intervals 0.1: 2·¼·0.8 + 2·¼·0.1/3.
    two = losses.distortion_loss(torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 1.8]]), torch.tensor([[0.1, 0.1]]))
    assert two.item() == pytest.approx(0.4 + 0.05 / 3)
    # Fog of total weight 1 spread evenly over depth L in n intervals: exactly L/3, whatever n.
    for n in (1, 7, 64):
        lengths = torch.full((1, n), 0.6 / n)
        mids = torch.cumsum(lengths, -1) - lengths / 2 + 2.0
        assert losses.distortion_loss(torch.full((1, n), 1.0 / n), mids, lengths).item() == pytest.approx(0.2, rel=1e-5)
    # Against the O(S²) definition, and the packed form (rays of different lengths, one empty) with it.
    g = torch.Generator().manual_seed(0)
    w, lengths = torch.rand(4, 9, generator=g) / 9, torch.rand(4, 9, generator=g) * 0.1
    mids = torch.cumsum(lengths, -1) - lengths / 2
    pair = (w[:, :, None] * w[:, None] * (mids[:, :, None] - mids[:, None]).abs()).sum((1, 2))
    brute = pair + (w ** 2 * lengths).sum(-1) / 3
    assert losses.distortion_loss(w, mids, lengths).item() == pytest.approx(brute.mean().item(), rel=1e-5)
    keep = [9, 4, 0, 9]  # samples kept per ray
    flat = lambda x: torch.cat([x[r, :k] for r, k in enumerate(keep)])  # noqa: E731
    index = torch.repeat_interleave(torch.arange(4), torch.tensor(keep))
    cut = [(w[r, :k, None] * w[r, None, :k] * (mids[r, :k, None] - mids[r, None, :k]).abs()).sum()
           + (w[r, :k] ** 2 * lengths[r, :k]).sum() / 3 for r, k in enumerate(keep)]
    packed = losses.distortion_loss_packed(flat(w), flat(mids), flat(lengths), index, 4)
    assert packed.item() == pytest.approx(sum(cut).item() / 4, rel=1e-5)
    # Its gradient pulls the weight together: the far sample's weight costs more than the near one's.
    w2 = torch.tensor([[0.6, 0.2, 0.2]], requires_grad=True)
    losses.distortion_loss(w2, torch.tensor([[0.0, 0.1, 1.0]]), torch.full((1, 3), 0.01)).backward()
    assert w2.grad[0, 2] > w2.grad[0, 1] > 0


def test_normal_smoothness_2d():
    image = torch.zeros(1, 2, 2, 3)
    image[0, 0, 0] = torch.tensor([1.0, 0.0, 0.0])
    # one vertical and one horizontal difference of (1,0,0), each averaged over 1·1·2·3 = 6 entries
    assert losses.normal_smoothness_2d(image).item() == pytest.approx(2 / 6)
    assert losses.normal_smoothness_2d(torch.ones(2, 4, 4, 3)).item() == 0.0


def test_normal_smoothness_3d():
    n = torch.tensor([[1.0, 0.0, 0.0]])
    p = torch.tensor([[0.0, 1.0, 0.0]])
    assert losses.normal_smoothness_3d(n, p).item() == pytest.approx(2 / 3)


def test_reference_rgb_and_mask():
    pred = torch.zeros(1, 2, 2, 3)
    gt = torch.zeros(1, 2, 2, 3)
    gt[0, 0, 0] = 1.0
    assert losses.reference_rgb_loss(pred, gt).item() == pytest.approx(3 / 12)
    assert losses.reference_mask_loss(torch.tensor([0.5, 1.0]), torch.tensor([1.0, 1.0])).item() == pytest.approx(0.125)


def test_depth_pearson_loss():
    gt = torch.tensor([1.0, 2.0, 3.0, 4.0, 100.0])
    mask = torch.tensor([True, True, True, True, False])  # the outlier lies outside the mask
    assert losses.reference_depth_loss(2 * gt + 3, gt, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.reference_depth_loss(-gt, gt, mask).item() == pytest.approx(2.0, abs=1e-6)
    x = torch.tensor([1.0, 2.0, 3.0])
    y = torch.tensor([1.0, 3.0, 2.0])  # Pearson = 0.5
    assert losses.reference_depth_loss(x, y, torch.ones(3, dtype=torch.bool)).item() == pytest.approx(0.5, abs=1e-6)


def test_normal_loss_sign_convention():
    mask = torch.tensor([True, False])
    # rendered normal (0,0,1) is stored as (n+1)/2 = (0.5, 0.5, 1); the PNG normal of the same surface is
    # stored flipped: 1 - 2g = (0,0,1) -> g = (0.5, 0.5, 0).
    pred = torch.tensor([[0.5, 0.5, 1.0], [0.0, 0.0, 0.0]])
    gt_same = torch.tensor([[0.5, 0.5, 0.0], [1.0, 1.0, 1.0]])
    gt_opposite = torch.tensor([[0.5, 0.5, 1.0], [1.0, 1.0, 1.0]])
    assert losses.reference_normal_loss(pred, gt_same, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.reference_normal_loss(pred, gt_opposite, mask).item() == pytest.approx(2.0, abs=1e-6)
    assert losses.reference_normal_loss(pred, gt_opposite, mask, flip_gt=False).item() == pytest.approx(0.0, abs=1e-6)


def _dense_index(resolution):
    return lambda level, v: v[:, 0] + resolution * v[:, 1] + resolution * resolution * v[:, 2]


def test_tv_gradient_on_a_step_edge():
    # 2x2x2 vertices, one channel: value 1 where x = 0, 0 where x = 1. Every vertex has exactly one
    # neighbour per axis; only the x-neighbour differs, by ±1, so each sampled vertex adds ±weight/6.
    R = 2
    coords = torch.stack(torch.meshgrid(*[torch.arange(R)] * 3, indexing="ij"), -1).reshape(-1, 3)
    index = _dense_index(R)
    emb = torch.zeros(R**3, 1)
    emb[index(0, coords)] = (coords[:, 0] == 0).float()[:, None]
    grad = torch.zeros_like(emb)
    weight, points = 0.6, 1000
    losses.add_hash_grid_tv_grad_(emb, grad, [0, R**3], [R], index, weight, points,
                                  generator=torch.Generator().manual_seed(0))
    x0 = emb[:, 0] > 0.5
    assert (grad[x0] >= 0).all() and (grad[~x0] <= 0).all()
    assert grad.abs().sum().item() == pytest.approx(points * weight / 6, rel=1e-5)


def test_tv_gradient_is_gradient_of_isotropic_tv():
    # For one sampled vertex, the injected gradient equals d/de_v of weight/6·sqrt(Σ_nb (e_v - e_nb)²).
    R = 3
    index = _dense_index(R)
    emb = torch.randn(R**3, 2, generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(5)
    v = torch.randint(0, R, (1, 3), generator=torch.Generator().manual_seed(5))
    grad = torch.zeros_like(emb)
    losses.add_hash_grid_tv_grad_(emb, grad, [0, R**3], [R], index, 1.0, 1, generator=gen)
    e = emb.clone().requires_grad_(True)
    centre = e[index(0, v)][0]
    total_sq = torch.zeros(2)
    for d in range(3):
        for s in (1, -1):
            nb = v.clone()
            nb[0, d] += s
            if 0 <= nb[0, d] < R:
                total_sq = total_sq + (centre - emb[index(0, nb)][0]) ** 2
    (torch.sqrt(total_sq + 1e-9).sum() / 6).backward()
    assert torch.allclose(grad, e.grad, atol=1e-6)


def test_level_weight_decay_gradient():
    emb = torch.ones(6, 2)
    grad = torch.zeros(6, 2)
    losses.add_level_weight_decay_grad_(emb, grad, [0, 2, 6], weight=0.5)
    assert torch.allclose(grad[:2], torch.full((2, 2), 2 * 0.5 / 2))
    assert torch.allclose(grad[2:], torch.full((4, 2), 2 * 0.5 / 4))
