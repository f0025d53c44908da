"""Sphere-traced ground truth against closed forms, and the benchmark metrics."""

import math

import pytest
import torch

from dreamfusion.cameras import OrbitConfig, make_batch
from dreamfusion.exemplar import sdf as S
from dreamfusion.exemplar.metrics import RingSpec, ViewRender, evaluation_cameras, ground_truth, psnr, score_views, silhouette_iou
from dreamfusion.exemplar.objects import AnalyticObject, Part, get_object
from dreamfusion.exemplar.render import render_cameras


def front_camera(size, fovy=20.0, radius=3.2, polar=90.0, azimuth=0.0):
    one = lambda v: torch.tensor([float(v)])  # noqa: E731
    return make_batch(OrbitConfig(), one(polar), one(azimuth), one(radius), one(fovy), size, size)


def test_red_cube_silhouette_matches_projected_area_and_colour():
    size, fovy, radius = 48, 20.0, 3.2
    out = render_cameras(get_object("a red cube"), front_camera(size, fovy, radius), supersample=4)
    # Head-on, the silhouette is the front face (z = 0.4): a square of half side f·0.4/(r - 0.4) px.
    focal = size / (2 * math.tan(math.radians(fovy) / 2))
    half = focal * 0.4 / (radius - 0.4)
    assert out.alpha.sum().item() == pytest.approx((2 * half) ** 2, rel=0.01)
    centre = size // 2
    torch.testing.assert_close(out.rgb[0, centre, centre], torch.tensor([0.85, 0.08, 0.08]))
    torch.testing.assert_close(out.rgb[0, 0, 0], torch.ones(3))  # white background
    assert out.alpha[0, 0, 0] == 0 and out.alpha[0, centre, centre] == 1
    assert out.depth[0, centre, centre].item() == pytest.approx(radius - 0.4, abs=2e-3)  # planar depth
    torch.testing.assert_close(out.normal[0, centre, centre], torch.tensor([0.0, 0.0, 1.0]), atol=1e-3, rtol=0)


def test_sphere_depth_matches_ray_sphere_intersection():
    ball = AnalyticObject("a ball", [Part("ball", lambda p: S.sphere(p, (0.1, 0.0, 0.0), 0.5), (0.2, 0.4, 0.6))])
    cams = front_camera(24, fovy=25.0, radius=3.0, polar=70.0, azimuth=30.0)
    out = render_cameras(ball, cams, supersample=1)
    rays_o, rays_d = cams.rays()
    o, d = rays_o[0] - torch.tensor([0.1, 0.0, 0.0]), rays_d[0]
    a, b, c = (d * d).sum(-1), 2 * (o * d).sum(-1), (o * o).sum(-1) - 0.25
    disc = b * b - 4 * a * c
    hit = disc > 0
    t = (-b - disc.clamp_min(0).sqrt()) / (2 * a)  # planar depth, rays_d has camera z = -1
    depth, alpha = out.depth[0].reshape(-1), out.alpha[0].reshape(-1)
    # Grazing rays may go either way; elsewhere the masks agree and depths match to the tolerance.
    firm = disc.abs() > 0.05 * a
    assert torch.equal((alpha > 0.5)[firm], hit[firm])
    torch.testing.assert_close(depth[hit & firm], t[hit & firm], atol=3e-3, rtol=0)


def test_lambertian_shading_follows_the_light():
    cams = front_camera(16)
    cube = get_object("a red cube")
    lit = render_cameras(cube, cams, supersample=1, shading="lambertian", light_dirs=torch.tensor([[0.0, 0.0, 1.0]]), ambient=0.0)
    dark = render_cameras(cube, cams, supersample=1, shading="lambertian", light_dirs=torch.tensor([[0.0, 0.0, -1.0]]), ambient=0.25)
    grey = render_cameras(cube, cams, supersample=1, shading="textureless", light_dirs=torch.tensor([[0.0, 0.6, 0.8]]), ambient=0.0)
    torch.testing.assert_close(lit.rgb[0, 8, 8], torch.tensor([0.85, 0.08, 0.08]))
    torch.testing.assert_close(dark.rgb[0, 8, 8], 0.25 * torch.tensor([0.85, 0.08, 0.08]))
    torch.testing.assert_close(grey.rgb[0, 8, 8], torch.full((3,), 0.8))


def test_snowman_nose_is_seen_on_the_left_from_the_plus_x_side():
    # A camera on +x looks along -x; with a proper frame, world +z is on the image's left.
    out = render_cameras(get_object("a snowman"), front_camera(64, fovy=30.0, azimuth=90.0), supersample=1)
    orange = (out.rgb[0, ..., 0] > 0.9) & (out.rgb[0, ..., 1] > 0.35) & (out.rgb[0, ..., 1] < 0.6) & (out.rgb[0, ..., 2] < 0.2)
    cols = orange.nonzero()[:, 1].float()
    assert cols.numel() > 3 and cols.mean() < 32 - 4


def test_metrics_closed_forms():
    a = torch.zeros(2, 4, 4)
    b = torch.zeros(2, 4, 4)
    a[0, :2] = 1.0  # 8 pixels
    b[0, 1:3] = 1.0  # 8 pixels, 4 shared
    iou = silhouette_iou(a, b)
    torch.testing.assert_close(iou, torch.tensor([4 / 12, 1.0]))  # second pair: both empty
    x = torch.zeros(1, 4, 4, 3)
    y = torch.full((1, 4, 4, 3), 0.1)  # MSE 0.01 -> 20 dB
    torch.testing.assert_close(psnr(x, y), torch.tensor([20.0]))
    mask = torch.zeros(1, 4, 4)
    mask[0, 0, 0] = 1
    y2 = y.clone()
    y2[0, 1:] = 1.0  # errors outside the mask are ignored
    torch.testing.assert_close(psnr(x, y2, mask), torch.tensor([20.0]))


def test_ground_truth_render_scores_perfectly_and_perturbations_lower_it():
    cams = evaluation_cameras(RingSpec(size=24, polars=(75.0,), azimuths=3))
    obj = get_object("a mushroom")
    gt = render_cameras(obj, cams, supersample=1)
    assert torch.allclose(silhouette_iou(gt.alpha, gt.alpha), torch.ones(3))
    farther = evaluation_cameras(RingSpec(size=24, polars=(75.0,), azimuths=3, radius=4.0))
    shrunk = render_cameras(obj, farther, supersample=1)  # farther: smaller
    iou = silhouette_iou(shrunk.alpha, gt.alpha)
    assert (iou < 0.95).all() and (iou > 0.5).all()
    assert (psnr(shrunk.rgb, gt.rgb) < 25).all()


def test_score_views_scores_the_truth_perfectly_and_a_wrong_object_badly():
    spec = RingSpec(size=16, polars=(60.0, 120.0), azimuths=2)
    cams = evaluation_cameras(spec)
    teapot = ground_truth(get_object("a teapot"), cams, use_cache=False)
    duck = ground_truth(get_object("a rubber duck"), cams, use_cache=False)
    good = score_views(lambda c: ViewRender(teapot.rgb, teapot.alpha, teapot.normal), teapot, cams)
    bad = score_views(lambda c: ViewRender(duck.rgb, duck.alpha, duck.normal), teapot, cams)
    assert good["all"]["iou"] == 1.0 and good["all"]["psnr"] >= 99.0
    assert bad["all"]["iou"] < 0.8 and bad["all"]["psnr"] < 20


def test_lambert_terms_give_the_shaded_images_for_any_ambient():
    """One trace gives albedo, max(0, n·l) and albedo·max(0, n·l); mixing them with an ambient a
    equals rendering lambertian / textureless with that ambient."""
    cams = evaluation_cameras(RingSpec(size=12, polars=(60.0,), azimuths=2))
    obj = get_object("a snowman")
    light = torch.nn.functional.normalize(torch.tensor([[0.3, 0.8, 0.5], [-0.2, 0.5, 0.8]]), dim=-1)
    terms = render_cameras(obj, cams, supersample=2, light_dirs=light, background=0.0)
    for a in (0.2, 0.7):
        lam = render_cameras(obj, cams, supersample=2, shading="lambertian", light_dirs=light, ambient=a, background=0.0)
        tex = render_cameras(obj, cams, supersample=2, shading="textureless", light_dirs=light, ambient=a, background=0.0)
        torch.testing.assert_close(a * terms.premultiplied + (1 - a) * terms.lambert_albedo, lam.premultiplied)
        torch.testing.assert_close((a * terms.alpha + (1 - a) * terms.lambert)[..., None].expand(-1, -1, -1, 3),
                                   tex.premultiplied)
