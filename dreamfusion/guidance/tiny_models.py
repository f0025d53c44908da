"""Tiny random SD / IF / Zero123 / CLIP models built from configs (nothing is downloaded).

They have the real architectures (diffusers UNet/VAE, transformers CLIP/T5, locally built
tokenizers) at a few hundred thousand parameters, so every prior runs its real code path on
CPU in milliseconds. `save_tiny_*` writes real diffusers-format folders that the loaders read
by path, e.g. `dreamfusion --hf_key <folder>`.

Sizes: SD renders 64×64 → latents 4×8×8; IF works at 3×16×16; Zero123 at 64×64 → 4×8×8;
text length 16 tokens, widths 32.

Usage:
    folder = save_tiny_stable_diffusion("/tmp/tiny-sd")
    prior = StableDiffusionPrior.from_pretrained(str(folder))
"""

from __future__ import annotations

import json
import os
import string
from contextlib import contextmanager
from pathlib import Path

import torch

TEXT_LENGTH = 16
WIDTH = 32


@contextmanager
def _seeded(seed: int):
    """Build under a private RNG state so the caller's random stream is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# --- tokenizers ---------------------------------------------------------------------------------
def tiny_clip_tokenizer(model_max_length: int = TEXT_LENGTH):
    """A byte-level BPE CLIPTokenizer over the 256 byte symbols (any text tokenises) + 2 merges."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["ca", "cat</w>"]
    vocab = {tok: i for i, tok in enumerate(tokens + ["<|startoftext|>", "<|endoftext|>"])}
    return CLIPTokenizer(vocab=vocab, merges=[("c", "a"), ("ca", "t</w>")],
                         model_max_length=model_max_length)


def tiny_t5_tokenizer(model_max_length: int = TEXT_LENGTH):
    """A unigram T5Tokenizer over single characters (with and without the ▁ word prefix)."""
    from transformers import T5Tokenizer

    chars = string.ascii_letters + string.digits + string.punctuation
    vocab = ([("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
             + [(c, -3.0) for c in chars] + [("▁" + c, -2.5) for c in chars])
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


# --- building blocks ----------------------------------------------------------------------------
def _clip_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=WIDTH, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=TEXT_LENGTH, projection_dim=WIDTH,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)).eval()


def _vae(sample_size: int = 64):
    """AutoencoderKL with 4 blocks: ×8 down-scaling like SD's."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=[32, 32, 64, 64], layers_per_block=1, latent_channels=4,
                         norm_num_groups=32, down_block_types=["DownEncoderBlock2D"] * 4,
                         up_block_types=["UpDecoderBlock2D"] * 4, sample_size=sample_size)


def _latent_unet(in_channels: int, cross_attention_dim: int = WIDTH, sample_size: int = 8):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=sample_size,
        in_channels=in_channels, out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=cross_attention_dim,
        norm_num_groups=32, attention_head_dim=8)


def _sd_scheduler(prediction_type: str = "epsilon"):
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                         prediction_type=prediction_type)


# --- Stable Diffusion ---------------------------------------------------------------------------
def tiny_stable_diffusion_components(seed: int = 0, prediction_type: str = "epsilon") -> dict:
    """vae, unet, text_encoder, tokenizer, scheduler of a tiny SD (64×64 → 4×8×8)."""
    with _seeded(seed):
        tokenizer = tiny_clip_tokenizer()
        return dict(vae=_vae(64), unet=_latent_unet(4), text_encoder=_clip_text_encoder(tokenizer),
                    tokenizer=tokenizer, scheduler=_sd_scheduler(prediction_type))


def tiny_stable_diffusion(device: str | torch.device = "cpu", seed: int = 0,
                          prediction_type: str = "epsilon"):
    """A `StableDiffusionPrior` over tiny random components (no files involved)."""
    from .stable_diffusion import StableDiffusionPrior

    c = tiny_stable_diffusion_components(seed, prediction_type)
    for m in (c["vae"], c["unet"], c["text_encoder"]):
        m.to(device)
    return StableDiffusionPrior(c["vae"], c["unet"], c["text_encoder"], c["tokenizer"], c["scheduler"], device)


def save_tiny_stable_diffusion(folder: str | os.PathLike, seed: int = 0,
                               prediction_type: str = "epsilon") -> Path:
    """Write a diffusers `StableDiffusionPipeline` folder (~8 MB) loadable with `--hf_key folder`."""
    from diffusers import StableDiffusionPipeline

    c = tiny_stable_diffusion_components(seed, prediction_type)
    pipe = StableDiffusionPipeline(**c, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return Path(folder)


# --- DeepFloyd IF -------------------------------------------------------------------------------
def tiny_deepfloyd_if_components(seed: int = 0) -> dict:
    """unet (3 in, 6 out, 16×16, IF-style simple cross-attention), T5 text_encoder, tokenizer,
    scheduler (IF's DDPM config)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    with _seeded(seed):
        tokenizer = tiny_t5_tokenizer()
        text_encoder = T5EncoderModel(T5Config(
            vocab_size=len(tokenizer), d_model=WIDTH, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)).eval()
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=3,
            out_channels=6, down_block_types=("DownBlock2D", "SimpleCrossAttnDownBlock2D"),
            up_block_types=("SimpleCrossAttnUpBlock2D", "UpBlock2D"),
            mid_block_type="UNetMidBlock2DSimpleCrossAttn", cross_attention_dim=WIDTH,
            norm_num_groups=32, encoder_hid_dim=WIDTH, encoder_hid_dim_type="text_proj",
            addition_embed_type="text", addition_embed_type_num_heads=4, attention_head_dim=8,
            resnet_time_scale_shift="scale_shift")
        scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="learned_range",
                                  thresholding=True, dynamic_thresholding_ratio=0.95,
                                  sample_max_value=1.5, clip_sample=True, clip_sample_range=1.0)
        return dict(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)


def tiny_deepfloyd_if(device: str | torch.device = "cpu", seed: int = 0):
    from .deepfloyd_if import DeepFloydIFPrior

    c = tiny_deepfloyd_if_components(seed)
    return DeepFloydIFPrior(c["unet"].to(device), c["text_encoder"].to(device), c["tokenizer"],
                            c["scheduler"], device)


def save_tiny_deepfloyd_if(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write a diffusers `IFPipeline` folder (no safety checker / watermarker)."""
    from diffusers import IFPipeline

    pipe = IFPipeline(**tiny_deepfloyd_if_components(seed), safety_checker=None,
                      feature_extractor=None, watermarker=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return Path(folder)


# --- Zero123 ------------------------------------------------------------------------------------
def tiny_zero123_components(seed: int = 0) -> dict:
    """unet (8 in: latent ⊕ c_concat), vae, CLIP image_encoder (32×32 input), cc_projection 36→32."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from .zero123 import CCProjection

    with _seeded(seed):
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            image_size=32, patch_size=8, hidden_size=WIDTH, intermediate_size=37,
            num_hidden_layers=2, num_attention_heads=4, projection_dim=WIDTH)).eval()
        return dict(unet=_latent_unet(8), vae=_vae(64), image_encoder=image_encoder,
                    cc_projection=CCProjection(WIDTH + 4, WIDTH))


def tiny_zero123(device: str | torch.device = "cpu", seed: int = 0):
    from .zero123 import Zero123Prior

    c = tiny_zero123_components(seed)
    return Zero123Prior(c["unet"].to(device), c["vae"].to(device), c["image_encoder"].to(device),
                        c["cc_projection"].to(device), device)


def save_tiny_zero123(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write the kxic/zero123-xl folder layout: unet/, vae/, image_encoder/, cc_projection/."""
    folder = Path(folder)
    c = tiny_zero123_components(seed)
    for name in ("unet", "vae", "image_encoder", "cc_projection"):
        c[name].save_pretrained(folder / name)
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "Zero1to3StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
        "cc_projection": ["diffusers_modules.local.pipeline_zero1to3", "CCProjection"]}, indent=2))
    return folder


# --- CLIP ---------------------------------------------------------------------------------------
def tiny_clip_components(seed: int = 0) -> dict:
    """model (CLIPModel, 32×32 images, width 32) and tokenizer."""
    from transformers import CLIPConfig, CLIPModel

    with _seeded(seed):
        tokenizer = tiny_clip_tokenizer()
        config = CLIPConfig(
            text_config=dict(vocab_size=len(tokenizer), hidden_size=WIDTH, intermediate_size=37,
                             num_hidden_layers=2, num_attention_heads=4,
                             max_position_embeddings=TEXT_LENGTH, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
            vision_config=dict(image_size=32, patch_size=8, hidden_size=WIDTH, intermediate_size=37,
                               num_hidden_layers=2, num_attention_heads=4),
            projection_dim=WIDTH)
        return dict(model=CLIPModel(config).eval(), tokenizer=tokenizer)


def tiny_clip(device: str | torch.device = "cpu", seed: int = 0):
    from .clip_guidance import ClipGuidance

    c = tiny_clip_components(seed)
    return ClipGuidance(c["model"].to(device), c["tokenizer"], device)


def save_tiny_clip(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write a transformers CLIP folder (model + tokenizer)."""
    c = tiny_clip_components(seed)
    c["model"].save_pretrained(folder)
    c["tokenizer"].save_pretrained(folder)
    return Path(folder)
