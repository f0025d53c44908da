"""Marching tetrahedra in pure PyTorch, differentiable with respect to the SDF values and the vertex
positions (DMTet's surface extraction; stable-dreamfusion's convention: sdf > 0 is inside).

A tet whose vertices are not all on one side holds one triangle (1 or 3 inside) or a quad split in
two (2 inside). Each surface vertex lies on a sign-changing grid edge (a, b) where the linear
interpolant of the SDF is zero, v = (v_a·(−s_b) + v_b·s_a) / (s_a − s_b), and is shared by every
tet around that edge, so the surface is watertight. The triangle table is derived below from one
positively oriented tet, so faces wind outward (towards sdf < 0) in every positively oriented tet.

    verts, faces = marching_tets(grid_vertices, tets, sdf)   # Float[K, 3], Int64[F, 3]
    extract = MarchingTets(tets, len(grid_vertices))         # training: a band around the surface
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


def _triangle_table() -> tuple[np.ndarray, np.ndarray]:
    """table [16, 2, 3] of edge numbers (−1: no triangle), count [16] of triangles, per occupancy
    code sum(inside_i << i)."""
    corners = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)  # volume > 0
    table = -np.ones((16, 2, 3), dtype=np.int64)
    count = np.zeros(16, dtype=np.int64)
    for code in range(16):
        inside = [i for i in range(4) if code >> i & 1]
        outside = [i for i in range(4) if not code >> i & 1]
        if not inside or not outside:
            continue
        edge = lambda i, j: EDGES.index((min(i, j), max(i, j)))  # noqa: E731
        if len(inside) == 2:
            (a, b), (c, d) = inside, outside
            ring = [edge(a, c), edge(a, d), edge(b, d), edge(b, c)]  # a cycle around the quad
            triangles = [ring[:3], [ring[0], ring[2], ring[3]]]
        else:
            lone = inside[0] if len(inside) == 1 else outside[0]
            triangles = [[edge(lone, k) for k in range(4) if k != lone]]
        away = corners[outside].mean(0) - corners[inside].mean(0)
        for t, triangle in enumerate(triangles):
            p = np.array([corners[list(EDGES[e])].mean(0) for e in triangle])
            if np.dot(np.cross(p[1] - p[0], p[2] - p[0]), away) < 0:
                triangle = [triangle[0], triangle[2], triangle[1]]
            table[code, t] = triangle
        count[code] = len(triangles)
    return table, count


_TABLE, _COUNT = _triangle_table()


class MarchingTets:
    """Marching tetrahedra over a fixed tet grid, run on a band of tets around the surface.

    Training extracts the surface at every step, but only tets near it can cross it: a tet's
    occupancy code changes only when one of its vertices changes side. The band is the tets that
    touch the vertices of the crossing tets or their one-ring (``near``); while no vertex outside
    ``near`` has changed side since the band was built, every tet outside the band keeps the code
    it had then (not crossing), so the band's surface is the whole grid's, vertex for vertex and
    face for face (both list surface vertices by sorted edge and faces in tet order). The band is
    rebuilt, with two passes over the grid, whenever that check fails. Per step this costs O(V) for
    the check plus O(band) instead of O(T) gathers and a sort of the crossing tets' edges.

        extract = MarchingTets(tets, n_vertices)
        verts, faces = extract(sdf, lambda idx: positions[idx])   # Float[K, 3], Int64[F, 3]
    """

    def __init__(self, tets: Tensor, n_vertices: int):
        self.tets = tets
        self.n_vertices = n_vertices
        self.rebuilds = 0
        self._built_inside: Tensor | None = None  # Bool[V]: the sides when the band was built
        self._near: Tensor | None = None  # Bool[V]: vertices of the band's crossing tets and their one-ring

    def _touching(self, marked: Tensor) -> Tensor:
        """Bool[T]: tets with at least one vertex in ``marked`` (Bool[V])."""
        hit = marked.to(torch.uint8)[self.tets]
        return (hit[:, 0] | hit[:, 1] | hit[:, 2] | hit[:, 3]).bool()

    def _build(self, inside: Tensor) -> None:
        code = _codes(inside, self.tets)
        crossing_vertices = torch.zeros(self.n_vertices, dtype=torch.bool, device=inside.device)
        crossing_vertices[self.tets[(code != 0) & (code != 15)].reshape(-1)] = True
        near = torch.zeros_like(crossing_vertices)
        near[self.tets[self._touching(crossing_vertices)].reshape(-1)] = True
        band = self.tets[self._touching(near)]  # [Tb, 4], in grid order
        pairs = torch.sort(band[:, torch.tensor(EDGES, device=band.device)], dim=-1).values  # [Tb, 6, 2]
        keys, tet_edges = torch.unique(pairs[..., 0] * self.n_vertices + pairs[..., 1], return_inverse=True)
        self.band, self.tet_edges = band, tet_edges  # [Tb, 4], [Tb, 6] indices into the band's edges
        self.edge_a, self.edge_b = keys // self.n_vertices, keys % self.n_vertices  # [Eb], sorted by key
        self._built_inside, self._near = inside.clone(), near
        self.rebuilds += 1

    def __call__(self, sdf: Tensor, positions: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        """The zero level set of ``sdf``.

        Args:
            sdf: Float[V], positive inside (gradients flow to it).
            positions: Long[k] vertex indices -> Float[k, 3] their positions (gradients flow
                through it); only the ends of sign-changing edges are asked for.
        Returns:
            Float[K, 3] surface vertices and Int64[F, 3] faces winding outward (empty when no tet
            crosses the surface).
        """
        device = sdf.device
        inside = sdf > 0
        if (self._built_inside is None or self._built_inside.device != device
                or bool(((inside != self._built_inside) & ~self._near).any())):
            self._build(inside)
        code = _codes(inside, self.band)
        crossing = (code != 0) & (code != 15)
        if not bool(crossing.any()):
            return sdf.new_zeros(0, 3), torch.zeros(0, 3, dtype=torch.long, device=device)
        code, tet_edges = code[crossing].long(), self.tet_edges[crossing]
        a, b = self.edge_a, self.edge_b
        changes = inside[a] != inside[b]
        new_index = torch.cumsum(changes.long(), 0) - 1
        new_index = torch.where(changes, new_index, torch.full_like(new_index, -1))
        a, b = a[changes], b[changes]
        sa, sb = sdf[a], sdf[b]
        points = (positions(a) * (-sb)[:, None] + positions(b) * sa[:, None]) / (sa - sb)[:, None]
        edge_vertex = new_index[tet_edges]  # [Tc, 6]: surface vertex on each tet edge (−1: none)
        table, count = torch.from_numpy(_TABLE).to(device), torch.from_numpy(_COUNT).to(device)
        faces = [torch.gather(edge_vertex, 1, table[code, 0])]
        two = count[code] == 2
        faces.append(torch.gather(edge_vertex[two], 1, table[code[two], 1]))
        return points, torch.cat(faces, 0)


def _codes(inside: Tensor, tets: Tensor) -> Tensor:
    """UInt8[T]: occupancy code sum(inside_i << i) per tet (uint8: bool -> int64 sums over
    millions of tets dominate otherwise)."""
    occupancy = inside.to(torch.uint8)[tets]  # [T, 4]
    return occupancy[:, 0] | (occupancy[:, 1] << 1) | (occupancy[:, 2] << 2) | (occupancy[:, 3] << 3)


def marching_tets(vertices: Tensor, tets: Tensor, sdf: Tensor) -> tuple[Tensor, Tensor]:
    """The zero level set of ``sdf``, once (:class:`MarchingTets` keeps its band between calls).

    Args:
        vertices: Float[V, 3] grid vertex positions (deformed or not; gradients flow to them).
        tets: Int64[T, 4], positively oriented.
        sdf: Float[V], positive inside (gradients flow to it).
    Returns:
        Float[K, 3] surface vertices and Int64[F, 3] faces winding outward.
    """
    return MarchingTets(tets, len(vertices))(sdf, vertices.__getitem__)
