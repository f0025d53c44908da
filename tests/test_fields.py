"""NeRFField: density blob, analytic normals, shading modes, background, parameter groups."""

import math

import pytest
import torch

from dreamfusion.errors import UserError
from dreamfusion.fields import FieldConfig, NeRFField

SMALL = dict(num_levels=4, base_resolution=8, desired_resolution=64, log2_hashmap_size=12)


def blob_only(field: NeRFField) -> NeRFField:
    """Zero the last layer: raw density 0, so sigma = act(blob(x)) and albedo = sigmoid(0) = 0.5."""
    last = field.sigma_net.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    return field


def test_density_blob_exp_and_softplus():
    x = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.2, 0.0], [0.5, 0.5, 0.5]])
    d2 = (x * x).sum(-1)
    f = blob_only(NeRFField(FieldConfig(**SMALL)))
    out = f.density(x)
    torch.testing.assert_close(out["sigma"], torch.exp(5.0 * torch.exp(-d2 / (2 * 0.2**2))))
    assert math.isclose(out["sigma"][0].item(), math.exp(5.0), rel_tol=1e-5)  # e^5 ~ 148 at the centre
    torch.testing.assert_close(out["albedo"], torch.full((3, 3), 0.5))
    g = blob_only(NeRFField(FieldConfig(density_activation="softplus", blob_density=5.0, blob_radius=0.5, **SMALL)))
    expected = torch.nn.functional.softplus(5.0 * (1 - d2.sqrt() / 0.5))
    torch.testing.assert_close(g.density(x)["sigma"], expected)


@pytest.mark.parametrize("backbone", ["grid", "vanilla"])
def test_normals_of_blob_point_outward(backbone):
    field = blob_only(NeRFField(FieldConfig(backbone=backbone, **SMALL)))
    assert field.normal_mode == ("finite_difference" if backbone == "grid" else "autograd")
    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(200, 3, generator=g), dim=-1)
    radii = 0.1 + 0.5 * torch.rand(200, 1, generator=g)
    n = field.normal(dirs * radii)
    cos = (n * dirs).sum(-1)
    assert cos.min() > 0.999, cos.min()


def test_shading_modes():
    field = blob_only(NeRFField(FieldConfig(**SMALL)))
    x = torch.tensor([[0.3, 0.0, 0.0], [-0.3, 0.0, 0.0]])
    d = torch.tensor([[-1.0, 0.0, 0.0]] * 2)
    light = torch.tensor([1.0, 0.0, 0.0])
    ratio = 0.2
    sigma, rgb, normal = field(x, d, light, ambient_ratio=ratio, shading="albedo")
    assert normal is None and torch.allclose(rgb, torch.full((2, 3), 0.5))
    _, rgb, normal = field(x, d, light, ambient_ratio=ratio, shading="lambertian")
    torch.testing.assert_close(normal, torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]]), atol=1e-4, rtol=0)
    # lit side: ratio + (1 - ratio) * 1 = 1; far side: n.l = -1 -> ratio only
    torch.testing.assert_close(rgb, torch.tensor([[0.5] * 3, [0.5 * ratio] * 3]), atol=1e-4, rtol=0)
    _, rgb, _ = field(x, d, light, ambient_ratio=ratio, shading="textureless")
    torch.testing.assert_close(rgb, torch.tensor([[1.0] * 3, [ratio] * 3]), atol=1e-4, rtol=0)
    s2, rgb, _ = field(x, d, light, shading="normal")
    torch.testing.assert_close(rgb, torch.tensor([[1.0, 0.5, 0.5], [0.0, 0.5, 0.5]]), atol=1e-4, rtol=0)
    torch.testing.assert_close(s2, sigma)
    with pytest.raises(UserError):
        field(x, d, light, shading="phong")


def test_background_and_param_groups():
    field = NeRFField(FieldConfig(**SMALL))
    bg = field.background(torch.randn(10, 3))
    assert bg.shape == (10, 3) and (bg > 0).all() and (bg < 1).all()
    assert field.encoder_bg.output_dim == 39  # frequency-6 background encoding
    groups = field.get_params(1e-3)
    assert groups[0]["lr"] == pytest.approx(1e-2) and groups[0]["params"][0] is field.encoder.embeddings
    assert [g["lr"] for g in groups[1:]] == [1e-3, 1e-3]
    n_params = sum(p.numel() for g in groups for p in g["params"])
    assert n_params == sum(p.numel() for p in field.parameters())

    vanilla = NeRFField(FieldConfig(backbone="vanilla", bg_radius=-1))
    assert vanilla.bg_net is None and len(vanilla.get_params(1e-3)) == 1
    assert vanilla.encoder.output_dim == 75  # 12 octaves + input
    with pytest.raises(UserError):
        vanilla.background(torch.randn(2, 3))


def test_default_grid_sizes():
    field = NeRFField(FieldConfig())
    assert [tuple(l.weight.shape) for l in field.sigma_net.net] == [(64, 32), (64, 64), (4, 64)]
    assert [tuple(l.weight.shape) for l in field.bg_net.net] == [(32, 39), (3, 32)]


def test_gradient_reaches_hash_table_and_max_level():
    field = NeRFField(FieldConfig(**SMALL))
    x = torch.rand(256, 3) * 2 - 1
    field.density(x)["sigma"].sum().backward()
    assert field.encoder.embeddings.grad.abs().sum() > 0
    with torch.no_grad():
        field.encoder.embeddings.uniform_(-1, 1)
    full = field.density(x)["sigma"]
    field.max_level = 0.25  # first level only
    part = field.density(x)["sigma"]
    assert not torch.allclose(full, part)


def test_grid_tcnn_falls_back_and_bad_config():
    from dreamfusion.encoders import tcnn_available

    if not tcnn_available():
        with pytest.warns(UserWarning, match="tiny-cuda-nn"):
            f = NeRFField(FieldConfig(backbone="grid_tcnn", **SMALL))
        assert f.backbone == "grid" and f.normal_mode == "finite_difference"
    with pytest.raises(UserError):
        NeRFField(FieldConfig(backbone="triplane"))
    with pytest.raises(UserError):
        NeRFField(FieldConfig(density_activation="relu"))


def test_chunked_mlp_matches_autograd():
    from dreamfusion.fields import MLP

    torch.manual_seed(0)
    chunked, plain = MLP(32, 4, 64, 3, chunk_size=100), MLP(32, 4, 64, 3, chunk_size=0)
    plain.load_state_dict(chunked.state_dict())
    x = torch.randn(32, 1050).T  # feature-major [N, 32] view, as the hash grid returns it
    g = torch.randn(1050, 4)
    outs, grads = [], []
    for mlp in (chunked, plain):
        xi = x.detach().requires_grad_(True)
        out = mlp(xi)
        out.backward(g)
        outs.append(out)
        grads.append([xi.grad] + [p.grad for p in mlp.parameters()])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(chunked(x), outs[1], atol=1e-5, rtol=1e-5)


def test_parallel_map_keeps_order_and_disables_grad():
    from dreamfusion.threadpool import parallel_map

    w = torch.ones(3, requires_grad=True)
    results = parallel_map(lambda k: (k, (w * k).requires_grad), range(7))
    assert [r[0] for r in results] == list(range(7))
    if torch.get_num_threads() > 1:
        assert not any(r[1] for r in results)


def test_parallel_map_nested_calls_run_serially():
    from dreamfusion.threadpool import parallel_map

    assert parallel_map(lambda k: sum(parallel_map(lambda j: j * k, range(4))), range(6)) == [6 * k for k in range(6)]
