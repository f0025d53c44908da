"""Analytic antialiasing of rasterized images, which is what gives silhouettes a gradient.

Rasterized coverage is a step function of the vertex positions: moving a silhouette edge changes
which pixels a triangle covers, but no pixel value depends smoothly on the move. This pass (the role
nvdiffrast's ``antialias`` plays) looks at every pair of horizontally or vertically adjacent pixels
showing different triangles. When the nearer one's triangle ends on a *silhouette* edge between the
two pixel centres (an edge with no neighbouring face, or whose neighbour faces the other way on
screen), the crossing point ``t`` along the segment from the near pixel's centre (t = 0) to the
other's (t = 1) is found from the edge function, and the two colours are blended by box-filter
coverage along that segment:

* ``t > 1/2``: the triangle covers ``t - 1/2`` of the far pixel, which moves that far towards the
  near colour;
* ``t < 1/2``: the near pixel is covered only up to ``t``, so it moves ``1/2 - t`` towards the far
  colour.

In 1D this is exact box-filtered coverage, continuous in the edge's position, and ``t`` is
differentiable with respect to the edge's screen positions, hence the vertices' clip coordinates.

    raster = rasterize(clip, faces, H, W)
    colour = interpolate(vertex_colours, faces, raster)      # [B, H, W, C]
    colour = antialias(colour, raster, clip, faces)          # gradients reach `clip` at silhouettes
"""

from __future__ import annotations

import torch
from torch import Tensor

from dreamfusion.renderers.rasterizer import Rasterization


def edge_neighbours(faces: Tensor) -> Tensor:
    """For each face edge (edge e opposite corner e), the other face sharing it, or -1.

    Args:
        faces: Long[F, 3].
    Returns:
        Long[F, 3]. On a non-manifold edge (3+ faces) each face gets one of the others.
    """
    num_faces = faces.shape[0]
    if num_faces == 0:
        return faces.new_zeros(0, 3)
    start, end = faces[:, [1, 2, 0]], faces[:, [2, 0, 1]]
    low, high = torch.minimum(start, end), torch.maximum(start, end)
    keys = (low * (int(faces.max()) + 1) + high).reshape(-1)  # [3F]
    order = torch.argsort(keys, stable=True)
    sorted_keys = keys[order]
    owner = order // 3
    partner = torch.full_like(keys, -1)
    same_next = sorted_keys[1:] == sorted_keys[:-1]
    # Pair each slot with its sorted neighbour (next when equal, else previous when equal).
    nxt = torch.full_like(sorted_keys, -1)
    nxt[:-1] = torch.where(same_next, owner[1:], nxt[:-1])
    prv = torch.full_like(sorted_keys, -1)
    prv[1:] = torch.where(same_next, owner[:-1], prv[1:])
    partner[order] = torch.where(nxt >= 0, nxt, prv)
    return partner.reshape(num_faces, 3)


def antialias(
    color: Tensor,
    raster: Rasterization,
    clip: Tensor,
    faces: Tensor,
    neighbours: Tensor | None = None,
) -> Tensor:
    """Blend colours across silhouette edges (see the module docstring).

    Args:
        color: Float[B, H, W, C], e.g. from `interpolate`, background already filled in.
        raster: the `rasterize` result the colours come from.
        clip: Float[V, 4] or Float[B, V, 4], the clip positions that were rasterized.
        faces: Long[F, 3].
        neighbours: `edge_neighbours(faces)`, to reuse across calls.
    Returns:
        Float[B, H, W, C], differentiable with respect to `color` and `clip`.
    """
    if clip.dim() == 2:
        clip = clip.unsqueeze(0)
    batch, height, width, channels = color.shape
    faces = faces.to(device=color.device, dtype=torch.long)
    if faces.shape[0] == 0:
        return color
    if neighbours is None:
        neighbours = edge_neighbours(faces)
    clip = clip.expand(batch, -1, -1)
    w = clip[..., 3]
    safe_w = torch.where(w > 0, w, torch.ones_like(w))
    sx = (clip[..., 0] / safe_w + 1.0) * (0.5 * width)  # [B, V] pixel coordinates
    sy = (1.0 - clip[..., 1] / safe_w) * (0.5 * height)

    tri = raster.triangle_index
    depth = raster.ndc_depth
    flat_color = color.reshape(-1, channels)
    pixel = torch.arange(batch * height * width, device=color.device).reshape(batch, height, width)
    out = flat_color
    for axis in (2, 1):  # horizontal pairs, then vertical pairs
        n = tri.shape[axis]
        first = [slice(None)] * 3
        second = [slice(None)] * 3
        first[axis], second[axis] = slice(0, n - 1), slice(1, n)
        t0, t1 = tri[tuple(first)], tri[tuple(second)]
        differ = (t0 != t1).reshape(-1)
        if not differ.any():
            continue
        d0, d1 = depth[tuple(first)].reshape(-1)[differ], depth[tuple(second)].reshape(-1)[differ]
        p0, p1 = pixel[tuple(first)].reshape(-1)[differ], pixel[tuple(second)].reshape(-1)[differ]
        a0, a1 = t0.reshape(-1)[differ], t1.reshape(-1)[differ]
        near_first = d0 <= d1  # background depth is +inf
        front = torch.where(near_first, a0, a1)
        near_pixel = torch.where(near_first, p0, p1)
        far_pixel = torch.where(near_first, p1, p0)
        out = out + _blend(
            flat_color, front, near_pixel, far_pixel, sx, sy, faces, neighbours, height, width
        )
    return out.reshape(batch, height, width, channels)


def _blend(
    flat_color: Tensor, front: Tensor, near_pixel: Tensor, far_pixel: Tensor,
    sx: Tensor, sy: Tensor, faces: Tensor, neighbours: Tensor, height: int, width: int,
) -> Tensor:
    """Colour change Float[B*H*W, C] from one direction's pixel pairs (front triangle per pair)."""
    per_image = height * width
    image = torch.div(near_pixel, per_image, rounding_mode="floor")

    def centre(pix: Tensor) -> tuple[Tensor, Tensor]:
        local = pix % per_image
        return (local % width).to(sx.dtype) + 0.5, torch.div(local, width, rounding_mode="floor").to(sx.dtype) + 0.5

    nx, ny = centre(near_pixel)
    fx, fy = centre(far_pixel)
    corners = faces[front]  # [N, 3]
    vx, vy = sx[image[:, None], corners], sy[image[:, None], corners]  # [N, 3]
    # Edge e runs from corner e+1 to corner e+2.
    ax, ay = vx[:, [1, 2, 0]], vy[:, [1, 2, 0]]
    bx, by = vx[:, [2, 0, 1]], vy[:, [2, 0, 1]]
    e_near = (bx - ax) * (ny[:, None] - ay) - (by - ay) * (nx[:, None] - ax)
    e_far = (bx - ax) * (fy[:, None] - ay) - (by - ay) * (fx[:, None] - ax)
    crosses = (e_near.detach() * e_far.detach()) < 0
    denom = torch.where(crosses, e_near - e_far, torch.ones_like(e_near))
    t = torch.where(crosses, e_near / denom, torch.full_like(e_near, 2.0))
    t_min, edge = t.detach().min(1)
    valid = t_min <= 1.0
    # Silhouette: no neighbour across that edge, or a neighbour facing the other way on screen.
    with torch.no_grad():
        area = _screen_area(vx, vy)
        other = neighbours[front, edge]
        other_corners = faces[other.clamp(min=0)]
        other_area = _screen_area(sx[image[:, None], other_corners], sy[image[:, None], other_corners])
        silhouette = (other < 0) | (torch.sign(other_area) != torch.sign(area))
        keep = valid & silhouette
    if not keep.any():
        return torch.zeros_like(flat_color)
    t = t.gather(1, edge[:, None])[:, 0][keep]
    near_pixel, far_pixel = near_pixel[keep], far_pixel[keep]
    c_near, c_far = flat_color[near_pixel], flat_color[far_pixel]
    into_far = (t - 0.5).clamp(min=0.0)[:, None]
    into_near = (0.5 - t).clamp(min=0.0)[:, None]
    delta = torch.zeros_like(flat_color)
    delta = delta.index_add(0, far_pixel, into_far * (c_near - c_far))
    return delta.index_add(0, near_pixel, into_near * (c_far - c_near))


def _screen_area(x: Tensor, y: Tensor) -> Tensor:
    """Twice the signed screen area of triangles Float[N, 3] x/y."""
    return (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
