"""Stable Diffusion prior: version keys, loading a saved folder offline, v-prediction, decoding."""

import pytest
import torch

from dreamfusion.errors import UserError
from dreamfusion.guidance import ScoreDistillation, make_guidance, tiny_models
from dreamfusion.guidance.stable_diffusion import StableDiffusionPrior, resolve_sd_key


def test_version_keys():
    assert resolve_sd_key("1.5") == "runwayml/stable-diffusion-v1-5"
    assert resolve_sd_key("2.0") == "stabilityai/stable-diffusion-2-base"
    assert resolve_sd_key("2.1") == "stabilityai/stable-diffusion-2-1-base"
    assert resolve_sd_key("2.1-base") == "stabilityai/stable-diffusion-2-1-base"
    assert resolve_sd_key("1.5", hf_key="/models/my-sd") == "/models/my-sd"
    with pytest.raises(UserError, match="sd_version"):
        resolve_sd_key("3.0")


def test_saved_folder_loads_back_offline_with_identical_outputs(sd_prior, sd_folder):
    loaded = StableDiffusionPrior.from_pretrained(str(sd_folder), "cpu")
    assert (loaded.resolution, loaded.latent_size, loaded.num_train_timesteps) == (64, 8, 1000)
    torch.testing.assert_close(loaded.alphas_cumprod, sd_prior.alphas_cumprod)
    emb = loaded.encode_text(["", "a cat, side view"])
    assert emb.shape == (2, 16, 32)
    torch.testing.assert_close(emb, sd_prior.encode_text(["", "a cat, side view"]))
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([100, 900])
    torch.testing.assert_close(loaded.predict_noise(x, t, emb), sd_prior.predict_noise(x, t, emb))
    assert all(not p.requires_grad for p in loaded.unet.parameters())


def test_make_guidance_sd_by_path_runs_a_step(sd_folder):
    guidance = make_guidance("SD", hf_key=str(sd_folder), t_range=(0.2, 0.6))
    assert isinstance(guidance, ScoreDistillation)
    assert (guidance.min_step, guidance.max_step, guidance.config.guidance_scale) == (200, 600, 100.0)
    uncond, cond = guidance.prior.encode_text(["ugly", "a hamburger"])
    rgb = torch.rand(2, 3, 32, 32, requires_grad=True)       # resized to 64 inside
    out = guidance.step(rgb, torch.stack([uncond, uncond, cond, cond]))
    out.loss.backward()
    assert torch.all((out.t >= 200) & (out.t <= 600))
    assert torch.isfinite(out.loss) and rgb.grad.abs().max() > 0


def test_vram_options_keep_outputs_and_fp16_stays_float32_on_cpu(sd_prior, sd_folder):
    prior = StableDiffusionPrior.from_pretrained(str(sd_folder), "cpu", fp16=True, vram_O=True)
    assert prior.unet.dtype == torch.float32                   # half precision only on CUDA/MPS
    emb = sd_prior.encode_text(["", "a cat"])
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([300, 300])
    torch.testing.assert_close(prior.predict_noise(x, t, emb), sd_prior.predict_noise(x, t, emb),
                               rtol=1e-4, atol=1e-5)           # attention slicing: same maths


def test_v_prediction_is_converted_to_epsilon():
    prior = tiny_models.tiny_stable_diffusion(seed=0, prediction_type="v_prediction")
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([400])
    emb = prior.encode_text(["a cat"])
    v = prior.unet(x, t, encoder_hidden_states=emb).sample
    a = prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(prior.predict_noise(x, t, emb), a.sqrt() * v + (1 - a).sqrt() * x)


def test_latents_from_rgba_and_decode(sd_prior):
    rgba = torch.rand(2, 4, 64, 64)
    lat = sd_prior.latents_from_rgba(rgba)
    assert lat.shape == (2, 4, 8, 8)
    flat = sd_prior.latents_from_rgba(torch.full((1, 4, 64, 64), 0.75))
    torch.testing.assert_close(flat, torch.full((1, 4, 8, 8), 0.5))     # 2·0.75 − 1
    img = sd_prior.decode_latents(lat)
    assert img.shape == (2, 3, 64, 64) and img.min() >= 0 and img.max() <= 1
