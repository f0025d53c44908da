"""DeepFloyd IF prior: pixel-space encoding, the first 3 of 6 output channels, folder loading."""

import pytest
import torch
import torch.nn.functional as F

from dreamfusion.errors import UserError
from dreamfusion.guidance.prior import has_latent_mode

from dreamfusion.guidance import ScoreDistillation, SDSConfig, make_guidance, tiny_models
from dreamfusion.guidance.deepfloyd_if import DeepFloydIFPrior


def test_encode_images_is_resized_pixels_in_minus_one_one():
    prior = tiny_models.tiny_deepfloyd_if(seed=0)
    rgb = torch.rand(2, 3, 32, 32, requires_grad=True)
    x = prior.encode_images(rgb)
    torch.testing.assert_close(x, 2 * F.interpolate(rgb, (16, 16), mode="bilinear", align_corners=False) - 1)
    assert x.requires_grad
    assert not has_latent_mode(prior)           # pixel space: no normal+alpha warm-up
    with pytest.raises(UserError, match="latent mode"):
        ScoreDistillation(prior).step(torch.rand(1, 4, 16, 16), prior.encode_text(["", "x"]), as_latent=True)


def test_predict_noise_is_first_three_channels_and_sds_runs(tmp_path):
    folder = tiny_models.save_tiny_deepfloyd_if(tmp_path / "if", seed=0)
    guidance = make_guidance("IF", if_key=str(folder))
    prior = guidance.prior
    assert isinstance(prior, DeepFloydIFPrior) and prior.unet.config.out_channels == 6
    emb = prior.encode_text(["", "A Cat "])
    torch.testing.assert_close(emb[1], prior.encode_text(["a cat"])[0])   # lower-cased, stripped
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10, 990])
    full = prior.unet(x, t, encoder_hidden_states=emb).sample
    assert full.shape[1] == 6
    torch.testing.assert_close(prior.predict_noise(x, t, emb), full[:, :3])
    rgb = torch.rand(1, 3, 64, 64, requires_grad=True)
    sds = ScoreDistillation(prior, SDSConfig(loss_form="specify", guidance_scale=20))
    out = sds.step(rgb, emb, t=torch.tensor([500]), noise=torch.randn(1, 3, 16, 16))
    out.loss.backward()
    # d(encode)/d(rgb) is the bilinear-resize adjoint times 2
    rgb2 = rgb.detach().clone().requires_grad_(True)
    (want,) = torch.autograd.grad(prior.encode_images(rgb2), rgb2, out.grad)
    torch.testing.assert_close(rgb.grad, want)
    a = prior.alphas_cumprod[500]
    torch.testing.assert_close(out.grad, (1 - a) * (out.eps_hat - out.noise))
