"""A pure-PyTorch triangle rasterizer: coverage, depth test, perspective-correct barycentrics.

Used to bake textures in UV space and to render meshes on CPU. nvdiffrast is used instead when it is
importable and the tensors are on CUDA (never required).

Example:
    >>> clip = torch.tensor([[-1., -1, 0, 1], [1, -1, 0, 1], [-1, 1, 0, 1]])
    >>> raster = rasterize(clip, torch.tensor([[0, 1, 2]]), height=8, width=8)
    >>> colours = interpolate(torch.eye(3), torch.tensor([[0, 1, 2]]), raster)   # [1, 8, 8, 3]

Image convention (same as `cameras.get_rays`): pixel (row j, column i) has its centre at
(i + 0.5, j + 0.5) in pixel units, row 0 is the TOP of the image, i.e. NDC y = +1. So NDC
(x, y) maps to pixel coordinates ((x + 1) / 2 * W, (1 - y) / 2 * H).

Rules:
- A pixel belongs to a triangle when its centre is strictly inside, or exactly on an edge that the
  tie-break rule gives to this triangle (each shared edge goes to exactly one of its two
  triangles, so a closed mesh has no gaps and no pixel drawn twice).
- Both windings are drawn (no back-face culling), like nvdiffrast.
- The depth test keeps the smallest NDC z; equal depths go to the lower triangle index.
- Pixels whose NDC z lies outside [-1, 1] are dropped (near/far planes). Triangles with a vertex at
  or behind the eye (clip w <= 0) are dropped whole: there is no near-plane clipping, so keep the
  mesh in front of the camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Candidate (triangle, pixel) pairs tested at once; bounds peak memory (about 100 bytes each).
DEFAULT_MAX_CANDIDATES = 1 << 22


@dataclass
class Rasterization:
    """Per-pixel result of `rasterize`.

    Attributes:
        triangle_index: Long[B, H, W], index into `faces`, -1 where no triangle covers the pixel.
        barycentric: Float[B, H, W, 3], perspective-correct weights of the triangle's 3 vertices
            (sum to 1 on covered pixels, 0 elsewhere).
        ndc_depth: Float[B, H, W], NDC z of the visible surface (linear in screen space), +inf
            where empty.
    """

    triangle_index: Tensor
    barycentric: Tensor
    ndc_depth: Tensor

    @property
    def mask(self) -> Tensor:
        """Bool[B, H, W]: pixels covered by a triangle."""
        return self.triangle_index >= 0


def nvdiffrast_available() -> bool:
    try:
        import nvdiffrast.torch  # noqa: F401
    except Exception:  # ImportError, or a broken CUDA build
        return False
    return True


def rasterize(
    clip_positions: Tensor,
    faces: Tensor,
    height: int,
    width: int,
    *,
    backend: str = "auto",
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
) -> Rasterization:
    """Rasterize triangles given in clip space.

    Args:
        clip_positions: Float[V, 4] or Float[B, V, 4], homogeneous clip coordinates (x, y, z, w).
        faces: Long[F, 3] vertex indices.
        height, width: output image size in pixels.
        backend: "torch" (pure PyTorch), "nvdiffrast" (needs CUDA tensors) or "auto" (nvdiffrast
            when importable and the tensors are on CUDA, else torch).
        max_candidates: memory bound of the torch backend (triangle-pixel pairs per chunk).

    Returns:
        Rasterization with tensors of batch size B (1 when `clip_positions` is [V, 4]).
    """
    if clip_positions.dim() == 2:
        clip_positions = clip_positions.unsqueeze(0)
    if clip_positions.dim() != 3 or clip_positions.shape[-1] != 4:
        raise ValueError(f"clip_positions must be [V,4] or [B,V,4], got {tuple(clip_positions.shape)}")
    faces = faces.to(device=clip_positions.device, dtype=torch.long)
    if backend == "auto":
        backend = "nvdiffrast" if clip_positions.is_cuda and nvdiffrast_available() else "torch"
    if backend == "nvdiffrast":
        return _rasterize_nvdiffrast(clip_positions, faces, height, width)
    if backend != "torch":
        raise ValueError(f"unknown rasterizer backend {backend!r} (torch, nvdiffrast or auto)")
    results = [
        _rasterize_one(clip, faces, height, width, max_candidates) for clip in clip_positions
    ]
    return Rasterization(*(torch.stack(parts) for parts in zip(*results)))


def interpolate(attributes: Tensor, faces: Tensor, raster: Rasterization) -> Tensor:
    """Interpolate per-vertex attributes at every pixel with the rasterization's barycentrics.

    Args:
        attributes: Float[V, C] (shared by the batch) or Float[B, V, C].
        faces: Long[F, 3], the faces that were rasterized.
        raster: output of `rasterize`.

    Returns:
        Float[B, H, W, C]; zero on empty pixels. Differentiable with respect to `attributes`.
    """
    batch, height, width = raster.triangle_index.shape
    if attributes.dim() == 2:
        attributes = attributes.unsqueeze(0).expand(batch, -1, -1)
    faces = faces.to(device=attributes.device, dtype=torch.long)
    tri = raster.triangle_index.clamp(min=0).reshape(batch, -1)  # [B, P]
    corner_vertex = faces[tri]  # [B, P, 3]
    channels = attributes.shape[-1]
    gathered = torch.gather(
        attributes, 1, corner_vertex.reshape(batch, -1, 1).expand(-1, -1, channels)
    ).reshape(batch, -1, 3, channels)
    weights = raster.barycentric.reshape(batch, -1, 3, 1).to(attributes.dtype)
    return (gathered * weights).sum(dim=2).reshape(batch, height, width, channels)


# ---------------------------------------------------------------------------------------------
# Pure-PyTorch backend


def _screen_space(clip: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Float[V,4] clip -> pixel x [V], pixel y [V], NDC z [V], 1/w [V] (inf-free: w<=0 -> 0)."""
    w = clip[:, 3]
    safe_w = torch.where(w > 0, w, torch.ones_like(w))
    inv_w = torch.where(w > 0, 1.0 / safe_w, torch.zeros_like(w))
    x = (clip[:, 0] * inv_w + 1.0) * (0.5 * width)
    y = (1.0 - clip[:, 1] * inv_w) * (0.5 * height)
    return x, y, clip[:, 2] * inv_w, inv_w


def _edge_setup(faces: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, ...]:
    """Edge-function coefficients for each triangle.

    Edge e (opposite corner e) runs between the other two corners. Its function
    E(p) = A px + B py + C is computed from the endpoints in ascending vertex-index order and then
    negated when needed, so two triangles that share an edge compute bit-identical (opposite)
    values there: the tie-break below can then give the edge to exactly one of them.

    Returns:
        coeff_a, coeff_b, coeff_c: Float[F, 3] so that E_e(p) = a px + b py + c, oriented so
            that E_e is positive inside the triangle;
        owns_edge: Bool[F, 3], whether a pixel centre exactly on edge e belongs to this triangle;
        area_ok: Bool[F], the triangle has a non-zero, finite screen area.
    """
    start = faces[:, [1, 2, 0]]
    end = faces[:, [2, 0, 1]]
    low, high = torch.minimum(start, end), torch.maximum(start, end)
    swapped = (start > end).to(x.dtype) * -2.0 + 1.0  # +1 when start < end
    x0, y0, x1, y1 = x[low], y[low], x[high], y[high]
    # E(p) = (x1 - x0)(py - y0) - (y1 - y0)(px - x0), expanded
    coeff_a = -(y1 - y0)
    coeff_b = x1 - x0
    coeff_c = (y1 - y0) * x0 - (x1 - x0) * y0
    coeff_a, coeff_b, coeff_c = coeff_a * swapped, coeff_b * swapped, coeff_c * swapped
    # Orientation: the sum of the three edge functions at any point is twice the signed area.
    area2 = (coeff_c.sum(1) + coeff_a.sum(1) * x[faces].mean(1) + coeff_b.sum(1) * y[faces].mean(1))
    orient = torch.where(area2 < 0, -torch.ones_like(area2), torch.ones_like(area2))[:, None]
    coeff_a, coeff_b, coeff_c = coeff_a * orient, coeff_b * orient, coeff_c * orient
    area_ok = (area2 != 0) & torch.isfinite(area2)
    # The oriented edge direction is (b, -a); give the edge to the triangle for which that
    # direction points down (or right when horizontal). The neighbour sees the opposite direction.
    owns_edge = (coeff_a < 0) | ((coeff_a == 0) & (coeff_b > 0))
    return coeff_a, coeff_b, coeff_c, owns_edge, area_ok


def _rasterize_one(
    clip: Tensor, faces: Tensor, height: int, width: int, max_candidates: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Rasterize one view. Returns triangle_index [H,W], barycentric [H,W,3], ndc_depth [H,W]."""
    device = clip.device
    dtype = clip.dtype if clip.dtype in (torch.float32, torch.float64) else torch.float32
    num_pixels = height * width
    depth_buffer = torch.full((num_pixels,), float("inf"), device=device, dtype=dtype)
    index_buffer = torch.full((num_pixels,), -1, device=device, dtype=torch.long)

    with torch.no_grad():
        x, y, z, inv_w = _screen_space(clip.detach().to(dtype), height, width)
        coeff_a, coeff_b, coeff_c, owns_edge, area_ok = _edge_setup(faces, x, y)
        fx, fy = x[faces], y[faces]  # [F, 3]
        # Pixel centres i + 0.5 inside [min, max]  <=>  ceil(min - 0.5) <= i <= floor(max - 0.5).
        col_lo = torch.ceil(fx.amin(1) - 0.5).clamp(0, width - 1).long()
        col_hi = torch.floor(fx.amax(1) - 0.5).clamp(-1, width - 1).long()
        row_lo = torch.ceil(fy.amin(1) - 0.5).clamp(0, height - 1).long()
        row_hi = torch.floor(fy.amax(1) - 0.5).clamp(-1, height - 1).long()
        box_w = (col_hi - col_lo + 1).clamp(min=0)
        box_h = (row_hi - row_lo + 1).clamp(min=0)
        in_front = (clip[faces, 3] > 0).all(1)
        counts = torch.where(in_front & area_ok, box_w * box_h, torch.zeros_like(box_w))

        for first, last in _chunks(counts, max_candidates):
            chunk_counts = counts[first:last]
            total = int(chunk_counts.sum())
            if total == 0:
                continue
            local = torch.repeat_interleave(torch.arange(last - first, device=device), chunk_counts)
            tri = local + first
            starts = torch.cumsum(chunk_counts, 0) - chunk_counts
            offset = torch.arange(total, device=device) - starts[local]
            col = col_lo[tri] + offset % box_w[tri]
            row = row_lo[tri] + torch.div(offset, box_w[tri], rounding_mode="floor")
            px = (col.to(dtype) + 0.5)[:, None]
            py = (row.to(dtype) + 0.5)[:, None]
            edge = coeff_a[tri] * px + coeff_b[tri] * py + coeff_c[tri]  # [N, 3]
            inside = ((edge > 0) | ((edge == 0) & owns_edge[tri])).all(1)
            edge, tri, pixel = edge[inside], tri[inside], (row * width + col)[inside]
            bary = edge / edge.sum(1, keepdim=True)
            depth = (bary * z[faces[tri]]).sum(1)
            keep = (depth >= -1.0) & (depth <= 1.0)  # also drops NaN from rounding
            _depth_test(depth_buffer, index_buffer, pixel[keep], tri[keep], depth[keep])

    covered = index_buffer >= 0
    barycentric = torch.zeros(num_pixels, 3, device=device, dtype=dtype)
    if covered.any():
        barycentric[covered] = _perspective_barycentric(
            clip.to(dtype), faces, index_buffer[covered], covered.nonzero()[:, 0], height, width
        )
    return (
        index_buffer.reshape(height, width),
        barycentric.reshape(height, width, 3),
        depth_buffer.reshape(height, width),
    )


def _chunks(counts: Tensor, max_candidates: int) -> list[tuple[int, int]]:
    """Split triangles into consecutive ranges whose candidate counts sum to <= max_candidates
    (a single triangle bigger than that gets a range of its own)."""
    if counts.numel() == 0:
        return []
    cumulative = torch.cumsum(counts, 0).cpu()
    ranges, first, base = [], 0, 0
    num = counts.numel()
    while first < num:
        # last = first index whose cumulative count exceeds base + max_candidates
        last = int(torch.searchsorted(cumulative, base + max_candidates, right=True))
        last = max(last, first + 1)
        ranges.append((first, min(last, num)))
        first = min(last, num)
        base = int(cumulative[first - 1])
    return ranges


def _depth_test(
    depth_buffer: Tensor, index_buffer: Tensor, pixel: Tensor, tri: Tensor, depth: Tensor
) -> None:
    """Merge candidate fragments into the buffers in place (nearest wins, ties -> lower index)."""
    if pixel.numel() == 0:
        return
    new_depth = depth_buffer.scatter_reduce(0, pixel, depth, reduce="amin")
    winner = depth == new_depth[pixel]
    candidate = torch.full_like(index_buffer, torch.iinfo(torch.long).max)
    candidate.scatter_reduce_(0, pixel[winner], tri[winner], reduce="amin")
    closer = new_depth < depth_buffer
    # Same depth as the stored fragment: the lower triangle index wins (candidate is "infinite"
    # where this chunk has no fragment at that pixel).
    tie_won = (new_depth == depth_buffer) & (candidate < index_buffer)
    index_buffer.copy_(torch.where(closer | tie_won, candidate, index_buffer))
    depth_buffer.copy_(new_depth)


def _perspective_barycentric(
    clip: Tensor, faces: Tensor, tri: Tensor, pixel: Tensor, height: int, width: int
) -> Tensor:
    """Perspective-correct barycentrics of `pixel` centres in triangles `tri`: Float[N, 3].

    Recomputed outside no_grad so gradients reach `clip` (through the weights, not coverage).
    """
    corners = clip[faces[tri]]  # [N, 3, 4]
    inv_w = 1.0 / corners[..., 3]
    sx = (corners[..., 0] * inv_w + 1.0) * (0.5 * width)
    sy = (1.0 - corners[..., 1] * inv_w) * (0.5 * height)
    px = (pixel % width).to(clip.dtype) + 0.5
    py = torch.div(pixel, width, rounding_mode="floor").to(clip.dtype) + 0.5
    # Screen-space barycentrics from sub-triangle areas.
    x0, x1, x2 = sx.unbind(1)
    y0, y1, y2 = sy.unbind(1)
    b0 = (x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)
    b1 = (x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)
    b2 = (x0 - px) * (y1 - py) - (x1 - px) * (y0 - py)
    screen = torch.stack([b0, b1, b2], 1)
    screen = screen / screen.sum(1, keepdim=True)
    # Attributes are linear in 1/w-weighted screen space.
    weighted = screen * inv_w
    return weighted / weighted.sum(1, keepdim=True)


# ---------------------------------------------------------------------------------------------
# nvdiffrast backend (optional, CUDA)


_NVDIFFRAST_CONTEXT = None


def _rasterize_nvdiffrast(clip: Tensor, faces: Tensor, height: int, width: int) -> Rasterization:
    global _NVDIFFRAST_CONTEXT
    import nvdiffrast.torch as dr

    if _NVDIFFRAST_CONTEXT is None:
        _NVDIFFRAST_CONTEXT = dr.RasterizeCudaContext(device=clip.device)
    rast, _ = dr.rasterize(
        _NVDIFFRAST_CONTEXT, clip.float().contiguous(), faces.int().contiguous(), (height, width)
    )
    # nvdiffrast's row 0 is NDC y = -1 (bottom); ours is the top.
    rast = rast.flip(1)
    u, v, depth, tri_plus_one = rast.unbind(-1)
    covered = tri_plus_one > 0
    barycentric = torch.stack([u, v, 1.0 - u - v], -1) * covered[..., None]
    return Rasterization(
        triangle_index=tri_plus_one.long() - 1,
        barycentric=barycentric,
        ndc_depth=torch.where(covered, depth, torch.full_like(depth, float("inf"))),
    )
