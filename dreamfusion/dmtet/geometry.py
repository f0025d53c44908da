"""The DMTet stage's geometry: an SDF and bounded vertex deformations on the tetrahedral grid, its
initialisation from a NeRF's density or from a mesh, and the mesh regularisers.

    geometry = TetGeometry(tet_grid_size=128)
    init_from_density(geometry, scene.density_fn, level)    # or init_from_mesh(geometry, v, f)
    vertices, faces = geometry.surface()                    # differentiable marching tetrahedra
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamfusion.dmtet.marching_tets import MarchingTets
from dreamfusion.dmtet.tet_grid import Cells, cells_per_axis, cubic_cells, kuhn_cells, tet_grid
from dreamfusion.errors import UserError


class TetGeometry(nn.Module):
    """``sdf`` [V] (positive inside) and ``deform`` [V, 3] on a Kuhn grid spanning
    ``[-1, 1]^3 * tet_scale``. A vertex sits at ``grid * tet_scale + tanh(deform) / tet_grid_size``
    (stable-dreamfusion's bound: a quarter of a cell). The grid starts as a cube of ``cells`` cells
    per side; initialisation from a NeRF re-grids it to ``cells_per_axis`` cubic cells fitting the
    object's box (:meth:`set_cells`). The state dict holds ``sdf``, ``deform``, ``tet_scale`` and
    ``cells_per_axis``; the grid itself is regenerated (or read from the cache) from those."""

    def __init__(self, tet_grid_size: int, cache: str | None = None):
        super().__init__()
        self.tet_grid_size = tet_grid_size
        self.cells = kuhn_cells(tet_grid_size)
        self._cache = cache
        vertices, tets = tet_grid(cells=self.cells, cache=cache)
        self.register_buffer("grid", torch.from_numpy(vertices), persistent=False)
        self.register_buffer("tets", torch.from_numpy(tets), persistent=False)
        self.register_buffer("tet_scale", torch.ones(3))
        self.register_buffer("cells_per_axis", torch.full((3,), self.cells, dtype=torch.long))
        self.sdf = nn.Parameter(torch.zeros(len(vertices)))
        self.deform = nn.Parameter(torch.zeros(len(vertices), 3))
        self._extract: MarchingTets | None = None  # the training surface's band (a cache, per device)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Cells along x, y, z."""
        return tuple(int(c) for c in self.cells_per_axis.tolist())  # type: ignore[return-value]

    @property
    def cell_size(self) -> float:
        """Mean side of a lattice cell, in world units."""
        return float((2.0 * self.tet_scale.cpu() / self.cells_per_axis.cpu()).mean())

    @torch.no_grad()
    def set_cells(self, cells: Cells) -> None:
        """Re-grid to ``cells`` per axis (an int: a cube); ``sdf`` and ``deform`` become zeros of the
        new size, in the same Parameter objects (an optimiser holding them stays valid before its
        first step; an EMA of them does not)."""
        shape = cells_per_axis(cells)
        if shape == self.shape:
            return
        vertices, tets = tet_grid(cells=shape, cache=self._cache)
        device = self.grid.device
        self.grid = torch.from_numpy(vertices).to(device)
        self.tets = torch.from_numpy(tets).to(device)
        self.cells_per_axis.copy_(torch.tensor(shape))
        self.sdf.data = self.sdf.new_zeros(len(vertices))
        self.deform.data = self.deform.new_zeros(len(vertices), 3)
        self.sdf.grad = self.deform.grad = None
        self._extract = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "cells_per_axis"
        if key not in state_dict:  # saved before per-axis cells: the cube grid of tet_grid_size
            state_dict[key] = torch.full((3,), self.cells, dtype=torch.long)
        try:
            self.set_cells(tuple(int(c) for c in state_dict[key].reshape(-1).tolist()))
        except ValueError as error:  # reported like any other mismatch (load_state_dict raises)
            args[-1].append(f"{key}: {error}")  # error_msgs
            return
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def vertices(self, index: Tensor | None = None) -> Tensor:
        """Float[V, 3] deformed grid vertices (Float[k, 3]: those of Long[k] ``index``)."""
        if index is None:
            return self.grid * self.tet_scale + torch.tanh(self.deform) / self.tet_grid_size
        return self.grid[index] * self.tet_scale + torch.tanh(self.deform[index]) / self.tet_grid_size

    def surface(self, cleaned: bool = False) -> tuple[Tensor, Tensor]:
        """Float[K, 3] vertices and Int64[F, 3] outward faces of the zero level set; ``cleaned``:
        of :meth:`cleaned_sdf` (what is exported, extracted with a band of its own)."""
        if cleaned:
            return MarchingTets(self.tets, len(self.grid))(self.cleaned_sdf(), self.vertices)
        if self._extract is None or self._extract.tets is not self.tets:  # new, or moved to another device
            self._extract = MarchingTets(self.tets, len(self.grid))
        return self._extract(self.sdf, self.vertices)

    @torch.no_grad()
    def cleaned_sdf(self, fill_hidden: bool = True, device: torch.device | str | None = None) -> Tensor:
        """The SDF after the mesh export's clean-up (:func:`clean_sdf`): what is exported. Training
        can leave what no view sees and SDS cannot remove: bubbles inside the solid (momentum carries
        a vertex across zero after the surface has moved past it), crevices no view looks into."""
        sdf, _ = clean_sdf(self.sdf.detach().reshape(self.nodes), 0.0, fill_hidden=fill_hidden, device=device)
        return sdf.reshape(-1)

    @property
    def nodes(self) -> tuple[int, int, int]:
        """Lattice vertices along x, y, z (cells + 1)."""
        return tuple(c + 1 for c in self.shape)  # type: ignore[return-value]

    def lattice(self) -> Tensor:
        """Float[a, b, c, 3] undeformed vertex positions (:attr:`nodes` per axis), x slowest."""
        return (self.grid * self.tet_scale).reshape(*self.nodes, 3)


# |sdf| bound of the initial SDF, in units of its median at the surface (crossing_scale).
SDF_BOUND = 8.0


def _query(fn: Callable[[Tensor], Tensor], points: Tensor, chunk: int = 1 << 18) -> Tensor:
    return torch.cat([fn(points[i:i + chunk]) for i in range(0, len(points), chunk)])


@torch.no_grad()
def init_from_density(geometry: TetGeometry, density_fn: Callable[[Tensor], Tensor], level: float, *,
                      fill_hidden: bool = True, device: torch.device | str | None = None,
                      transform: Callable[[Tensor], Tensor] | None = None) -> dict:
    """stable-dreamfusion's init: query the density at the grid vertices, ``tet_scale`` = the largest
    |coordinate| of a vertex above ``level``, per axis, + 0.1 (here that box is re-gridded with
    cubic cells, :func:`~dreamfusion.dmtet.tet_grid.cubic_cells`, so it is within half a cell of
    that); then the SDF at the scaled vertices
    is ``σ − level`` clamped, but first divided by its median next to the surface
    (:func:`crossing_scale`) and clamped to ±``SDF_BOUND`` rather than stable-dreamfusion's ±1: a
    trained density changes by several times the ±1 range from one vertex to the next, so that clamp
    saturates both ends of most sign-changing edges and puts the surface at their midpoints; scaled,
    the crossings are the density's, and |sdf| near the surface is about 1, as the clamp left it (so
    ``--dmtet_lr_scale`` keeps its meaning). Then the mesh export's clean-up on that lattice, so the stage starts from
    the solid the NeRF's mesh is made of: space no view can see into (``fill_hidden``, the export's
    ``--mesh_surface visible``), enclosed voids and hairline gaps become inside, floaters outside.

    ``transform`` (increasing; e.g. :func:`dreamfusion.activations.inverse_density_activation` of
    the field, which gives its raw output back): the SDF is ``transform(σ) − transform(level)``
    instead, same signs, other crossings. A NeRF's density is the exponential (or softplus) of a
    smooth network output, so along a tet edge σ is convex and its chord crosses the level before σ
    does, on the outside; the raw output is close to linear there, and its chord crosses where σ does.

    Returns counts of what the clean-up changed (:func:`clean_sdf`)."""
    grid = geometry.grid
    sigma = _query(density_fn, grid)
    valid = sigma > level
    if not bool(valid.any()):
        raise UserError(f"--init_with: the NeRF's density is nowhere above {level:.3g}; nothing to start DMTet from "
                        "(train the NeRF stage longer)")
    # Cubic cells over that box, as many as the cube grid has: a box longer along one axis gets more
    # cells there instead of longer ones (stable-dreamfusion stretches its grid's cells instead).
    shape, extent = cubic_cells((grid[valid].abs().amax(0) + 0.1).tolist(), geometry.cells)
    geometry.set_cells(shape)
    geometry.tet_scale.copy_(torch.as_tensor(extent, dtype=geometry.tet_scale.dtype))
    sigma = _query(density_fn, geometry.lattice().reshape(-1, 3))
    nodes = geometry.nodes
    if transform is None:
        offset = (sigma - level).reshape(nodes)
    else:
        offset = (transform(sigma) - transform(torch.tensor([level], device=sigma.device))).reshape(nodes)
    # Scaled to its typical size at the surface, so the clamp keeps the density's zero crossings.
    offset = (offset / crossing_scale(offset)).clamp(-SDF_BOUND, SDF_BOUND)
    sdf, changed = clean_sdf(offset, 0.0, fill_hidden=fill_hidden, device=device)
    sdf = sdf.reshape(-1)
    geometry.sdf.copy_(sdf)
    geometry.deform.zero_()
    return changed




def crossing_scale(values: Tensor) -> Tensor:
    """The typical |value| next to the zero level of ``values`` (Float[a, b, c], a lattice): the
    median of |value| over the vertices with an axis neighbour on the other side of 0."""
    inside = values > 0
    surface = torch.zeros_like(inside)
    for axis in range(3):
        size = inside.shape[axis] - 1
        change = inside.narrow(axis, 0, size) != inside.narrow(axis, 1, size)
        surface.narrow(axis, 0, size).logical_or_(change)
        surface.narrow(axis, 1, size).logical_or_(change)
    if not bool(surface.any()):
        return values.new_ones(())
    return values.abs()[surface].float().median().clamp_min(1e-6).to(values.dtype)


@torch.no_grad()
def clean_sdf(values: Tensor, level: float, *, fill_hidden: bool = True,
              device: torch.device | str | None = None) -> tuple[Tensor, dict]:
    """The mesh export's clean-up (:mod:`dreamfusion.export.solidify`, ``hidden_space``) on a
    lattice of SDF values Float[a, b, c] (inside: > ``level``): space no view can see into
    (``fill_hidden``: the export's ``--mesh_surface visible``), enclosed voids and hairline gaps
    become inside, floating pieces outside. Values keep their magnitude (at least 0.01 from
    ``level``) and change side where the clean-up says so: a filled void of empty space is as deep
    inside as it was outside. Returns the new values and counts of changed vertices."""
    from dreamfusion.export.hidden_space import enclosed_space
    from dreamfusion.export.solidify import solidify_grid

    grid = values.float().cpu().numpy()
    hidden = np.zeros(grid.shape, dtype=bool)
    if fill_hidden and (grid > level).any():
        hidden = enclosed_space(grid > level, device=device)
        grid = np.where(hidden, np.float32(level + 1.0), grid)
    solid, stats = solidify_grid(grid, level)
    inside = torch.from_numpy(solid > level).to(values.device)
    magnitude = (values - level).abs().clamp_min(1e-2)
    cleaned = torch.where(inside, level + magnitude, level - magnitude)
    return cleaned, {"hidden": int(hidden.sum()), "filled": stats.filled_voxels, "removed": stats.removed_voxels,
                     "inside": int(inside.sum())}


@torch.no_grad()
def init_from_mesh(geometry: TetGeometry, vertices: np.ndarray, faces: np.ndarray) -> None:
    """stable-dreamfusion's mesh init: the mesh scaled into a box of half size 0.8 (centred),
    ``tet_scale = max |v| + 0.1`` (one value for all axes), ``sdf = clamp(−10 · signed distance, −1, 1)``
    (inside positive; inside/outside by ray parity along the three axes, so the mesh should be closed)."""
    from dreamfusion.exemplar.metrics.geometry import distance_to_mesh, voxelize_mesh

    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) == 0:
        raise UserError("--init_with: the mesh has no faces")
    centre = (vertices.min(0) + vertices.max(0)) / 2
    vertices = vertices - centre
    vertices = vertices * (0.8 / max(np.abs(vertices).max(), 1e-8))
    scale = float(np.abs(vertices).max()) + 0.1
    geometry.set_cells(geometry.cells)
    geometry.tet_scale.fill_(scale)
    points = geometry.lattice().reshape(-1, 3).cpu().numpy().astype(np.float64)
    distance = distance_to_mesh(points, vertices, faces)
    # The lattice's nodes are the voxel centres of an (cells + 1)^3 grid over a slightly larger box.
    n = geometry.cells + 1
    inside = voxelize_mesh(vertices, faces, n, scale * n / geometry.cells).reshape(-1)
    signed = np.where(inside, -distance, distance)
    geometry.sdf.copy_(torch.from_numpy(np.clip(-10.0 * signed, -1.0, 1.0)).to(geometry.sdf))
    geometry.deform.zero_()


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Float[V, 3]: the normalised sum of the unit normals of the faces around each vertex
    ((0, 0, 1) where that sum vanishes), as stable-dreamfusion."""
    corners = vertices[faces]
    face_n = F.normalize(torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=1), dim=1)
    summed = torch.zeros_like(vertices).index_add(0, faces.reshape(-1), face_n.repeat_interleave(3, 0))
    length = summed.norm(dim=1, keepdim=True)
    fallback = torch.tensor([0.0, 0.0, 1.0], device=vertices.device, dtype=vertices.dtype).expand_as(summed)
    return torch.where(length > 1e-20, summed / length.clamp_min(1e-20), fallback)


def normal_consistency(vertices: Tensor, faces: Tensor, neighbours: Tensor) -> Tensor:
    """Mean over interior edges of |1 − n₀·n₁| for the unit normals of the two faces on the edge.

    Args:
        neighbours: Long[F, 3] from :func:`dreamfusion.renderers.antialias.edge_neighbours`.
    """
    corners = vertices[faces]
    face_n = F.normalize(torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=1), dim=1)
    face = torch.arange(len(faces), device=faces.device)[:, None].expand_as(neighbours)
    once = neighbours > face  # each interior edge counted from its lower-index face
    if not bool(once.any()):
        return vertices.new_zeros(())
    cos = (face_n[face[once]] * face_n[neighbours[once]]).sum(1).clamp(-1.0, 1.0)
    return (1.0 - cos).abs().mean()


def laplacian_loss(vertices: Tensor, faces: Tensor, neighbours: Tensor | None = None) -> Tensor:
    """Uniform, unnormalised Laplacian: mean over vertices of ‖deg_i v_i − Σ_{j∈N(i)} v_j‖.

    Args:
        neighbours: Long[F, 3] from :func:`dreamfusion.renderers.antialias.edge_neighbours`, on an
            edge-manifold mesh (marching tetrahedra's): each edge is then taken once, from its
            lower-index face, without sorting the edges again.
    """
    if len(faces) == 0:
        return vertices.new_zeros(())
    start, end = faces[:, [1, 2, 0]], faces[:, [2, 0, 1]]  # edge e opposite corner e, as edge_neighbours
    if neighbours is not None:
        face = torch.arange(len(faces), device=faces.device)[:, None]
        once = (neighbours < 0) | (neighbours > face)
        a, b = start[once], end[once]
    else:
        n = len(vertices)
        # 1-D keys: much faster than unique(dim=0); minimum/maximum: amin over a dim of 2 is slow on CPU
        keys = torch.unique(torch.minimum(start, end).reshape(-1) * n + torch.maximum(start, end).reshape(-1))
        a, b = keys // n, keys % n
    degree = torch.bincount(torch.cat([a, b]), minlength=len(vertices)).to(vertices.dtype)
    summed = torch.zeros_like(vertices).index_add(0, a, vertices[b]).index_add(0, b, vertices[a])
    return (degree[:, None] * vertices - summed).norm(dim=1).mean()
