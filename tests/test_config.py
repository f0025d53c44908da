import dataclasses

import pytest

from dreamfusion.config import Config, resolve
from dreamfusion.errors import UserError

# Every option of stable-dreamfusion's main.py with its default (spec section 2).
SPEC_DEFAULTS = {
    "file": None, "text": None, "negative": "", "O": False, "O2": False, "test": False, "six_views": False,
    "eval_interval": 1, "test_interval": 100, "workspace": "workspace", "seed": None, "gui": False,
    "guidance": ["SD"], "IF": False, "guidance_scale": 100, "sd_version": "2.1", "hf_key": None,
    "t_range": [0.02, 0.98], "dont_override_stuff": False, "lambda_guidance": 1, "perpneg": False,
    "negative_w": -2, "front_decay_factor": 2, "side_decay_factor": 10,
    "zero123_config": "./pretrained/zero123/sd-objaverse-finetune-c_concat-256.yaml",
    "zero123_ckpt": "kxic/zero123-xl", "zero123_grad_scale": "angle",
    "image": None, "image_config": None, "known_view_interval": 4, "known_view_scale": 1.5,
    "known_view_noise_scale": 2e-3, "default_radius": 3.2, "default_polar": 90, "default_azimuth": 0,
    "default_fovy": 20, "iters": 10000, "lr": 1e-3, "ckpt": "latest", "optim": "adan", "fp16": False,
    "vram_O": False, "w": 64, "h": 64, "batch_size": 1, "dataset_size_train": 100, "dataset_size_valid": 8,
    "dataset_size_test": 100, "exp_start_iter": None, "exp_end_iter": None, "latent_iter_ratio": 0.2,
    "albedo_iter_ratio": 0, "min_ambient_ratio": 0.1, "textureless_ratio": 0.2, "jitter_pose": False,
    "jitter_center": 0.2, "jitter_target": 0.2, "jitter_up": 0.02, "uniform_sphere_rate": 0, "grad_clip": -1,
    "grad_clip_rgb": -1, "progressive_view": False, "progressive_view_init_ratio": 0.2, "progressive_level": False,
    "save_guidance": False, "save_guidance_interval": 10, "backbone": "grid", "cuda_ray": False,
    "taichi_ray": False, "max_steps": 1024, "num_steps": 64, "upsample_steps": 32, "update_extra_interval": 16,
    "max_ray_batch": 4096, "bg_radius": 1.4, "density_activation": "exp", "density_thresh": 10,
    "blob_density": 5, "blob_radius": 0.2, "bound": 1, "dt_gamma": 0, "min_near": 0.01,
    "radius_range": [3.0, 3.5], "theta_range": [45, 105], "phi_range": [-180, 180], "fovy_range": [10, 30],
    "angle_overhead": 30, "angle_front": 60, "lambda_entropy": 1e-3, "lambda_opacity": 0, "lambda_orient": 1e-2,
    "lambda_tv": 0, "lambda_wd": 0, "lambda_mesh_normal": 0.5, "lambda_mesh_laplacian": 0.5, "lambda_rgb": 1000,
    "lambda_mask": 500, "lambda_normal": 0, "lambda_depth": 10, "lambda_2d_normal_smooth": 0,
    "lambda_3d_normal_smooth": 0, "save_mesh": False, "mcubes_resolution": 256, "decimate_target": 50000,
    "dmtet": False, "tet_grid_size": 128, "init_with": "", "lock_geo": False, "dmtet_reso_scale": 8,
    "W": 800, "H": 800, "radius": 5, "fovy": 20, "light_theta": 60, "light_phi": 0, "max_spp": 1,
}


def test_every_stable_dreamfusion_option_has_its_default():
    config = Config()
    resolved = resolve(Config(text="x"))  # --default_polar: None until resolved (None = estimate it when possible)
    for name, default in SPEC_DEFAULTS.items():
        assert getattr(resolved if name == "default_polar" else config, name) == default, name


def test_preset_O_and_O2():
    config = resolve(Config(text="x", O=True))
    assert config.fp16 and config.cuda_ray and config.backbone == "grid"
    config = resolve(Config(text="x", O2=True))
    assert config.fp16 and config.backbone == "vanilla" and config.progressive_level and not config.cuda_ray
    both = resolve(Config(text="x", O=True, O2=True))  # -O wins, as in stable-dreamfusion
    assert both.backbone == "grid" and both.cuda_ray


def test_IF_replaces_SD_and_disables_latent_warmup():
    config = resolve(Config(text="x", IF=True, guidance=["SD", "clip"]))
    assert config.guidance == ["IF", "clip"] and config.latent_iter_ratio == 0
    assert config.guidance_scale == 100  # unchanged by --IF


def test_exp_iters_default_to_the_run():
    config = resolve(Config(text="x", iters=500))
    assert (config.exp_start_iter, config.exp_end_iter) == (0, 500)


def test_exemplar_preset_frames_the_whole_scene_in_every_view():
    from dreamfusion.cameras import framed_extent

    config = resolve(Config(text="a hamburger", guidance=["exemplar"], radius_range=[3.2, 3.2]))
    fovy = config.fovy_range[0]
    assert config.fovy_range == [fovy, fovy] and config.default_fovy == fovy  # training, exemplar and test views
    assert framed_extent(3.2, fovy) == pytest.approx(1.05, abs=1e-3)  # the renderable ball + 5 %
    assert config.exemplar_condition == "camera" and config.guidance_scale == 7.5 and config.bg_radius == -1
    assert config.albedo_iter_ratio == 0.5  # half the steps shaded (docs/exemplar.md)
    nearer = resolve(Config(text="a hamburger", guidance=["exemplar"]))  # radius 3.0-3.5: framed from 3.0
    assert framed_extent(3.0, nearer.fovy_range[0]) >= 1.05 - 1e-3
    kept = resolve(Config(text="a hamburger", guidance=["exemplar"], dont_override_stuff=True))
    assert kept.fovy_range == [10.0, 30.0] and kept.default_fovy == 20.0 and kept.albedo_iter_ratio == 0


def _rgba(tmp_path, name="cat_rgba.png"):
    from PIL import Image

    path = tmp_path / name
    Image.new("RGBA", (8, 8), (255, 0, 0, 255)).save(path)
    return str(path)


def test_image_only_overrides(tmp_path):
    config = resolve(Config(image=_rgba(tmp_path)))
    assert config.guidance == ["zero123"] and config.guidance_scale == 5
    assert config.fovy_range == [20.0, 20.0] and config.lambda_3d_normal_smooth == 10
    assert config.lambda_entropy == 1 and config.lambda_orient == 1 and config.latent_iter_ratio == 0
    assert config.progressive_view and config.progressive_level and not config.jitter_pose
    assert len(config.references) == 1 and config.references[0].polar == 90


def test_offline_image_preset(tmp_path):
    config = resolve(Config(image=_rgba(tmp_path), zero123_ckpt="exemplar"))
    assert config.guidance == ["zero123"] and config.guidance_scale == 1 and config.zero123_grad_scale == "None"
    assert config.albedo_iter_ratio == 1 and config.lambda_orient == 0 and config.lambda_entropy == 1e-3
    kept = resolve(Config(image=_rgba(tmp_path), zero123_ckpt="exemplar", dont_override_stuff=True))
    assert kept.zero123_grad_scale == "angle" and kept.guidance_scale == 100


def test_image_and_text_overrides(tmp_path):
    config = resolve(Config(image=_rgba(tmp_path), text="a cat"))
    assert config.guidance == ["SD", "clip"] and config.guidance_scale == 10
    assert config.t_range == [0.2, 0.6] and config.known_view_interval == 2 and config.bg_radius == -1
    kept = resolve(Config(image=_rgba(tmp_path), text="a cat", dont_override_stuff=True, guidance_scale=30.0))
    assert kept.guidance_scale == 30 and kept.t_range == [0.02, 0.98] and kept.bg_radius == -1


def test_image_config_csv(tmp_path):
    first, second = _rgba(tmp_path, "a_rgba.png"), _rgba(tmp_path, "b_rgba.png")
    csv = tmp_path / "views.csv"
    csv.write_text("zero123_weight,radius,polar,azimuth,image\n1,3.0,80,10,a_rgba.png\n0.5,3.2,90,180,b_rgba.png\n")
    config = resolve(Config(image_config=str(csv)))
    assert [r.image for r in config.references] == [first, second]
    assert (config.default_radius, config.default_polar, config.default_azimuth) == (3.0, 80.0, 10.0)
    assert config.references[1].zero123_weight == 0.5


def test_dmtet_overrides():
    config = resolve(Config(text="x", dmtet=True))
    assert (config.h, config.w) == (512, 512) and config.t_range == [0.02, 0.5]
    assert config.latent_iter_ratio == 0 and config.known_view_scale == 1 and not config.progressive_view


@pytest.mark.parametrize("changes, message", [
    ({"theta_range": [100.0, 50.0]}, "greater than max"),
    ({"t_range": [0.5, 1.5]}, "t_range"),
    ({"radius_range": [0.5, 2.0]}, "larger than --bound"),
    ({"fovy_range": [0.0, 30.0]}, "fovy_range"),
    ({"guidance": ["SDXL"]}, "unknown model"),
    ({"iters": 0}, "iters"),
    ({"text": "   "}, "empty"),
    ({"ckpt": "nonsense"}, "ckpt"),
    ({"image": "missing_rgba.png"}, "not found"),
    ({"image": "photo.jpg"}, "_rgba.png"),
    ({"textureless_ratio": 1.5}, "textureless_ratio"),
    ({"normal_skip_weight": -0.1}, "normal_skip_weight"),
    ({"normal_skip_weight": 1.0}, "normal_skip_weight"),
    ({"dmtet_lr_decay": 0.0}, "dmtet_lr_decay"),
    ({"dmtet_lr_decay": 1.5}, "dmtet_lr_decay"),
    ({"dmtet_texture_fit": -1}, "dmtet_texture_fit"),
])
def test_bad_values_are_clear_errors(changes, message):
    with pytest.raises(UserError, match=message):
        resolve(dataclasses.replace(Config(text="x"), **changes))


def test_resolve_does_not_mutate_its_input():
    original = Config(text="x", O=True)
    resolve(original)
    assert original.fp16 is False and original.cuda_ray is False
