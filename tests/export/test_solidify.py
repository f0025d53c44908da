"""Solidifying the density grid: a hollow ball meshes as one solid ball, floaters go, the outer
surface does not move."""

import numpy as np
import pytest
import torch
import trimesh

from dreamfusion.export import MeshExportConfig, extract_density_surface
from dreamfusion.export.density_grid import sample_density_grid
from dreamfusion.export.marching_cubes import extract_isosurface
from dreamfusion.export.solidify import solidify_grid


def hollow_ball(p):
    """Density 30 in the shell 0.35 < |p| < 0.5, 1 inside and outside it (threshold 10)."""
    r = p.norm(dim=-1)
    return torch.where((r > 0.35) & (r < 0.5), torch.full_like(r, 30.0), torch.ones_like(r))


def with_floater(p):
    """The hollow ball plus a small solid blob of radius 0.08 under it."""
    blob = (p - torch.tensor([0.0, -0.75, 0.0])).norm(dim=-1) < 0.08
    return torch.where(blob, torch.full_like(p[:, 0], 30.0), hollow_ball(p))


def test_hollow_ball_becomes_one_solid_ball():
    grid = sample_density_grid(hollow_ball, 64)
    skins = trimesh.Trimesh(*extract_isosurface(grid, 10.0), process=False)
    assert len(skins.split(only_watertight=False)) == 2  # outer skin + inward-facing inner skin
    solid, stats = solidify_grid(grid, 10.0)
    assert stats.filled_voxels > 0 and stats.removed_pieces == 0 and stats.kept_pieces == 1
    mesh = trimesh.Trimesh(*extract_isosurface(solid, 10.0), process=False)
    assert len(mesh.split(only_watertight=False)) == 1 and mesh.is_watertight
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * 0.5**3, rel=0.03)
    # The outer skin is where it was: exactly the vertices of the hollow mesh's outer piece.
    outer = max(skins.split(only_watertight=False), key=lambda m: m.area)
    np.testing.assert_array_equal(np.unique(mesh.vertices, axis=0), np.unique(outer.vertices, axis=0))


def test_floater_is_dropped_and_can_be_kept():
    grid = sample_density_grid(with_floater, 64)
    solid, stats = solidify_grid(grid, 10.0)
    assert stats.removed_pieces == 1 and stats.kept_pieces == 1
    mesh = trimesh.Trimesh(*extract_isosurface(solid, 10.0), process=False)
    assert np.linalg.norm(mesh.vertices, axis=1).max() < 0.55  # nothing left near (0, -0.75, 0)
    kept, stats = solidify_grid(grid, 10.0, min_piece_volume=0.0)
    assert stats.removed_pieces == 0 and stats.kept_pieces == 2


def test_export_config_solidifies_by_default_and_can_keep_voids():
    config = MeshExportConfig(resolution=48, density_thresh=10.0)
    vertices, faces = extract_density_surface(hollow_ball, config)
    assert len(trimesh.Trimesh(vertices, faces, process=False).split(only_watertight=False)) == 1
    config.fill_voids = False  # stable-dreamfusion's level alone: two skins
    vertices, faces = extract_density_surface(hollow_ball, config)
    assert len(trimesh.Trimesh(vertices, faces, process=False).split(only_watertight=False)) == 2
    config.surface = "visible"  # the visual hull holds the inside no view sees into, voids or not
    vertices, faces = extract_density_surface(hollow_ball, config)
    assert len(trimesh.Trimesh(vertices, faces, process=False).split(only_watertight=False)) == 1


def test_hairline_gap_is_closed_and_a_wide_groove_is_not():
    def layers(p):  # two slabs with a gap of 0.02 (one voxel at 96) and a groove of 0.2 cut into the top one
        y = p[:, 1]
        slab = ((y > -0.3) & (y < -0.01)) | ((y > 0.01) & (y < 0.3))
        groove = (p[:, 0].abs() < 0.1) & (y > 0.2)
        inside = slab & ~groove & (p[:, 0].abs() < 0.6) & (p[:, 2].abs() < 0.6)
        return torch.where(inside, torch.full_like(y, 30.0), torch.zeros_like(y))

    grid = sample_density_grid(layers, 96)
    solid, _ = solidify_grid(grid, 10.0)
    mesh = trimesh.Trimesh(*extract_isosurface(solid, 10.0), process=False)
    assert len(mesh.split(only_watertight=False)) == 1  # the slabs are joined: no crack between them
    assert mesh.volume == pytest.approx(1.2 * 1.2 * 0.6 - 0.2 * 1.2 * 0.1, rel=0.04)  # the groove stays
