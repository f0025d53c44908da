"""Marching tetrahedra in pure PyTorch, differentiable with respect to the SDF values and the vertex
positions (DMTet's surface extraction; stable-dreamfusion's convention: sdf > 0 is inside).

A tet whose vertices are not all on one side holds one triangle (1 or 3 inside) or a quad split in
two (2 inside). Each surface vertex lies on a sign-changing grid edge (a, b) where the linear
interpolant of the SDF is zero, v = (v_a·(−s_b) + v_b·s_a) / (s_a − s_b), and is shared by every
tet around that edge, so the surface is watertight. The triangle table is derived below from one
positively oriented tet, so faces wind outward (towards sdf < 0) in every positively oriented tet.

    verts, faces = marching_tets(grid_vertices, tets, sdf)   # Float[K, 3], Int64[F, 3]
"""

from __future__ import annotations

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


def marching_tets(vertices: Tensor, tets: Tensor, sdf: Tensor) -> tuple[Tensor, Tensor]:
    """The zero level set of ``sdf``.

    Args:
        vertices: Float[V, 3] grid vertex positions (deformed or not; gradients flow to them).
        tets: Int64[T, 4], positively oriented.
        sdf: Float[V], positive inside (gradients flow to it).
    Returns:
        Float[K, 3] surface vertices and Int64[F, 3] faces winding outward (empty when no tet
        crosses the surface).
    """
    device = vertices.device
    inside = sdf > 0
    # Occupancy code per tet in uint8 (bool -> int64 sums over millions of tets dominate otherwise).
    occupancy = inside.to(torch.uint8)[tets]  # [T, 4]
    code = occupancy[:, 0] | (occupancy[:, 1] << 1) | (occupancy[:, 2] << 2) | (occupancy[:, 3] << 3)
    crossing_tets = (code != 0) & (code != 15)
    tets, code = tets[crossing_tets], code[crossing_tets].long()
    if tets.shape[0] == 0:
        return vertices.new_zeros(0, 3), torch.zeros(0, 3, dtype=torch.long, device=device)
    pairs = tets[:, torch.tensor(EDGES, device=device)]  # [T, 6, 2]
    pairs = torch.sort(pairs, dim=-1).values
    n_vertices = vertices.shape[0]
    keys, inverse = torch.unique(pairs[..., 0] * n_vertices + pairs[..., 1], return_inverse=True)  # [E], [T, 6]
    a, b = keys // n_vertices, keys % n_vertices
    changes = inside[a] != inside[b]
    new_index = torch.cumsum(changes.long(), 0) - 1
    new_index = torch.where(changes, new_index, torch.full_like(new_index, -1))
    a, b = a[changes], b[changes]
    sa, sb = sdf[a], sdf[b]
    points = (vertices[a] * (-sb)[:, None] + vertices[b] * sa[:, None]) / (sa - sb)[:, None]
    edge_vertex = new_index[inverse]  # [T, 6]: surface vertex on each tet edge (−1: none)
    table, count = torch.from_numpy(_TABLE).to(device), torch.from_numpy(_COUNT).to(device)
    faces = [torch.gather(edge_vertex, 1, table[code, 0])]
    two = count[code] == 2
    faces.append(torch.gather(edge_vertex[two], 1, table[code[two], 1]))
    return points, torch.cat(faces, 0)
