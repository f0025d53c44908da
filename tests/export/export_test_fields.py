"""Analytic fields shared by the export tests."""

import torch

SPHERE_RADIUS = 0.6
SPHERE_CENTRE = (0.1, 0.2, -0.15)  # off-centre: catches swapped or mirrored axes


def sphere_density(radius=SPHERE_RADIUS, centre=SPHERE_CENTRE, threshold=10.0, slope=20.0):
    """sigma(x) = threshold + slope (1 - |x - c| / radius): equals `threshold` on the sphere and
    is linear along rays from the centre, so marching cubes places vertices on the sphere."""
    centre_t = torch.tensor(centre)

    def density(x):
        return threshold + slope * (1.0 - (x - centre_t.to(x)).norm(dim=-1) / radius)

    return density


def two_colour_albedo(x):
    """Red where x < 0, blue where x >= 0: Float[N, 3]."""
    red = torch.tensor([1.0, 0.0, 0.0], device=x.device)
    blue = torch.tensor([0.0, 0.0, 1.0], device=x.device)
    return torch.where(x[:, :1] < 0, red, blue)
