import numpy as np
import pytest
import torch

from dreamfusion.export.density_grid import (
    grid_coordinates, resolve_density_threshold, sample_density_grid,
)


@pytest.mark.parametrize("points_per_chunk", [1, 100, 1 << 20])
def test_grid_is_indexed_x_y_z_whatever_the_chunking(points_per_chunk):
    resolution, bound = 9, 1.5
    grid = sample_density_grid(
        lambda p: p[:, 0] + 10 * p[:, 1] + 100 * p[:, 2], resolution, bound,
        points_per_chunk=points_per_chunk,
    )
    axis = grid_coordinates(resolution, bound)
    assert axis[0] == -bound and axis[-1] == bound
    expected = axis[:, None, None] + 10 * axis[None, :, None] + 100 * axis[None, None, :]
    np.testing.assert_allclose(grid, expected, rtol=1e-6, atol=1e-4)
    assert grid.dtype == np.float32


def test_non_finite_densities_become_finite_with_their_sign():
    def density(p):
        out = torch.zeros(p.shape[0])
        out[0], out[1], out[2] = float("nan"), float("inf"), float("-inf")
        return out

    grid = sample_density_grid(density, 4).reshape(-1)
    assert np.isfinite(grid).all()
    assert grid[0] < -1e30 and grid[1] > 1e30 and grid[2] < -1e30


def test_density_returned_as_column_is_accepted_and_wrong_shape_is_rejected():
    grid = sample_density_grid(lambda p: p[:, :1] * 0 + 3.0, 4)
    assert np.all(grid == 3.0)
    with pytest.raises(ValueError, match=r"\[N\]"):
        sample_density_grid(lambda p: p, 4)


def test_threshold_uses_mean_density_only_when_smaller_and_positive():
    assert resolve_density_threshold(10.0, None) == 10.0
    assert resolve_density_threshold(10.0, 4.0) == 4.0
    assert resolve_density_threshold(10.0, 40.0) == 10.0
    assert resolve_density_threshold(10.0, 0.0) == 10.0


def test_grid_density_fn_is_the_trilinear_interpolant():
    """Exact for a trilinear function, equal to the grid at its nodes, clamped outside the cube."""
    import torch

    from dreamfusion.export.density_grid import grid_density_fn

    f = lambda x: 0.5 + x[:, 0] - 2.0 * x[:, 1] + 3.0 * x[:, 2] + x[:, 0] * x[:, 1] * x[:, 2]  # noqa: E731
    grid = sample_density_grid(f, 9, 2.0)
    fn = grid_density_fn(grid, 2.0)
    points = torch.rand(500, 3, generator=torch.Generator().manual_seed(0)) * 4 - 2
    assert torch.allclose(fn(points), f(points), atol=1e-5)
    nodes = torch.tensor([[-2.0, -2.0, -2.0], [0.5, -1.0, 2.0], [2.0, 2.0, 2.0]])
    assert torch.allclose(fn(nodes), f(nodes), atol=1e-5)
    assert torch.allclose(fn(torch.tensor([[3.0, 0.0, 0.0]])), f(torch.tensor([[2.0, 0.0, 0.0]])), atol=1e-5)
