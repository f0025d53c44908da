"""The exemplar denoiser against brute-force posterior means (float64, explicit loops)."""

import math

import pytest
import torch

from dreamfusion.exemplar.objects import OBJECT_NAMES, VIEW_GROUPS
from dreamfusion.cameras import OrbitConfig, make_batch
from dreamfusion.exemplar.camera_kernel import CameraKernel
from dreamfusion.exemplar.prior import CAMERA_COLUMNS, SHADING_COLUMNS, ExemplarPrior, scaled_linear_alphas_cumprod
from dreamfusion.exemplar.views import ExemplarViewConfig, exemplar_cameras
from dreamfusion.exemplar.views import ExemplarCameras, ExemplarViews

R = 4  # image side of the tiny sets


def tiny_views(n_objects=2, groups=(0, 0, 1, 1, 1, 2), seed=0, binary_alpha=False, azimuth=None):
    """Random premultiplied exemplars sharing one camera list with the given view groups."""
    g = torch.Generator().manual_seed(seed)
    group = torch.tensor(groups)
    v = len(groups)
    azimuth = torch.zeros(v) if azimuth is None else torch.as_tensor(azimuth, dtype=torch.float32)
    cams = ExemplarCameras(polar=torch.zeros(v), azimuth=azimuth, radius=torch.zeros(v), fovy=torch.zeros(v),
                           group=group, light=torch.zeros(v, 3))
    views = {}
    for o in range(n_objects):
        alpha = torch.rand(v, 1, R, R, generator=g)
        if binary_alpha:
            alpha = (alpha > 0.4).float()
        colour = torch.rand(v, 3, R, R, generator=g) * alpha
        lambert = torch.rand(v, 1, R, R, generator=g) * alpha
        views[OBJECT_NAMES[o]] = ExemplarViews(OBJECT_NAMES[o], colour, alpha, cams, lambert, colour * lambert)
    return views


def with_flag(weights, flag=0.0):
    """Embedding rows from mixture weights [B, n_obj, n_groups], a view flag, no camera, albedo."""
    b = weights.shape[0]
    return torch.cat([weights.reshape(b, -1), torch.full((b, 1), flag), torch.zeros(b, CAMERA_COLUMNS),
                      torch.tensor([[0.0, 1.0]]).expand(b, 2)], 1)


def brute_force_x0(views, x_t, t, weights, bg_mean, bg_std):
    """E[x0 | x_t] with group mixture weights [n_obj, n_groups]: each view of group g gets w_g / n_g."""
    counts = torch.bincount(next(iter(views.values())).cameras.group, minlength=len(VIEW_GROUPS)).double()
    entries = []
    for o, vw in enumerate(views.values()):
        for i in range(vw.colour.shape[0]):
            g = int(vw.cameras.group[i])
            entries.append((vw.colour[i], vw.alpha[i], float(weights[o, g]) / float(counts[g])))
    return brute_force_weighted(entries, x_t, t, bg_mean, bg_std)


def brute_force_weighted(entries, x_t, t, bg_mean, bg_std):
    """E[x0 | x_t] by an explicit loop over (colour, alpha, prior weight) exemplars, with the
    background colour handled by an explicit 3P-dimensional Gaussian (no Woodbury algebra), all in
    float64."""
    abar = scaled_linear_alphas_cumprod().double()[t]
    s, var = abar.sqrt(), 1 - abar
    mu, tau2 = 2 * bg_mean - 1, 4 * bg_std**2
    opacity = x_t.shape[0] == 4
    x_alpha = x_t[3].double().reshape(-1) if opacity else None
    x = x_t[:3].double().reshape(-1)
    p_dim = x.numel()
    log_w, means = [], []
    for colour, alpha, weight in entries:
        if weight == 0:
            continue
        F_, A = colour.double(), alpha.double()
        m = (2 * F_ - A).reshape(-1)
        u_img = (1 - A).expand(3, R, R)
        U = torch.zeros(p_dim, 3, dtype=torch.float64)  # column c: background visibility on channel c
        for c in range(3):
            U[c * R * R:(c + 1) * R * R, c] = u_img[c].reshape(-1)
        prior_mean_x0 = m + U @ torch.full((3,), mu, dtype=torch.float64)
        cov = var * torch.eye(p_dim, dtype=torch.float64) + s * s * tau2 * U @ U.T
        dist = torch.distributions.MultivariateNormal(s * prior_mean_x0, covariance_matrix=cov)
        log_w.append(math.log(weight) + dist.log_prob(x))
        # E[b' | x_t, i] for the Gaussian b' ~ N(mu, tau2 I), then x0 = m + U b'.
        b = torch.full((3,), mu, dtype=torch.float64) + tau2 * s * U.T @ torch.linalg.solve(cov, x - s * prior_mean_x0)
        mean = m + U @ b
        if opacity:  # an independent Gaussian channel around the coverage 2A - 1
            cover = (2 * A - 1).reshape(-1)
            alpha_dist = torch.distributions.Normal(s * cover, var.sqrt())
            log_w[-1] = log_w[-1] + alpha_dist.log_prob(x_alpha).sum()
            mean = torch.cat([mean, cover])
        means.append(mean)
    p = torch.softmax(torch.stack(log_w), 0)
    return (p[:, None] * torch.stack(means)).sum(0).reshape(-1, R, R)


def test_alphas_cumprod_match_diffusers_scaled_linear():
    from diffusers import DDIMScheduler

    ref = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000).alphas_cumprod
    ours = scaled_linear_alphas_cumprod()
    assert ours.dtype == torch.float32 and ours.shape == (1000,)
    assert torch.equal(ours, ref.float())


@pytest.mark.parametrize("background", ["white", "random", 0.3])
def test_denoiser_equals_brute_force_posterior_mean(background):
    views = tiny_views()
    prior = ExemplarPrior(views, background=background)
    g = torch.Generator().manual_seed(1)
    weights = torch.rand(3, 2, len(VIEW_GROUPS), generator=g)
    weights[:, :, 3:] = 0  # groups without views
    weights[0, 1] = 0  # row 0 conditions on object 0 only
    weights /= weights.sum((1, 2), keepdim=True)
    t = torch.tensor([30, 400, 900])
    x_t = torch.randn(3, 3, R, R, generator=g) * 0.8
    bg_mean, bg_std = prior.background_mean, prior.background_std
    eps = prior.predict_noise(x_t, t, with_flag(weights))
    abar = prior.alphas_cumprod[t].double().view(-1, 1, 1, 1)
    for b in range(3):
        x0 = brute_force_x0(views, x_t[b], int(t[b]), weights[b], bg_mean, bg_std)
        expected_eps = (x_t[b].double() - abar[b].sqrt() * x0) / (1 - abar[b]).sqrt()
        torch.testing.assert_close(eps[b].double(), expected_eps, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("background", ["white", "random"])
def test_opacity_channel_equals_brute_force(background):
    views = tiny_views()
    prior = ExemplarPrior(views, background=background)
    g = torch.Generator().manual_seed(8)
    weights = torch.rand(2, 2, len(VIEW_GROUPS), generator=g)
    weights[:, :, 3:] = 0
    weights /= weights.sum((1, 2), keepdim=True)
    t = torch.tensor([60, 700])
    x_t = torch.randn(2, 4, R, R, generator=g)
    x0 = prior.predict_x0(x_t, t, with_flag(weights))
    assert x0.shape == (2, 4, R, R)
    for b in range(2):
        expected = brute_force_x0(views, x_t[b], int(t[b]), weights[b], prior.background_mean, prior.background_std)
        torch.testing.assert_close(x0[b].double(), expected, atol=1e-4, rtol=1e-4)


def test_chunking_does_not_change_the_result():
    views = tiny_views(groups=tuple([0] * 5 + [1] * 7 + [2] * 4))
    x_t = torch.randn(2, 3, R, R, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([100, 600])
    emb = torch.full((2, 2 * len(VIEW_GROUPS) + 1 + CAMERA_COLUMNS + SHADING_COLUMNS), 0.0)
    emb[:, [0, 1, 2, 5, 6, 7]] = 1 / 6
    emb[:, -1] = 1.0  # albedo, ambient 1
    big = ExemplarPrior(views, background="random").predict_noise(x_t, t, emb)
    small = ExemplarPrior(views, background="random", chunk_views=1).predict_noise(x_t, t, emb)
    torch.testing.assert_close(big, small, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("background", ["white", "random"])
def test_near_t0_returns_nearest_exemplar(background):
    views = tiny_views(binary_alpha=True)
    prior = ExemplarPrior(views, background=background)
    stack = torch.cat([v.over(1.0) for v in views.values()]) * 2 - 1  # every exemplar over white, [-1, 1]
    emb = prior.encode_text([""]).expand(stack.shape[0], -1)
    g = torch.Generator().manual_seed(3)
    t = torch.zeros(stack.shape[0], dtype=torch.long)
    abar = prior.alphas_cumprod[0]
    x_t = abar.sqrt() * stack + (1 - abar).sqrt() * torch.randn(stack.shape, generator=g)
    x0 = prior.predict_x0(x_t, t, emb)
    covered = torch.cat([v.alpha for v in views.values()]).expand_as(stack) > 0.5
    # Object pixels come from the nearest exemplar exactly. With a random-background prior the flat
    # background colour is a continuous unknown, estimated from the noisy background pixels (noise
    # std 0.03), so there it is only close.
    torch.testing.assert_close(x0[covered], stack[covered], atol=1e-3, rtol=0)
    torch.testing.assert_close(x0[~covered], stack[~covered], atol=1e-3 if background == "white" else 0.06, rtol=0)


def test_near_T_uniform_weights_give_the_mean_of_the_set():
    views = tiny_views(binary_alpha=True, groups=(0, 0, 1, 1))
    prior = ExemplarPrior(views, background="white")
    stack = torch.cat([v.over(1.0) for v in views.values()]) * 2 - 1  # [8, 3, R, R]
    mean = stack.mean(0)
    emb = prior.encode_text([""])
    g = torch.Generator().manual_seed(4)
    ratios = {}
    for t in (0, 999):
        abar = prior.alphas_cumprod[t]
        err = []
        for k in range(stack.shape[0]):
            for _ in range(4):
                x_t = abar.sqrt() * stack[k:k + 1] + (1 - abar).sqrt() * torch.randn(1, 3, R, R, generator=g)
                x0 = prior.predict_x0(x_t, torch.tensor([t]), emb)[0]
                err.append((x0 - mean).square().sum() / (stack[k] - mean).square().sum())
        ratios[t] = torch.stack(err).mean().item()
    assert ratios[0] == pytest.approx(1.0, abs=1e-3)  # no noise: the exemplar itself
    assert ratios[999] < 0.05  # almost pure noise: (nearly) the mean of all exemplars


def test_random_background_is_integrated_out():
    """An exemplar over an arbitrary flat colour is recognised, colour included, only when the
    background prior is random; a white-background prior explains it with the wrong background."""
    views = tiny_views(binary_alpha=True)
    first = next(iter(views.values()))
    colour = torch.tensor([0.2, 0.7, 0.4]).view(1, 3, 1, 1)
    target = (first.colour[2:3] + (1 - first.alpha[2:3]) * colour) * 2 - 1
    t = torch.tensor([50])
    abar = scaled_linear_alphas_cumprod()[50]
    x_t = abar.sqrt() * target + (1 - abar).sqrt() * torch.randn(target.shape, generator=torch.Generator().manual_seed(5))
    random_bg = ExemplarPrior(views, background="random")
    emb = random_bg.encode_text([""])
    x0 = random_bg.predict_x0(x_t, t, emb)
    # Only the 16 pixels' noise limits how well 3 colour values are inferred.
    torch.testing.assert_close(x0, target, atol=0.12, rtol=0)
    white = ExemplarPrior(views, background="white").predict_x0(x_t, t, emb)
    assert (white - target).abs().max() > 0.5


def test_encode_text_weights_and_interpolation():
    cams_groups = (0, 0, 1, 1, 1, 2)
    views = tiny_views(groups=cams_groups)
    prior = ExemplarPrior(views, view_kernel_deg=None)
    names = list(views)
    emb = prior.encode_text([f"{names[0]}, front view", names[0], "", f"{names[1]}, back view"])
    assert (emb[:, -CAMERA_COLUMNS - SHADING_COLUMNS:-SHADING_COLUMNS] == 0).all()  # no camera until with_cameras
    assert (emb[:, -SHADING_COLUMNS:] == torch.tensor([0.0, 1.0])).all()  # albedo until with_shading
    emb = emb[:, :-CAMERA_COLUMNS - SHADING_COLUMNS]
    flags, emb = emb[:, -1], emb[:, :-1].reshape(4, 2, -1)
    torch.testing.assert_close(flags, torch.tensor([1.0, 0.0, 0.0, 1.0]))
    counts = torch.tensor([2.0, 3.0, 1.0, 0.0, 0.0])
    torch.testing.assert_close(emb[0, 0], torch.tensor([1.0, 0, 0, 0, 0]))
    torch.testing.assert_close(emb[1, 0], counts / 6)  # uniform over the object's 6 views
    assert emb[1, 1].sum() == 0
    torch.testing.assert_close(emb[2], (counts / 12).expand(2, 5))  # uniform over all 12 views
    torch.testing.assert_close(emb[3, 1], torch.tensor([0.0, 0, 1, 0, 0]))
    # Interpolated embeddings are mixtures: the brute force with the mixed weights agrees.
    mix = 0.25 * emb[0] + 0.75 * emb[3]
    x_t = torch.randn(1, 3, R, R, generator=torch.Generator().manual_seed(6))
    x0 = prior.predict_x0(x_t, torch.tensor([300]), with_flag(mix[None], 1.0))
    expected = brute_force_x0(views, x_t[0], 300, mix, prior.background_mean, prior.background_std)
    torch.testing.assert_close(x0[0].double(), expected, atol=1e-4, rtol=1e-4)


def test_view_kernel_weights_follow_the_interpolated_azimuth():
    azimuth = torch.tensor([0.0, -20.0, 40.0, -80.0, 120.0, 170.0])  # groups: front front side side side back
    views = tiny_views(azimuth=azimuth)
    prior = ExemplarPrior(views, view_kernel_deg=15.0)
    name = list(views)[0]
    front, side, back, plain = prior.encode_text([f"{name}, front view", f"{name}, side view", f"{name}, back view", name])
    band = azimuth.abs()

    def expected(target):
        k = torch.exp(-0.5 * ((band - target) / 15.0) ** 2) * ((band - target).abs() <= 30.0)
        return k / k.sum()

    # The trainer's interpolation at azimuth 60°: r = 1/3 front + 2/3 side -> |φ*| = 60°.
    r = 1 - 60 / 90
    at_60 = prior.exemplar_weights((r * front + (1 - r) * side)[None])[0, 0]
    torch.testing.assert_close(at_60, expected(60.0))
    torch.testing.assert_close(prior.exemplar_weights(front[None])[0, 0], expected(0.0))
    at_150 = prior.exemplar_weights((2 / 3 * side + 1 / 3 * back)[None])[0, 0]  # |φ*| = 90 + 30
    torch.testing.assert_close(at_150, expected(120.0))
    # No view in the prompt: uniform over the object's views, the other object gets nothing.
    w = prior.exemplar_weights(plain[None])[0]
    torch.testing.assert_close(w[0], torch.full((6,), 1 / 6))
    assert w[1].sum() == 0
    # And the denoiser uses exactly these weights.
    x_t = torch.randn(1, 3, R, R, generator=torch.Generator().manual_seed(7))
    emb = (r * front + (1 - r) * side)[None]
    x0 = prior.predict_x0(x_t, torch.tensor([300]), emb)
    entries = [(views[name].colour[i], views[name].alpha[i], float(at_60[i])) for i in range(6)]
    expected_x0 = brute_force_weighted(entries, x_t[0], 300, prior.background_mean, prior.background_std)
    torch.testing.assert_close(x0[0].double(), expected_x0, atol=1e-4, rtol=1e-4)


def test_encode_images_resizes_and_maps_to_minus_one_one_differentiably():
    prior = ExemplarPrior(tiny_views())
    rgb = torch.full((2, 3, 16, 16), 0.25, requires_grad=True)
    lat = prior.encode_images(rgb)
    assert lat.shape == (2, 3, R, R)
    torch.testing.assert_close(lat, torch.full_like(lat, -0.5))
    lat.sum().backward()
    # d(2·mean of a 4×4 block)/d(pixel) = 2/16 for an area-like downsample.
    torch.testing.assert_close(rgb.grad.sum(), torch.tensor(2.0 * 2 * 3 * R * R))
    torch.testing.assert_close(prior.decode_latents(lat), torch.full_like(lat, 0.25))


def test_bad_embeddings_and_prompts_are_rejected():
    from dreamfusion.errors import UserError

    prior = ExemplarPrior(tiny_views())
    assert prior.embedding_dim == 2 * len(VIEW_GROUPS) + 1 + CAMERA_COLUMNS + SHADING_COLUMNS
    # A view group without exemplars (no overhead cameras in range) falls back to all the object's views.
    torch.testing.assert_close(prior.encode_text([f"{OBJECT_NAMES[0]}, overhead view"]), prior.encode_text([OBJECT_NAMES[0]]))
    with pytest.raises(UserError, match="does not hold"):
        prior.encode_text([OBJECT_NAMES[3]])
    with pytest.raises(ValueError):
        prior.predict_noise(torch.zeros(1, 3, R, R), torch.tensor([10]), torch.zeros(1, prior.embedding_dim))


def posed_views(polar, azimuth, n_objects=2):
    """tiny_views whose cameras sit at the given angles (radius 3.2, fovy 40)."""
    views = tiny_views(n_objects=n_objects, groups=tuple([0] * len(polar)))
    cams = next(iter(views.values())).cameras
    cams.polar, cams.azimuth = torch.tensor(polar, dtype=torch.float32), torch.tensor(azimuth, dtype=torch.float32)
    cams.radius, cams.fovy = torch.full((len(polar),), 3.2), torch.full((len(polar),), 40.0)
    return views


def camera_batch(polar, azimuth, radius=3.2, fovy=40.0):
    n = len(polar)
    return make_batch(OrbitConfig(), torch.tensor(polar), torch.tensor(azimuth), torch.full((n,), radius),
                      torch.full((n,), fovy), R, R)


def test_camera_kernel_width_is_the_exemplar_spacing():
    config = ExemplarViewConfig(count=384, polar_range=(30.0, 150.0), radius_range=(3.2, 3.2), fovy_range=(40.0, 40.0))
    kernel = CameraKernel.from_config(config)
    solid_angle = 2 * math.pi * (math.cos(math.radians(30)) - math.cos(math.radians(150)))
    assert kernel.angle_deg == pytest.approx(math.degrees(math.sqrt(solid_angle / 384)))  # 9.6°
    # Wherever the render is, the window (two widths) holds about 4π ≈ 12 exemplars.
    cams = exemplar_cameras(config)
    g = torch.Generator().manual_seed(0)
    polar = torch.rad2deg(torch.acos(torch.empty(200).uniform_(-0.7, 0.7, generator=g)))
    azimuth = torch.empty(200).uniform_(-180, 180, generator=g)
    w = kernel.weights(cams, polar, azimuth, torch.full((200,), 3.2), torch.full((200,), 40.0))
    in_window = (w > 0).sum(1).float()
    assert 9 <= in_window.mean() <= 16 and in_window.min() >= 3
    torch.testing.assert_close(w.sum(1), torch.ones(200))


def test_camera_weights_are_the_gaussian_window():
    views = posed_views([90.0, 90.0, 90.0, 60.0], [0.0, 5.0, 40.0, 0.0])
    kernel = CameraKernel(angle_deg=10.0, size_width=0.05)
    prior = ExemplarPrior(views, condition="camera", camera_kernel=kernel)
    name = list(views)[0]
    emb = prior.with_cameras(prior.encode_text(["", name]), camera_batch([90.0], [0.0]))
    camera = emb[:, -CAMERA_COLUMNS - SHADING_COLUMNS:-SHADING_COLUMNS]
    assert (camera == torch.tensor([1.0, 90.0, 0.0, 3.2, 40.0])).all()  # both rows get the camera
    w = prior.exemplar_weights(emb)
    k = torch.tensor([1.0, math.exp(-0.5 * 0.25), 0.0, 0.0])  # 0°, 5° (half a width), 40° and 30° are cut
    torch.testing.assert_close(w[1, 0], k / k.sum())
    assert w[1, 1].sum() == 0  # the other object gets nothing from a conditional prompt
    torch.testing.assert_close(w[0].sum(0) / w[0].sum(), k / k.sum())  # unconditional: same window, all objects
    # A render outside every window (from below) leans on its nearest exemplar rather than nothing.
    below = prior.exemplar_weights(prior.with_cameras(prior.encode_text([name]), camera_batch([170.0], [0.0])))
    assert below[0, 0].argmax() == 0 and torch.isfinite(below).all() and below.sum() == pytest.approx(1.0)


def test_camera_conditioning_tells_elevations_apart_and_view_prompts_do_not():
    """A noisy render of the view from above, taken by a camera below: view prompts ('front view')
    accept the view from above; the camera-conditioned prior insists on the view from below."""
    views = posed_views([60.0, 120.0], [0.0, 0.0], n_objects=1)
    name = list(views)[0]
    above = (views[name].colour[0] * 2 - 1)[None]  # exemplar 0 over black, in [-1, 1]
    t = torch.tensor([20])
    abar = scaled_linear_alphas_cumprod()[20]
    x_t = abar.sqrt() * above + (1 - abar).sqrt() * 0.01 * torch.randn(1, 3, R, R, generator=torch.Generator().manual_seed(3))
    view_prior = ExemplarPrior(views, background="black", view_kernel_deg=None)
    x0_view = view_prior.predict_x0(x_t, t, view_prior.encode_text([f"{name}, front view"]))
    torch.testing.assert_close(x0_view, above, atol=1e-3, rtol=0)
    cam_prior = ExemplarPrior(views, background="black", condition="camera",
                              camera_kernel=CameraKernel(angle_deg=10.0, size_width=0.05))
    emb = cam_prior.with_cameras(cam_prior.encode_text([name]), camera_batch([120.0], [0.0]))
    below = views[name].colour[1] * 2 - 1
    torch.testing.assert_close(cam_prior.predict_x0(x_t, t, emb), below[None], atol=1e-3, rtol=0)


def test_camera_windows_only_touch_their_exemplars():
    """The denoiser restricted to the window's exemplars equals the full computation."""
    polar = torch.linspace(40, 140, 12).tolist()
    views = posed_views(polar, [0.0] * 12)
    kernel = CameraKernel(angle_deg=15.0, size_width=0.05)
    prior = ExemplarPrior(views, condition="camera", camera_kernel=kernel)
    emb = prior.with_cameras(prior.encode_text(["", list(views)[0]]), camera_batch([75.0], [0.0]))
    x_t = torch.randn(2, 3, R, R, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([500, 500])
    pi = prior.exemplar_weights(emb)
    assert 0 < (pi > 0).any(0).any(0).sum() < 12
    entries = [(views[n].colour[i], views[n].alpha[i], float(pi[1, o, i])) for o, n in enumerate(views) for i in range(12)]
    expected = brute_force_weighted(entries, x_t[1], 500, prior.background_mean, prior.background_std)
    torch.testing.assert_close(prior.predict_x0(x_t, t, emb)[1].double(), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shading", ["lambertian", "textureless"])
def test_shaded_denoiser_equals_brute_force_on_the_shaded_exemplars(shading):
    """with_shading: the posterior is that of the exemplars shown in that shading and ambient:
    lambertian = a·albedo + (1-a)·albedo·lambert, textureless = the same factor in grey."""
    views = tiny_views()
    prior = ExemplarPrior(views, background="random", view_kernel_deg=None)
    name = list(views)[0]
    emb = prior.with_shading(prior.encode_text([name]), shading, 0.3)
    x_t = torch.randn(1, 3, R, R, generator=torch.Generator().manual_seed(5))
    x0 = prior.predict_x0(x_t, torch.tensor([200]), emb)
    v = views[name]
    shaded = 0.3 * v.colour + 0.7 * v.lambert_albedo if shading == "lambertian" \
        else (0.3 * v.alpha + 0.7 * v.lambert).expand(-1, 3, -1, -1)
    entries = [(shaded[i], v.alpha[i], 1 / 6) for i in range(6)]
    expected = brute_force_weighted(entries, x_t[0], 200, prior.background_mean, prior.background_std)
    torch.testing.assert_close(x0[0].double(), expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError):
        prior.predict_x0(x_t.expand(2, -1, -1, -1), torch.tensor([200, 200]),
                         torch.cat([emb, prior.encode_text([name])]))  # rows must agree on the shading
