"""Zero123: camera vector, conditioning rows, reference weighting, SDS, loading a folder."""

import math

import pytest
import torch

from dreamfusion.guidance import make_guidance, tiny_models
from dreamfusion.guidance.sds import SDSConfig
from dreamfusion.guidance.zero123 import (Zero123Guidance, Zero123Prior, angle_grad_scale,
                                          camera_vector, reference_weights, view_angles)


@pytest.fixture(scope="module")
def prior():
    return tiny_models.tiny_zero123(seed=0)


def test_camera_vector_by_hand():
    T = camera_vector(torch.tensor([30.0, -45.0]), torch.tensor([90.0, -120.0]), torch.tensor([0.5, -0.2]))
    want = torch.tensor([[math.pi / 6, 1.0, 0.0, 0.5],
                         [-math.pi / 4, -math.sqrt(3) / 2, -0.5, -0.2]])
    torch.testing.assert_close(T, want, atol=1e-6, rtol=0)
    assert T.shape == (2, 4)


def test_conditioning_rows_by_hand(prior):
    torch.manual_seed(0)
    refs = torch.rand(2, 3, 64, 64)
    emb, lat = prior.image_embeddings(refs), prior.image_latents(refs)
    assert emb.shape == (2, 1, 32) and lat.shape == (2, 4, 8, 8)
    d_polar = torch.tensor([[10.0, 20.0], [0.0, -30.0], [5.0, 5.0]])
    d_az = torch.tensor([[90.0, -90.0], [180.0, 0.0], [45.0, 135.0]])
    d_r = torch.tensor([[0.1, 0.0], [0.0, 0.3], [-0.2, 0.2]])
    cond = prior.conditioning(emb, lat, d_polar, d_az, d_r)
    assert len(cond) == 9                                   # (1 + 2 refs) · 3 cameras
    assert torch.all(cond.crossattn[:3] == 0) and torch.all(cond.concat[:3] == 0)
    lin = prior.cc_projection.projection
    for i in range(2):
        for b in range(3):
            p, a, r = math.radians(d_polar[b, i]), math.radians(d_az[b, i]), float(d_r[b, i])
            T = torch.tensor([p, math.sin(a), math.cos(a), r])
            want = lin.weight @ torch.cat([emb[i, 0], T]) + lin.bias
            row = 3 * (1 + i) + b
            torch.testing.assert_close(cond.crossattn[row, 0], want, atol=1e-5, rtol=1e-5)
            assert torch.equal(cond.concat[row], lat[i])


def test_view_angles_grad_scale_and_weights():
    angles = view_angles(torch.tensor([90.0, 0.0]), torch.tensor([0.0, 50.0]),
                         torch.tensor([90.0, 90.0]), torch.tensor([180.0, 90.0]))
    torch.testing.assert_close(angles, torch.tensor([[180.0, 90.0], [90.0, 90.0]]), atol=1e-3, rtol=0)
    torch.testing.assert_close(angle_grad_scale(torch.tensor([[90.0]])), torch.tensor([0.5]))
    torch.testing.assert_close(angle_grad_scale(torch.tensor([[30.0, 150.0]])), torch.tensor([1 / 3]))
    assert torch.equal(angle_grad_scale(torch.tensor([[30.0]]), None), torch.ones(1))
    # inv = [1/10, 1/50] / (1/10) = [1, 0.2]
    torch.testing.assert_close(reference_weights(torch.tensor([[10.0, 50.0]]), torch.ones(2)),
                               torch.tensor([[1.0, 0.2]]))
    # 1/150 / (1/10) = 0.067 < 0.1 → dropped; user weights multiply then renormalise by the max
    torch.testing.assert_close(reference_weights(torch.tensor([[10.0, 150.0]]), torch.ones(2)),
                               torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(reference_weights(torch.tensor([[10.0, 50.0]]), torch.tensor([1.0, 4.0])),
                               torch.tensor([[1.0, 0.8]]))
    torch.testing.assert_close(reference_weights(torch.tensor([[0.0, 50.0]]), torch.ones(2)),
                               torch.tensor([[1.0, 0.0]]))  # 1/0 → 100 (cap); 0.02/100 < 0.1
    assert torch.equal(reference_weights(torch.tensor([[170.0]]), torch.tensor([2.0])), torch.ones(1, 1))


def test_multi_reference_sds_is_weighted_average_with_angle_scale(prior):
    guidance = Zero123Guidance(prior, SDSConfig(guidance_scale=5.0, loss_form="specify"))
    torch.manual_seed(0)
    guidance.set_references(torch.rand(2, 3, 64, 64), polars=[90, 90], azimuths=[0, 120], radii=[3.2, 3.2])
    polar, azimuth = torch.tensor([90.0, 60.0]), torch.tensor([20.0, 100.0])
    d_polar = (polar[:, None] - guidance.references["polars"][None]).float()
    d_az = (azimuth[:, None] - guidance.references["azimuths"][None]).float()
    d_r = torch.zeros(2, 2)
    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([250, 700])
    z = latents.clone().requires_grad_(True)
    cond = prior.conditioning(guidance.references["embeddings"], guidance.references["latents"], d_polar, d_az, d_r)
    angles = view_angles(polar, azimuth, guidance.references["polars"], guidance.references["azimuths"])
    scale = angle_grad_scale(angles)
    out = guidance.sds.step_latents(z, cond, grad_scale=scale, reference_weights=reference_weights(angles, torch.ones(2)),
                                    t=t, noise=noise)
    out.loss.backward()
    # by hand: per-reference CFG then the weighted mean
    eps = prior.predict_noise(torch.cat([out.x_t] * 3), torch.cat([t] * 3), cond).view(3, 2, 4, 8, 8)
    per_ref = [eps[0] + 5.0 * (eps[k] - eps[0]) for k in (1, 2)]
    w = reference_weights(angles, torch.ones(2))
    eps_hat = (w[:, 0, None, None, None] * per_ref[0] + w[:, 1, None, None, None] * per_ref[1]) / w.sum(1).view(-1, 1, 1, 1)
    torch.testing.assert_close(out.eps_hat, eps_hat, rtol=1e-5, atol=1e-5)
    a = prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(z.grad, scale.view(-1, 1, 1, 1) * (1 - a) * (out.eps_hat - noise))
    # angle 20° to the first reference → scale 20 / (180 / 2)
    torch.testing.assert_close(scale[0], torch.tensor(20.0 / 90.0), atol=1e-4, rtol=0)


def test_step_on_renders_and_missing_reference(prior):
    guidance = Zero123Guidance(prior)
    rgb = torch.rand(1, 3, 64, 64, requires_grad=True)
    from dreamfusion.errors import UserError
    with pytest.raises(UserError):
        guidance.step(rgb, torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.tensor([90.0]), torch.tensor([0.0]))
    guidance.set_references(torch.rand(1, 3, 64, 64), [90], [0], [3.2])
    out = guidance.step(rgb, torch.tensor([0.0]), torch.tensor([90.0]), torch.tensor([0.0]),
                        torch.tensor([90.0]), torch.tensor([90.0]))
    out.loss.backward()
    assert rgb.grad.abs().max() > 0
    # at the reference view itself the angle scale is 0: no gradient at all
    rgb.grad = None
    out = guidance.step(rgb, torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.tensor([90.0]), torch.tensor([0.0]))
    out.loss.backward()
    assert rgb.grad.abs().max() == 0


def test_saved_folder_loads_offline_with_same_weights(prior, tmp_path):
    folder = tiny_models.save_tiny_zero123(tmp_path / "zero123", seed=0)
    guidance = make_guidance("zero123", zero123_key=str(folder))
    loaded = guidance.prior
    assert isinstance(loaded, Zero123Prior) and guidance.sds.config.guidance_scale == 5.0
    torch.manual_seed(0)
    refs = torch.rand(1, 3, 64, 64)
    cond_a = prior.conditioning(prior.image_embeddings(refs), prior.image_latents(refs),
                                torch.tensor([10.0]), torch.tensor([30.0]), torch.tensor([0.1]))
    cond_b = loaded.conditioning(loaded.image_embeddings(refs), loaded.image_latents(refs),
                                 torch.tensor([10.0]), torch.tensor([30.0]), torch.tensor([0.1]))
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([500, 500])
    torch.testing.assert_close(loaded.predict_noise(x, t, cond_b), prior.predict_noise(x, t, cond_a))
