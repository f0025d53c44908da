"""Exemplar cameras, rendered view sets and their disk cache."""

import pytest
import torch

from dreamfusion.cameras import OrbitConfig, view_direction_class
from dreamfusion.errors import UserError
from dreamfusion.exemplar import views as V
from dreamfusion.exemplar.objects import VIEW_GROUPS, get_object
from dreamfusion.exemplar.prior import make_exemplar_prior

SMALL = V.ExemplarViewConfig(count=24, resolution=8, supersample=1)


def test_cameras_cover_the_ranges_sorted_by_group():
    cfg = V.ExemplarViewConfig(count=600, polar_range=(20.0, 170.0))
    cams = V.exemplar_cameras(cfg)
    assert len(cams) == 600
    assert cams.polar.min() >= 20 and cams.polar.max() <= 170
    assert cams.fovy.min() >= 10 and cams.fovy.max() <= 30
    assert cams.radius.min() >= 3 and cams.radius.max() <= 3.5
    expected = torch.tensor(V.CLASS_TO_GROUP)[view_direction_class(cams.polar, cams.azimuth)]
    assert torch.equal(cams.group, expected)
    assert torch.equal(cams.group, torch.sort(cams.group).values)  # contiguous groups
    counts = cams.group_counts()
    assert (counts > 0).all()  # overhead (<=30°) and bottom (>=150°) are inside this polar range
    # Quasi-random sampling is even: the front group holds its share of azimuth within a few views.
    in_band = (cams.polar > 30) & (cams.polar < 150)
    front_share = ((cams.group == 0) & in_band).sum() / in_band.sum()
    assert abs(front_share.item() - 60 / 360) < 0.02
    for sl, n in zip(cams.group_slices(), counts.tolist()):
        assert sl.stop - sl.start == n
    again = V.exemplar_cameras(cfg)
    assert torch.equal(again.azimuth, cams.azimuth)  # deterministic


def test_default_ranges_have_no_overhead_or_bottom_views():
    counts = V.exemplar_cameras(V.ExemplarViewConfig(count=384)).group_counts()
    assert counts[VIEW_GROUPS.index("overhead")] == 0 and counts[VIEW_GROUPS.index("bottom")] == 0
    assert counts.sum() == 384


def test_from_orbit_copies_the_training_ranges():
    orbit = OrbitConfig(radius_range=(2.0, 2.5), theta_range=(60.0, 90.0), fovy_range=(15.0, 25.0))
    cfg = V.ExemplarViewConfig.from_orbit(orbit, count=10)
    assert cfg.radius_range == (2.0, 2.5) and cfg.polar_range == (60.0, 90.0) and cfg.fovy_range == (15.0, 25.0)
    assert cfg.count == 10


def test_views_are_cached_and_reloaded(tmp_path, monkeypatch):
    obj = get_object("a blue torus")
    first = V.load_exemplar_views(obj, SMALL, tmp_path)
    path = V.cache_path(obj, SMALL, tmp_path)
    assert path.is_file()
    assert first.colour.shape == (24, 3, 8, 8) and first.alpha.shape == (24, 1, 8, 8)
    # Premultiplied colour never exceeds coverage; the torus is blue.
    assert (first.colour <= first.alpha + 1e-3).all()
    covered = first.alpha[:, 0] > 0.99
    torch.testing.assert_close(first.colour.permute(0, 2, 3, 1)[covered].mean(0), torch.tensor([0.10, 0.25, 0.85]), atol=2e-3, rtol=0)

    def no_render(*args, **kwargs):
        raise AssertionError("rendered again instead of using the cache")

    monkeypatch.setattr(V, "render_exemplar_views", no_render)
    second = V.load_exemplar_views(obj, SMALL, tmp_path)
    assert torch.equal(second.colour, first.colour) and torch.equal(second.alpha, first.alpha)
    other = V.ExemplarViewConfig(count=24, resolution=8, supersample=1, seed=1)
    assert V.cache_path(obj, other, tmp_path) != path
    assert V.cache_path(get_object("a red cube"), SMALL, tmp_path) != path


def test_corrupt_cache_file_is_rebuilt(tmp_path):
    obj = get_object("a red cube")
    path = V.cache_path(obj, SMALL, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a torch file")
    views = V.load_exemplar_views(obj, SMALL, tmp_path)
    assert views.alpha.sum() > 0
    assert torch.equal(V.load_exemplar_views(obj, SMALL, tmp_path).alpha, views.alpha)


def test_factory_builds_a_working_prior(tmp_path):
    prior = make_exemplar_prior("a red cube, front view", resolution=8, count=24, supersample=1, cache_dir=tmp_path,
                                objects=["a red cube", "a blue torus"])
    assert prior.object_names == ("a red cube", "a blue torus")
    assert len(list(tmp_path.glob("*.pt"))) == 2  # both objects rendered and cached
    emb = prior.encode_text(["", "a red cube, front view"])
    cube = prior.views("a red cube").over(0.5)[:1] * 2 - 1  # first view is a front view
    t = torch.tensor([0, 0])
    x0 = prior.predict_x0(cube.expand(2, -1, -1, -1), t, emb)
    torch.testing.assert_close(x0, cube.expand(2, -1, -1, -1), atol=2e-2, rtol=0)
    with pytest.raises(UserError, match="known prompts"):
        make_exemplar_prior("a cat", cache_dir=tmp_path)


def test_float32_posterior_matches_float64_on_real_renders(tmp_path):
    """The inner-product expansion in float32 is accurate enough at full image size (P = 3·32²)."""
    config = V.ExemplarViewConfig(count=24, resolution=32, supersample=1)
    views = {name: V.load_exemplar_views(get_object(name), config, tmp_path) for name in ("a snowman", "a teapot")}
    from dreamfusion.exemplar.prior import ExemplarPrior

    p32 = ExemplarPrior(views)
    p64 = ExemplarPrior(views, dtype=torch.float64)
    target = torch.cat([views["a teapot"].over(0.3)[5:6], views["a teapot"].alpha[5:6]], 1) * 2 - 1
    emb = p32.encode_text(["", "a teapot", "a teapot, side view", "a snowman, back view"])
    g = torch.Generator().manual_seed(0)
    for t in (20, 200, 600, 980):
        abar = p32.alphas_cumprod[t]
        x_t = abar.sqrt() * target + (1 - abar).sqrt() * torch.randn(4, 4, 32, 32, generator=g)
        tt = torch.full((4,), t)
        torch.testing.assert_close(p32.predict_noise(x_t, tt, emb), p64.predict_noise(x_t.double(), tt, emb).float(),
                                   atol=2e-3, rtol=0)
