"""Hash grid against a brute-force per-point reference, its gradients, and the frequency encoding."""

import math

import pytest
import torch

from dreamfusion.encoders import FrequencyEncoder, HashGridEncoder, grid_levels, make_encoder, tcnn_available
from dreamfusion.errors import UserError


def brute_force_encode(enc: HashGridEncoder, x: torch.Tensor) -> torch.Tensor:
    """Per point, per level, per corner with Python integers and the uint32 instant-NGP hash."""
    table = enc.embeddings.detach().double()
    T = 2**enc.log2_hashmap_size
    scale = (enc.desired_resolution / enc.base_resolution) ** (1 / (enc.num_levels - 1))
    out = torch.zeros(x.shape[0], enc.num_levels, enc.level_dim, dtype=torch.float64)
    offset = 0
    for level in range(enc.num_levels):
        res = math.ceil(enc.base_resolution * scale**level)
        dense = (res + 1) ** 3 <= T
        size = math.ceil((res + 1) ** 3 / 8) * 8 if dense else T
        for n in range(x.shape[0]):
            u = [(float(x[n, k]) + enc.bound) / (2 * enc.bound) for k in range(3)]
            if min(u) < 0 or max(u) > 1:
                continue  # outside the cube: 0
            pos = [min(max(v * res - 0.5, 0.0), res - 1.0) for v in u]
            p0 = [math.floor(p) for p in pos]
            f = [p - q for p, q in zip(pos, p0)]
            if enc.interpolation == "smoothstep":
                f = [t * t * (3 - 2 * t) for t in f]
            for corner in range(8):
                bits = [(corner >> k) & 1 for k in range(3)]
                c = [min(p0[k] + bits[k], res - 1) for k in range(3)]
                w = math.prod(f[k] if bits[k] else 1 - f[k] for k in range(3))
                if dense:
                    row = c[0] + c[1] * (res + 1) + c[2] * (res + 1) ** 2
                else:
                    row = ((c[0] * 1) ^ (c[1] * 2654435761) ^ (c[2] * 805459861)) % 2**32 % T
                out[n, level] += w * table[offset + row]
        offset += size
    return out.reshape(x.shape[0], -1)


def dyadic_points(n: int, seed: int = 0) -> torch.Tensor:
    # Multiples of 1/4096 in [0, 1]: every product u * res is exact in float32, so the float32
    # implementation and the float64 reference see the same cells and fractions.
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 4097, (n, 3), generator=g).float() / 4096) * 2 - 1


@pytest.mark.parametrize("interpolation", ["smoothstep", "linear"])
def test_small_grid_matches_brute_force(interpolation):
    enc = HashGridEncoder(num_levels=6, base_resolution=4, desired_resolution=96, log2_hashmap_size=12, interpolation=interpolation, init_std=1.0)
    assert [lv.hashed for lv in enc.levels] == [False, False, False, True, True, True]
    x = dyadic_points(200)
    torch.testing.assert_close(enc(x).double(), brute_force_encode(enc, x), atol=1e-5, rtol=0)


def test_default_grid_layout_and_values():
    enc = HashGridEncoder(init_std=1.0)  # stable-dreamfusion's grid: 16 x 2, 16 -> 2048, T = 2^19
    res = [lv.resolution for lv in enc.levels]
    assert res[0] == 16 and res[-1] == 2048 and res[5] == 81
    assert sum(not lv.hashed for lv in enc.levels) == 5  # (59+1)^3 <= 2^19 < (81+1)^3
    assert enc.embeddings.numel() == 12_239_728  # the feasibility study's 12.24 M
    x = dyadic_points(24, seed=1)
    torch.testing.assert_close(enc(x).double(), brute_force_encode(enc, x), atol=2e-5, rtol=0)


def test_large_tables_use_int64_index_math():
    enc = HashGridEncoder(num_levels=2, base_resolution=4096, desired_resolution=8192, log2_hashmap_size=20, init_std=1.0)
    assert enc.wide_indices  # 8192 * (2654435761 mod 2^20) overflows int32
    x = dyadic_points(24, seed=2)
    torch.testing.assert_close(enc(x).double(), brute_force_encode(enc, x), atol=2e-5, rtol=0)


def test_grid_levels_bookkeeping():
    levels = grid_levels(16, 16, 2048, 19)
    for a, b in zip(levels, levels[1:]):
        assert b.offset == a.offset + a.size and a.size % 8 == 0


def test_points_outside_the_cube_encode_to_zero():
    enc = HashGridEncoder(num_levels=4, base_resolution=4, desired_resolution=32, log2_hashmap_size=10, bound=1.0, init_std=1.0)
    x = torch.tensor([[1.2, 0.0, 0.0], [0.0, -1.01, 0.3], [1.0, 1.0, -1.0]])
    out = enc(x)
    assert out[:2].abs().max() == 0 and out[2].abs().min() > 0


def test_partition_of_unity():
    enc = HashGridEncoder(num_levels=5, base_resolution=8, desired_resolution=300, log2_hashmap_size=11)
    with torch.no_grad():
        enc.embeddings.fill_(0.75)
    out = enc(torch.rand(500, 3) * 2 - 1)
    torch.testing.assert_close(out, torch.full_like(out, 0.75), atol=1e-6, rtol=0)


def test_embedding_gradient_gradcheck():
    enc = HashGridEncoder(num_levels=2, base_resolution=2, desired_resolution=6, log2_hashmap_size=7, init_std=1.0)
    assert [lv.hashed for lv in enc.levels] == [False, True]
    enc.embeddings.data = enc.embeddings.data.double()
    x = torch.rand(30, 3) * 2 - 1
    table = enc.embeddings.detach().clone().requires_grad_(True)
    from dreamfusion.encoders import _HashGridFunction

    u = (x + 1) / 2
    assert torch.autograd.gradcheck(lambda t: _HashGridFunction.apply(u, t, enc, 2, True), (table,), fast_mode=True)


def test_threaded_and_recomputed_backward_match_autograd_path():
    enc = HashGridEncoder(num_levels=8, base_resolution=8, desired_resolution=512, log2_hashmap_size=12)
    x = torch.rand(4000, 3) * 2 - 1
    g = torch.randn(4000, 16)
    (enc(x) * g).sum().backward()
    fast = enc.embeddings.grad.clone()
    enc.embeddings.grad = None
    enc.max_saved_bytes = 0  # recompute corner rows in backward
    (enc(x) * g).sum().backward()
    torch.testing.assert_close(enc.embeddings.grad, fast)
    enc.embeddings.grad = None
    xr = x.clone().requires_grad_(True)  # plain-autograd path
    (enc(xr) * g).sum().backward()
    torch.testing.assert_close(enc.embeddings.grad, fast, atol=1e-5, rtol=1e-5)


def test_position_gradient_matches_finite_differences():
    enc = HashGridEncoder(num_levels=3, base_resolution=4, desired_resolution=12, log2_hashmap_size=10, init_std=1.0)
    enc.double()
    x = (torch.rand(5, 3, dtype=torch.float64) * 1.6 - 0.8).requires_grad_(True)
    w = torch.randn(5, enc.output_dim, dtype=torch.float64)
    (enc(x) * w).sum().backward()
    eps = 1e-4
    for k in range(3):
        dx = torch.zeros_like(x)
        dx[:, k] = eps
        with torch.no_grad():
            fd = ((enc(x + dx) - enc(x - dx)) * w).sum(-1) / (2 * eps)
        torch.testing.assert_close(x.grad[:, k], fd, atol=1e-3, rtol=1e-3)


def test_max_level_zeroes_high_levels():
    enc = HashGridEncoder(num_levels=8, base_resolution=4, desired_resolution=128, log2_hashmap_size=10, init_std=1.0)
    x = torch.rand(100, 3) * 2 - 1
    full = enc(x)
    part = enc(x, max_level=0.3)  # ceil(0.3 * 8) = 3 levels
    torch.testing.assert_close(part[:, :6], full[:, :6])
    assert part[:, 6:].abs().max() == 0
    part.sum().backward()
    grad_rows = enc.embeddings.grad.abs().sum(1) > 0
    assert not grad_rows[enc.levels[3].offset :].any() and grad_rows[: enc.levels[3].offset].any()
    assert enc.active_levels(0.0) == 1 and enc.active_levels(None) == 8


@pytest.mark.slow
def test_compiled_index_math_matches_eager():
    enc = HashGridEncoder(num_levels=6, base_resolution=4, desired_resolution=96, log2_hashmap_size=12, init_std=1.0)
    x = torch.rand(3000, 3) * 2 - 1
    eager = enc(x)
    enc.compile = True
    torch.testing.assert_close(enc(x), eager)


def test_frequency_layout_and_max_level():
    enc = FrequencyEncoder(3, multires=4)
    x = torch.tensor([[0.1, -0.2, 0.3]])
    out = enc(x)
    assert out.shape == (1, 3 + 3 * 2 * 4) and enc.output_dim == 27
    expected = [x]
    for k in range(4):
        expected += [torch.sin(2**k * x), torch.cos(2**k * x)]
    torch.testing.assert_close(out, torch.cat(expected, -1))
    part = enc(x, max_level=0.5)  # keeps int(0.5 * 4) = 2 octaves
    torch.testing.assert_close(part[:, :15], out[:, :15])
    assert part[:, 15:].abs().max() == 0


def test_make_encoder_factory():
    assert isinstance(make_encoder("frequency", multires=6), FrequencyEncoder)
    assert make_encoder("frequency", multires=6).output_dim == 39
    with pytest.raises(UserError):
        make_encoder("spherical_harmonics")
    with pytest.raises(UserError):
        HashGridEncoder(interpolation="cubic")


@pytest.mark.skipif(tcnn_available(), reason="tiny-cuda-nn is importable here")
def test_tcnn_falls_back_with_a_warning():
    with pytest.warns(UserWarning, match="tiny-cuda-nn"):
        enc = make_encoder("hashgrid_tcnn", num_levels=4, base_resolution=4, desired_resolution=32, log2_hashmap_size=10)
    assert isinstance(enc, HashGridEncoder)


@pytest.mark.skipif(not tcnn_available(), reason="tiny-cuda-nn is not importable")
def test_tcnn_agrees_with_pure_grid():
    # The two tables are laid out differently, so compare functions that do not depend on the
    # layout: a constant table (partition of unity) and the total gradient mass per level.
    kwargs = dict(num_levels=8, base_resolution=8, desired_resolution=256, log2_hashmap_size=14)
    pure = make_encoder("hashgrid", **kwargs).cuda()
    tcnn = make_encoder("hashgrid_tcnn", **kwargs).cuda()
    with torch.no_grad():
        pure.embeddings.fill_(0.5)
        tcnn.encoder.params.fill_(0.5)
    x = torch.rand(4096, 3, device="cuda") * 1.8 - 0.9
    a, b = pure(x), tcnn(x)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    a.sum().backward()
    b.sum().backward()
    assert math.isclose(pure.embeddings.grad.sum().item(), tcnn.encoder.params.grad.sum().item(), rel_tol=1e-3)
