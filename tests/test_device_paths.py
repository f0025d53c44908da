"""The device code paths against the CPU: hash grid, field, volume renderer and occupancy grid,
rasterizer, SDS with the tiny random Stable Diffusion, fp16 autocast with a GradScaler, vram_O
(sequential CPU offload) and `-O` training steps.

The device under test is the ``device`` fixture (tests/conftest.py): ``DREAMFUSION_TEST_DEVICE``,
``cpu`` by default, where each test compares the CPU with itself and so only proves that the code
runs; benchmarks/gpu_check.sh sets ``cuda`` on a GPU machine. Comparisons allow for what differs
legitimately on a GPU: reordered atomic sums (hash-grid backward), FMA contraction (a marched
sample on a cell face), fp16 instead of the CPU's bf16 under autocast; TF32, which cuDNN uses for
float32 convolutions by default, is switched off where float32 UNet/VAE outputs are compared.
"""

from __future__ import annotations

import contextlib
import copy
import math

import pytest
import torch
from analytic_scenes import orbit_rays

from dreamfusion.encoders import HashGridEncoder
from dreamfusion.fields import FieldConfig, NeRFField
from dreamfusion.renderers import RenderConfig, VolumeRenderer

SMALL = dict(num_levels=4, base_resolution=8, desired_resolution=64, log2_hashmap_size=12)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """‖actual − expected‖ / ‖expected‖ over all elements, on the CPU in float64."""
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    assert a.shape == e.shape, (a.shape, e.shape)
    return float((a - e).norm() / e.norm().clamp_min(1e-30))


def assert_mostly_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, share: float = 0.99,
                        max_error: float = 0.05) -> None:
    """All but ``1 - share`` of the elements within ``atol``, none beyond ``max_error``: a marched
    sample within one ulp of a cell face (FMA contraction on the GPU) may be in or out."""
    error = (actual.detach().float().cpu() - expected.detach().float().cpu()).abs()
    assert (error <= atol).float().mean() >= share, f"{(error > atol).float().mean():.2%} beyond {atol}"
    assert error.max() <= max_error, f"max error {error.max():.3g}"


@contextlib.contextmanager
def exact_float32():
    """No TF32 in cuDNN convolutions or CUDA matmuls (PyTorch allows it in convolutions by
    default), so that float32 on the GPU compares with the CPU to float32 rounding."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def autocast_dtype(device: torch.device) -> torch.dtype:
    """What the trainer's mixed precision uses on CUDA (fp16); bf16 stands in for it on the CPU."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def both(device: torch.device) -> tuple[torch.device, torch.device]:
    return torch.device("cpu"), device


# --------------------------------------------------------------------------------------------------
# Hash grid and field
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["dense+hashed", "int64 index math"])
def test_hash_grid_forward_and_gradients_match_cpu(device, layout):
    kwargs = dict(num_levels=8, base_resolution=8, desired_resolution=512, log2_hashmap_size=14)
    if layout == "int64 index math":
        kwargs = dict(num_levels=2, base_resolution=4096, desired_resolution=8192, log2_hashmap_size=20)
    torch.manual_seed(0)
    encoder = HashGridEncoder(init_std=1.0, **kwargs)
    assert encoder.wide_indices == (layout == "int64 index math")
    x = torch.rand(4096, 3) * 2 - 1
    weight = torch.randn(4096, encoder.output_dim)
    results = []
    for dev in both(device):
        enc = copy.deepcopy(encoder).to(dev)
        out = enc(x.to(dev))
        assert out.device == dev and out.dtype == torch.float32
        (out * weight.to(dev)).sum().backward()
        xr = x.to(dev).requires_grad_(True)  # the plain-autograd path (positions differentiable)
        (enc(xr) * weight.to(dev)).sum().backward()
        results.append((out, enc.embeddings.grad, xr.grad))
    (out_cpu, table_cpu, x_cpu), (out_dev, table_dev, x_dev) = results
    torch.testing.assert_close(out_dev.cpu(), out_cpu, atol=1e-5, rtol=1e-5)
    assert relative_error(table_dev, table_cpu) < 1e-5
    assert relative_error(x_dev, x_cpu) < 1e-4


@pytest.mark.parametrize("backbone", ["grid", "vanilla"])
@pytest.mark.parametrize("shading", ["albedo", "lambertian"])
def test_field_forward_normals_and_gradients_match_cpu(device, backbone, shading):
    torch.manual_seed(0)
    field = NeRFField(FieldConfig(backbone=backbone, **SMALL))
    g = torch.Generator().manual_seed(1)
    # inside |x| < 0.45 the density blob dominates, so normals are well defined (not init noise)
    dirs = torch.nn.functional.normalize(torch.randn(2048, 3, generator=g), dim=-1)
    x = dirs * (0.05 + 0.4 * torch.rand(2048, 1, generator=g))
    view = torch.nn.functional.normalize(torch.randn(2048, 3, generator=g), dim=-1)
    light = torch.nn.functional.normalize(torch.tensor([0.3, 0.8, 0.5]), dim=0)
    results = []
    for dev in both(device):
        f = copy.deepcopy(field).to(dev)
        sigma, rgb, normal = f(x.to(dev), view.to(dev), light.to(dev), ambient_ratio=0.3, shading=shading)
        background = f.background(view.to(dev))
        (1e-3 * sigma.sum() + rgb.sum() + background.sum()).backward()
        grads = {name: p.grad for name, p in f.named_parameters() if p.grad is not None}
        results.append((sigma, rgb, normal, background, grads))
    (s0, c0, n0, b0, g0), (s1, c1, n1, b1, g1) = results
    torch.testing.assert_close(s1.cpu(), s0, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(c1.cpu(), c0, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b1.cpu(), b0, rtol=1e-4, atol=1e-5)
    if shading == "albedo":
        assert n0 is None and n1 is None
    else:
        torch.testing.assert_close(n1.cpu(), n0, rtol=0, atol=1e-3)
    assert g0.keys() == g1.keys() and g0
    for name in g0:
        assert relative_error(g1[name], g0[name]) < 1e-3, name


def test_field_under_autocast_with_grad_scaler(device):
    """The trainer's fp16 path: density in float32 (no exp overflow), colours and gradients finite
    and close to float32, and the GradScaler's scale reaches the hash table exactly."""
    torch.manual_seed(0)
    field = NeRFField(FieldConfig(**SMALL)).to(device)
    # 512 points: 7 x 512 rows (finite-difference normals) stay below the CPU's chunked MLP, which
    # runs in float32 whatever autocast says, so bf16 really runs there. Inside |x| < 0.35 the blob's
    # gradient dwarfs the half-precision noise of the finite differences.
    view = torch.nn.functional.normalize(torch.randn(512, 3), dim=-1)
    x = (view * 0.35 * torch.rand(512, 1)).to(device)
    view = view.to(device)
    light = torch.tensor([0.0, 0.0, 1.0], device=device)

    def loss_of(f):
        sigma, rgb, _ = f(x, view, light, ambient_ratio=0.2, shading="lambertian")
        return sigma, rgb, 1e-3 * sigma.float().mean() + rgb.float().mean()

    sigma32, rgb32, loss32 = loss_of(field)
    loss32.backward()
    reference = field.encoder.embeddings.grad.clone()
    field.zero_grad(set_to_none=True)
    scale = 2.0**12
    scaler = torch.amp.GradScaler(device.type, init_scale=scale)
    optimizer = torch.optim.SGD(field.parameters(), lr=0.0)
    with torch.autocast(device.type, dtype=autocast_dtype(device)):
        sigma, rgb, loss = loss_of(field)
    assert sigma.dtype == torch.float32 and torch.isfinite(sigma).all() and torch.isfinite(rgb).all()
    assert relative_error(sigma, sigma32) < 2e-2 and relative_error(rgb, rgb32) < 2e-2
    scaler.scale(loss).backward()
    scaled = field.encoder.embeddings.grad.clone()
    scaler.unscale_(optimizer)
    torch.testing.assert_close(field.encoder.embeddings.grad * scale, scaled, rtol=1e-6, atol=0)
    assert torch.isfinite(field.encoder.embeddings.grad).all()
    assert relative_error(field.encoder.embeddings.grad, reference) < 5e-2


# --------------------------------------------------------------------------------------------------
# Volume renderer and occupancy grid
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cuda_ray", [False, True])
def test_volume_renderer_matches_cpu(device, cuda_ray):
    """Both paths (uniform + importance samples; occupancy-grid marching with a grid built on the
    CPU and copied over as state), in training (gradients) and inference (no grad) mode."""
    torch.manual_seed(0)
    field = NeRFField(FieldConfig(bg_radius=-1, **SMALL))
    config = RenderConfig(num_steps=32, upsample_steps=16, cuda_ray=cuda_ray, grid_size=32, max_steps=256)
    renderer = VolumeRenderer(field, config)
    if cuda_ray:
        renderer.update_occupancy(force=True)
        assert 0 < renderer.occupancy.occupied.float().mean() < 0.5  # the blob, not the cube
    rays_o, rays_d = orbit_rays([80.0, 100.0], [0.0, 90.0], size=16)
    light = torch.nn.functional.normalize(torch.tensor([0.2, 0.9, 0.4]), dim=0)
    results = []
    for dev in both(device):
        r = copy.deepcopy(renderer).to(dev)
        o, d = rays_o.to(dev), rays_d.to(dev)
        out = r(o, d, light_d=light.to(dev), ambient_ratio=0.3, shading="lambertian", bg_color=0.0,
                need_orient_loss=True)
        (out["image"].square().sum() + out["loss_orient"]).backward()
        with torch.no_grad():
            infer = r(o, d, light_d=light.to(dev), ambient_ratio=0.3, shading="lambertian", bg_color=0.0)
        results.append((out, infer, r.field.encoder.embeddings.grad))
    (out0, infer0, grad0), (out1, infer1, grad1) = results
    for key in ("image", "depth", "weights_sum"):
        assert_mostly_close(out1[key], out0[key], atol=2e-4)
        assert_mostly_close(infer1[key], infer0[key], atol=2e-4)
    assert out0["weights_sum"].max() > 0.5  # something was rendered
    assert relative_error(out1["loss_orient"], out0["loss_orient"]) < 5e-3
    assert relative_error(grad1, grad0) < 5e-3


def test_occupancy_grid_update_and_random_marching_on_device(device):
    """The update runs on the device under autocast (as the trainer calls it) and finds the same
    cells as on the CPU up to its random jitter; perturbed marching takes a device generator."""
    torch.manual_seed(0)
    field = NeRFField(FieldConfig(bg_radius=-1, **SMALL))
    grids = []
    for dev in both(device):
        r = VolumeRenderer(copy.deepcopy(field), RenderConfig(cuda_ray=True, grid_size=48)).to(dev)
        with torch.autocast(dev.type, dtype=autocast_dtype(dev)):
            assert r.update_occupancy(force=True)
        grid = r.occupancy
        assert grid.density_grid.device == dev and grid.density_grid.dtype == torch.float32
        assert torch.isfinite(grid.density_grid).all()
        grids.append(grid)
    cpu, dev_grid = grids
    occupied_cpu, occupied_dev = cpu.occupied.float().mean().item(), dev_grid.occupied.float().mean().item()
    assert 0 < occupied_cpu < 0.5 and abs(occupied_dev - occupied_cpu) < 0.1 * occupied_cpu
    assert (cpu.occupied == dev_grid.occupied.cpu()).float().mean() > 0.97
    assert math.isclose(float(dev_grid.mean_density), float(cpu.mean_density), rel_tol=0.05)

    generator = torch.Generator(device=device).manual_seed(0)
    r = VolumeRenderer(copy.deepcopy(field), RenderConfig(cuda_ray=True, grid_size=48)).to(device)
    r.occupancy.load_state_dict(dev_grid.state_dict())
    rays_o, rays_d = (t.to(device) for t in orbit_rays([90.0], [30.0], size=16))
    out = r(rays_o, rays_d, perturb=True, generator=generator, shading="textureless", ambient_ratio=0.2,
            light_d=torch.tensor([0.0, 1.0, 0.0], device=device), bg_color=0.0, need_distortion_loss=True)
    out["image"].mean().backward()
    assert torch.isfinite(out["image"]).all() and torch.isfinite(out["loss_distortion"])
    assert r.field.encoder.embeddings.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------------
# Rasterizer
# --------------------------------------------------------------------------------------------------


def uv_sphere(rings: int = 12, segments: int = 16, radius: float = 0.8) -> tuple[torch.Tensor, torch.Tensor]:
    """A closed latitude/longitude sphere: vertices [V, 3], faces [F, 3] (poles as fans)."""
    polar = torch.linspace(0, math.pi, rings + 1)[1:-1]
    azimuth = torch.arange(segments) * (2 * math.pi / segments)
    p, a = torch.meshgrid(polar, azimuth, indexing="ij")
    ring = torch.stack([p.sin() * a.cos(), p.cos(), p.sin() * a.sin()], -1).reshape(-1, 3)
    vertices = torch.cat([ring, torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])]) * radius
    top, bottom, faces = len(ring), len(ring) + 1, []
    for r in range(rings - 1):
        for s in range(segments):
            i, j = r * segments + s, r * segments + (s + 1) % segments
            if r == 0:
                faces.append([top, j, i])
            if r == rings - 2:
                faces.append([bottom, i, j])
            else:
                faces += [[i, j, j + segments], [i, j + segments, i + segments]]
    return vertices, torch.tensor(faces)


def test_rasterizer_and_mesh_render_match_cpu(device):
    from dreamfusion.cameras import intrinsics_from_fovy, look_at
    from dreamfusion.renderers.mesh import mvp_from_c2w, render_mesh

    vertices, faces = uv_sphere()
    colours = torch.rand(len(vertices), 3, generator=torch.Generator().manual_seed(0))
    c2w = look_at(torch.tensor([[0.0, 0.5, 3.0], [2.5, 0.2, 1.0]]))
    mvp = mvp_from_c2w(c2w, intrinsics_from_fovy(40.0, 48, 48), 48, 48)
    results = []
    for dev in both(device):
        v = vertices.to(dev).requires_grad_(True)
        c = colours.to(dev).requires_grad_(True)
        out = render_mesh(v, faces.to(dev), mvp.to(dev), 48, 48, vertex_colors=c, backend="torch")
        (out["rgb"].square().sum() + out["depth"].sum()).backward()
        results.append((out, v.grad, c.grad))
    (out0, v0, c0), (out1, v1, c1) = results
    assert 0.1 < out0["mask"].float().mean() < 0.9
    assert (out1["triangle_index"].cpu() == out0["triangle_index"]).float().mean() > 0.995
    same = out1["triangle_index"].cpu() == out0["triangle_index"]
    torch.testing.assert_close(out1["depth"].detach().cpu()[same], out0["depth"].detach()[same], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out1["rgb"].detach().cpu()[same], out0["rgb"].detach()[same], atol=1e-4, rtol=1e-4)
    assert relative_error(c1, c0) < 1e-2 and relative_error(v1, v0) < 5e-2


# --------------------------------------------------------------------------------------------------
# SDS with the tiny random Stable Diffusion: fp32, fp16 + GradScaler, vram_O
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sd_folder(tmp_path_factory):
    from dreamfusion.guidance.tiny_models import save_tiny_stable_diffusion

    return save_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny-sd"), seed=0)


def sds_inputs(prior, batch: int = 2):
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(batch, 4, 8, 8, generator=g)
    noise = torch.randn(batch, 4, 8, 8, generator=g)
    t = torch.tensor([137, 742][:batch])
    uncond, cond = prior.encode_text(["", "a cat"]).cpu()
    embeddings = torch.stack([uncond] * batch + [cond] * batch)
    return latents, noise, t, embeddings


def test_sds_gradient_on_device_matches_cpu(device):
    from dreamfusion.guidance.sds import ScoreDistillation, SDSConfig
    from dreamfusion.guidance.tiny_models import tiny_stable_diffusion

    grads = []
    for dev in both(device):
        prior = tiny_stable_diffusion(device=dev, seed=0)
        assert prior.alphas_cumprod.device == dev
        latents, noise, t, embeddings = sds_inputs(prior)
        z = latents.to(dev).requires_grad_(True)
        sds = ScoreDistillation(prior, SDSConfig(guidance_scale=7.5, loss_form="specify"))
        with exact_float32():
            out = sds.step_latents(z, embeddings.to(dev), t=t.to(dev), noise=noise.to(dev))
        out.loss.backward()
        assert out.grad.device == dev and torch.equal(z.grad, out.grad)
        grads.append(out.grad)
    assert grads[0].abs().max() > 1e-2
    assert relative_error(grads[1], grads[0]) < 1e-3


def test_sds_image_gradient_is_the_vae_vjp_on_device(device):
    from dreamfusion.guidance.sds import ScoreDistillation, SDSConfig
    from dreamfusion.guidance.tiny_models import tiny_stable_diffusion

    prior = tiny_stable_diffusion(device=device, seed=0)
    _, noise, t, embeddings = sds_inputs(prior, batch=1)
    rgb = torch.rand(1, 3, 32, 32, device=device, requires_grad=True)  # resized to 64 inside
    sds = ScoreDistillation(prior, SDSConfig(loss_form="specify"))
    torch.manual_seed(3)  # the VAE posterior sample draws from the global (device) RNG
    out = sds.step(rgb, embeddings.to(device), t=t.to(device), noise=noise.to(device))
    out.loss.backward()
    rgb2 = rgb.detach().clone().requires_grad_(True)
    torch.manual_seed(3)
    latents = prior.encode_images(rgb2)
    torch.testing.assert_close(latents.detach(), out.latents)
    (want,) = torch.autograd.grad(latents, rgb2, out.grad)
    torch.testing.assert_close(rgb.grad, want)
    assert want.abs().max() > 0


def test_fp16_prior_and_grad_scaler_reach_the_injected_gradient(device, tiny_sd_folder):
    """fp16 weights on CUDA (float32 stays on the CPU), ε̂ close to float32, and the scaler's
    power-of-two scale multiplies the injected gradient exactly (SpecifyGradient's float32 dummy)."""
    from dreamfusion.guidance.sds import ScoreDistillation, SDSConfig
    from dreamfusion.guidance.stable_diffusion import StableDiffusionPrior

    full = StableDiffusionPrior.from_pretrained(str(tiny_sd_folder), device)
    half = StableDiffusionPrior.from_pretrained(str(tiny_sd_folder), device, fp16=True)
    assert half.unet.dtype == (torch.float16 if device.type == "cuda" else torch.float32)
    latents, noise, t, embeddings = sds_inputs(full, batch=1)
    x = latents.to(device)
    with exact_float32():
        eps_full = full.predict_noise(x, t.to(device), embeddings[1:].to(device))
    eps_half = half.predict_noise(x, t.to(device), embeddings[1:].to(device))
    assert eps_half.dtype == torch.float32 and relative_error(eps_half, eps_full) < 2e-2

    scale = 2.0**16  # GradScaler's default start
    param = torch.nn.Parameter(x.clone())
    optimizer = torch.optim.SGD([param], lr=0.0)
    scaler = torch.amp.GradScaler(device.type, init_scale=scale)
    sds = ScoreDistillation(half, SDSConfig(guidance_scale=100, loss_form="specify"))
    with torch.autocast(device.type, dtype=autocast_dtype(device)):
        out = sds.step_latents(param * 1.0, embeddings.to(device), t=t.to(device), noise=noise.to(device))
    scaler.scale(out.loss).backward()
    assert torch.isfinite(param.grad).all()
    assert torch.equal(param.grad, out.grad * scale)
    scaler.unscale_(optimizer)
    assert torch.equal(param.grad, out.grad)


def test_vram_O_offloads_and_keeps_outputs_and_gradients(device, tiny_sd_folder):
    """--vram_O: attention/VAE slicing and, on CUDA, sequential CPU offload (weights leave the GPU
    between calls); noise predictions and the gradient through the offloaded VAE are unchanged."""
    from dreamfusion.guidance.sds import ScoreDistillation, SDSConfig
    from dreamfusion.guidance.stable_diffusion import StableDiffusionPrior

    plain = StableDiffusionPrior.from_pretrained(str(tiny_sd_folder), device, fp16=True)
    low = StableDiffusionPrior.from_pretrained(str(tiny_sd_folder), device, fp16=True, vram_O=True)
    assert low.device == device
    if device.type == "cuda":
        assert all(p.device.type != "cuda" for p in low.unet.parameters())  # offloaded between calls
    latents, noise, t, embeddings = sds_inputs(plain, batch=1)
    x, tt = latents.to(device), t.to(device)
    eps_plain = plain.predict_noise(x, tt, embeddings[1:].to(device))
    eps_low = low.predict_noise(x, tt, embeddings[1:].to(device))
    assert relative_error(eps_low, eps_plain) < 2e-2
    rgb_grads = []
    for prior in (plain, low):
        rgb = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5)).to(device).requires_grad_(True)
        torch.manual_seed(3)
        out = ScoreDistillation(prior, SDSConfig(guidance_scale=7.5, loss_form="specify")).step(
            rgb, embeddings.to(device), t=tt, noise=noise.to(device))
        out.loss.backward()
        assert rgb.grad.device == device and torch.isfinite(rgb.grad).all() and rgb.grad.abs().max() > 0
        rgb_grads.append(rgb.grad)
    assert relative_error(rgb_grads[1], rgb_grads[0]) < 5e-2


# --------------------------------------------------------------------------------------------------
# Training steps at -O
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [["-O"], ["-O", "--vram_O"]], ids=["O", "O+vram_O"])
def test_training_steps_at_O(device, tmp_path, tiny_sd_folder, extra):
    """Three steps of the real Trainer (latent warm-up, then RGB through the VAE), occupancy grid,
    mixed precision on CUDA: finite losses, finite weights that moved (or, under fp16, steps the
    GradScaler skipped for overflowing gradients, as it does at its 2^16 start)."""
    from dreamfusion.cli import parse_config
    from dreamfusion.training.entry import build_trainer

    config = parse_config([
        "--text", "a hamburger", "--workspace", str(tmp_path / "ws"), "--hf_key", str(tiny_sd_folder),
        "--seed", "0", "--iters", "10", "--dataset_size_train", "10", "--w", "16", "--h", "16",
        "--W", "16", "--H", "16", "--log2_hashmap_size", "12", "--grid_size", "32", "--max_steps", "256",
        "--device", str(device), "--ckpt", "scratch", *extra])
    assert config.cuda_ray and config.fp16
    trainer = build_trainer(config, device, progress_bar=False, log_echo=False)
    try:
        assert trainer.amp == (device.type == "cuda") and trainer.scene.uses_occupancy_grid
        before = [p.detach().clone() for p in trainer.scene.parameters()]
        for step in (1, 2, 3):  # step 1: normal+alpha latents (warm-up); 2, 3: RGB through the VAE
            terms = trainer.optimize(step)
            assert all(math.isfinite(v) for v in terms.values()), terms
        after = list(trainer.scene.parameters())
        assert all(p.device.type == device.type and torch.isfinite(p).all() for p in after)
        moved = any(not torch.equal(a.detach(), b) for a, b in zip(after, before))
        assert moved or (trainer.amp and trainer.scaler.get_scale() < 2.0**16)
        assert trainer.scene.renderer.occupancy.density_grid.device.type == device.type
    finally:
        trainer.close()
