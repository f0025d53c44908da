"""SDS core: timesteps, forward process, the injected gradient (with/without AMP), CFG, previews."""


import numpy as np
import pytest
import torch
from PIL import Image

from dreamfusion.errors import UserError
from dreamfusion.guidance.sds import (ScoreDistillation, SDSConfig, add_noise, guided_noise,
                                      sample_timesteps, sds_gradient, timestep_bounds)


def cfg_batch(emb, batch):
    return torch.cat([emb[:1].expand(batch, -1, -1), emb[1:].expand(batch, -1, -1)])


def fixed_inputs(batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 4, 8, 8, generator=g)
    noise = torch.randn(batch, 4, 8, 8, generator=g)
    t = torch.tensor([137, 742][:batch] + [500] * max(0, batch - 2))
    return latents, noise, t


def expected_grad(prior, latents, noise, t, emb, scale, batched=True):
    """w(t)(ε̂ − ε) computed here: own forward process from the scheduler's ᾱ, own CFG, one UNet
    call on [x_t, x_t] (bit-identical to SDS) or two separate calls (equal to ~1e-6)."""
    a = prior.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = a.sqrt() * latents + (1 - a).sqrt() * noise
    b = latents.shape[0]
    if batched:
        eps_u, eps_c = prior.predict_noise(torch.cat([x_t, x_t]), torch.cat([t, t]),
                                           cfg_batch(emb, b)).chunk(2)
    else:
        eps_u = prior.predict_noise(x_t, t, emb[:1].expand(b, -1, -1))
        eps_c = prior.predict_noise(x_t, t, emb[1:].expand(b, -1, -1))
    eps_hat = eps_u + scale * (eps_c - eps_u)
    return (1 - a) * (eps_hat - noise)


def test_timestep_bounds_and_sampling_are_inclusive():
    assert timestep_bounds(1000, (0.02, 0.98)) == (20, 980)
    assert timestep_bounds(1000, (0.2, 0.6)) == (200, 600)
    assert timestep_bounds(1000, (0.0, 1.0)) == (0, 999)
    g = torch.Generator().manual_seed(0)
    t = sample_timesteps(4000, 20, 30, "cpu", g)
    assert set(t.tolist()) == set(range(20, 31))   # both ends drawn, nothing outside
    assert set(sample_timesteps(50, 500, 500, "cpu", g).tolist()) == {500}
    for bad in [(0.5, 0.4), (-0.1, 0.5), (0.1, 1.5)]:
        with pytest.raises(UserError):
            timestep_bounds(1000, bad)


def test_add_noise_matches_diffusers(sd_prior):
    latents, noise, t = fixed_inputs(2)
    ours = add_noise(latents, noise, t, sd_prior.alphas_cumprod)
    theirs = sd_prior.scheduler.add_noise(latents, noise, t)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("form", ["specify", "mse"])
def test_gradient_at_latents_is_w_times_eps_difference(sd_prior, text_embeddings, form):
    latents, noise, t = fixed_inputs(1)
    latents.requires_grad_(True)
    sds = ScoreDistillation(sd_prior, SDSConfig(guidance_scale=7.5, loss_form=form))
    out = sds.step_latents(latents, cfg_batch(text_embeddings, 1), t=t, noise=noise)
    out.loss.backward()
    want = expected_grad(sd_prior, latents.detach(), noise, t, text_embeddings, 7.5)
    assert torch.equal(out.grad, want)                 # exact for a fixed t and ε
    separate = expected_grad(sd_prior, latents.detach(), noise, t, text_embeddings, 7.5, batched=False)
    torch.testing.assert_close(out.grad, separate, rtol=1e-4, atol=1e-5)
    assert want.abs().max() > 1e-2                      # a real, non-trivial gradient
    if form == "specify":
        assert torch.equal(latents.grad, out.grad)     # injected bit for bit
    else:                                              # z − (z − g) rounds at ~1 ulp of z
        torch.testing.assert_close(latents.grad, out.grad, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.w, 1 - sd_prior.scheduler.alphas_cumprod[t])


@pytest.mark.parametrize("scale", [1.0, 1024.0])
def test_grad_scaler_scale_reaches_injected_gradient(sd_prior, text_embeddings, scale):
    # torch 2.13 has a CPU GradScaler, so the real AMP code path (scale → backward → unscale_) runs.
    latents, noise, t = fixed_inputs(1)
    param = torch.nn.Parameter(latents.clone())
    opt = torch.optim.SGD([param], lr=0.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=scale)
    sds = ScoreDistillation(sd_prior, SDSConfig(guidance_scale=100, loss_form="specify"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sds.step_latents(param * 1.0, cfg_batch(text_embeddings, 1), t=t, noise=noise)
    scaler.scale(out.loss).backward()
    assert torch.equal(param.grad, out.grad * scale)   # the dummy loss carried the scale
    scaler.unscale_(opt)
    assert torch.equal(param.grad, out.grad)
    w = 1 - sd_prior.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert torch.equal(out.grad, w * (out.eps_hat - noise))


def test_mse_form_matches_specify_for_batch_one_and_divides_by_batch(sd_prior, text_embeddings):
    for batch in (1, 2):
        latents, noise, t = fixed_inputs(batch)
        grads = {}
        for form in ("specify", "mse"):
            z = latents.clone().requires_grad_(True)
            sds = ScoreDistillation(sd_prior, SDSConfig(loss_form=form))
            out = sds.step_latents(z, cfg_batch(text_embeddings, batch), t=t, noise=noise)
            out.loss.backward()
            grads[form] = z.grad
            if form == "mse":   # informative loss value 0.5·‖grad‖²/B
                torch.testing.assert_close(out.loss, 0.5 * (out.grad ** 2).sum() / batch, rtol=1e-4, atol=0)
        torch.testing.assert_close(grads["mse"], grads["specify"] / batch, rtol=0, atol=1e-6)


def test_cfg_scale_one_is_the_conditional_prediction(sd_prior, text_embeddings):
    latents, noise, t = fixed_inputs(2)
    sds = ScoreDistillation(sd_prior, SDSConfig(guidance_scale=1.0))
    out = sds.step_latents(latents, cfg_batch(text_embeddings, 2), t=t, noise=noise)
    eps_c = sd_prior.predict_noise(out.x_t, t, text_embeddings[1:].expand(2, -1, -1))
    # The UNet runs on 4 rows there and 2 here; float32 GEMMs block by batch size on some CPUs
    # (seen: 1.7e-4 relative). A wrong guidance formula would be off by O(1).
    torch.testing.assert_close(out.eps_hat, eps_c, rtol=1e-3, atol=1e-5)


def test_grad_scale_nan_inf_and_clip():
    alphas = torch.linspace(0.99, 0.01, 1000)
    t = torch.tensor([100, 900])
    eps_hat = torch.zeros(2, 1, 1, 3)
    eps_hat[0, 0, 0] = torch.tensor([float("nan"), float("inf"), 2.0])
    noise = torch.zeros_like(eps_hat)
    g = sds_gradient(eps_hat, noise, t, alphas, grad_scale=torch.tensor([2.0, 3.0]))
    w0 = 1 - alphas[100]
    assert g[0, 0, 0, 0] == 0 and g[0, 0, 0, 1] == torch.finfo(torch.float32).max
    torch.testing.assert_close(g[0, 0, 0, 2], 2.0 * w0 * 2.0)
    clipped = sds_gradient(eps_hat, noise, t, alphas, grad_scale=2.0, grad_clip=0.5)
    assert clipped.abs().max() == 0.5 and clipped[0, 0, 0, 0] == 0


def test_reference_weights_average_guided_predictions():
    torch.manual_seed(0)
    b = 2
    eps = torch.randn(3 * b, 4, 2, 2)          # uncond, ref 1, ref 2
    w = torch.tensor([[1.0, 0.5], [0.2, 1.0]])
    out = guided_noise(eps, b, 5.0, reference_weights=w)
    eu, e1, e2 = eps.view(3, b, 4, 2, 2)
    per_ref = [eu + 5.0 * (e1 - eu), eu + 5.0 * (e2 - eu)]
    want = (w[:, 0, None, None, None] * per_ref[0] + w[:, 1, None, None, None] * per_ref[1]) / w.sum(1).view(-1, 1, 1, 1)
    torch.testing.assert_close(out, want)


def test_latent_mode_gradient_is_twice_the_sds_gradient(sd_prior, text_embeddings):
    # normal+alpha at the latent size: latents = 2·rgba − 1, so ∂L/∂rgba = 2·grad exactly.
    rgba = torch.rand(1, 4, 8, 8, requires_grad=True)
    _, noise, t = fixed_inputs(1)
    sds = ScoreDistillation(sd_prior, SDSConfig(loss_form="specify"))
    out = sds.step(rgba, cfg_batch(text_embeddings, 1), as_latent=True, t=t, noise=noise)
    out.loss.backward()
    torch.testing.assert_close(out.latents, 2 * rgba.detach() - 1)
    assert torch.equal(rgba.grad, 2 * out.grad)


def test_image_gradient_is_vae_encoder_vjp(sd_prior, text_embeddings):
    rgb = torch.rand(1, 3, 64, 64, requires_grad=True)
    _, noise, t = fixed_inputs(1)
    sds = ScoreDistillation(sd_prior, SDSConfig(loss_form="specify"))
    torch.manual_seed(3)           # the VAE posterior sample uses the global RNG
    out = sds.step(rgb, cfg_batch(text_embeddings, 1), t=t, noise=noise)
    out.loss.backward()
    rgb2 = rgb.detach().clone().requires_grad_(True)
    torch.manual_seed(3)
    latents = sd_prior.encode_images(rgb2)
    torch.testing.assert_close(latents.detach(), out.latents)
    (want,) = torch.autograd.grad(latents, rgb2, out.grad)
    torch.testing.assert_close(rgb.grad, want)
    assert want.abs().max() > 0


def test_save_guidance_writes_render_noisy_and_x0(sd_prior, text_embeddings, tmp_path):
    rgb = torch.rand(2, 3, 64, 64)
    sds = ScoreDistillation(sd_prior, SDSConfig())
    path = tmp_path / "guidance" / "step_0000010.png"
    out = sds.step(rgb, cfg_batch(text_embeddings, 2), save_guidance_path=path)
    img = np.asarray(Image.open(path))
    assert img.shape == (2 * 64, 3 * 64, 3)
    render = (rgb[1].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    assert np.abs(img[64:, :64].astype(int) - render.astype(int)).max() <= 1   # first panel = render
    noisy = sd_prior.decode_latents(out.x_t)[0].permute(1, 2, 0).numpy()
    assert np.abs(img[:64, 64:128] / 255.0 - noisy).max() < 1 / 255 + 1e-6


def test_every_prior_satisfies_the_interface(sd_prior):
    from dreamfusion.guidance import tiny_models
    from dreamfusion.guidance.prior import DiffusionPrior

    for prior in (sd_prior, tiny_models.tiny_deepfloyd_if(), tiny_models.tiny_zero123()):
        assert isinstance(prior, DiffusionPrior)
        assert prior.alphas_cumprod.dtype == torch.float32 and prior.alphas_cumprod.shape == (1000,)
        assert torch.all(prior.alphas_cumprod[1:] < prior.alphas_cumprod[:-1])   # ᾱ decreasing
