"""CLIP guidance: normalisation, resize, cosine losses, per-view weights, folder loading."""

import torch
import torch.nn.functional as F

from dreamfusion.guidance import make_guidance, tiny_models
from dreamfusion.guidance.clip_guidance import CLIP_MEAN, CLIP_STD, clip_grad_scale


def test_preprocess_normalises_with_clip_constants():
    clip = tiny_models.tiny_clip(seed=0)
    mean_img = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1).expand(1, 3, 48, 48)
    x = clip.preprocess(mean_img)
    assert x.shape == (1, 3, 32, 32) and x.abs().max() < 1e-6
    white = clip.preprocess(torch.ones(1, 3, 8, 8))
    torch.testing.assert_close(white[0, :, 0, 0], (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD))


def test_losses_by_hand():
    clip = tiny_models.tiny_clip(seed=0)
    torch.manual_seed(0)
    rgb = torch.rand(2, 3, 64, 64, requires_grad=True)
    ref = clip.encode_images(rgb[:1].detach())
    text = clip.encode_text(["a cat"])
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(1))
    g = torch.tensor([2.0, 0.5])
    loss = clip.loss(rgb, image_embedding=ref, text_embedding=text, grad_scale=g)
    img = clip.encode_images(rgb.detach())
    want = -((img @ ref.T)[:, 0] * g).mean() - ((img @ text.T)[:, 0] * g).mean()
    torch.testing.assert_close(loss, want)
    # the render identical to the reference has cosine 1 with it
    only_ref = clip.loss(rgb[:1], image_embedding=ref, grad_scale=3.0)
    torch.testing.assert_close(only_ref, torch.tensor(-3.0))
    loss.backward()
    assert rgb.grad.abs().max() > 0


def test_grad_scale_by_azimuth():
    torch.testing.assert_close(clip_grad_scale(torch.tensor([0.0, 90.0, -180.0]), 2.0),
                               torch.tensor([20.0, 10.0, 0.0]))


def test_saved_folder_loads_offline(tmp_path):
    folder = tiny_models.save_tiny_clip(tmp_path / "clip", seed=0)
    loaded = make_guidance("clip", clip_key=str(folder))
    ref = tiny_models.tiny_clip(seed=0)
    torch.testing.assert_close(loaded.encode_text(["a dog"]), ref.encode_text(["a dog"]))
    x = torch.rand(1, 3, 40, 40)
    torch.testing.assert_close(loaded.encode_images(x), ref.encode_images(x))
    assert F.cosine_similarity(loaded.encode_images(x), ref.encode_images(x)).item() > 0.9999
