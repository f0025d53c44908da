"""Input encodings of the radiance field: multiresolution hash grid and frequency encoding.

Pure PyTorch (CPU, CUDA, MPS); an optional tiny-cuda-nn hash grid is used only when
``import tinycudann`` works. Spec §3.9 gives the settings; the defaults here are stable-dreamfusion's.

Example::

    enc = make_encoder("hashgrid", bound=1.0)            # 16 levels x 2 features = 32 outputs
    feats = enc(torch.rand(1024, 3) * 2 - 1)             # [1024, 32]
    enc_bg = make_encoder("frequency", multires=6)       # 3 + 3*2*6 = 39 outputs

Hash grid layout (the same as stable-dreamfusion's CUDA ``GridEncoder``): level ``l`` has resolution
``ceil(base * s^l)`` with ``s = (finest/base)^(1/(L-1))``; a level is stored densely while
``(res+1)^3 <= 2^log2_hashmap_size`` (index ``x + y(res+1) + z(res+1)^2``), otherwise in a table of
``2^log2_hashmap_size`` entries indexed by the instant-NGP hash ``(x*1 ^ y*2654435761 ^ z*805459861)
mod T``. Inputs in [-bound, bound] map to [0, 1]; ``pos = clamp(u*res - 0.5, 0, res-1)``
(align_corners=False); corners are interpolated linearly or with smoothstep weights; points outside
the cube encode to 0.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from .errors import UserError
from .profiling import section
from .threadpool import parallel_map

PRIMES = (1, 2654435761, 805459861)
"""instant-NGP spatial-hash primes for x, y, z."""

# --------------------------------------------------------------------------------------------------
# Hash grid: per-level corner indices and interpolation weights
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridLevel:
    """Static description of one hash-grid level."""

    resolution: int
    offset: int  # first row of this level in the embedding table
    size: int  # rows of this level (a multiple of 8)
    hashed: bool
    stride_y: int  # dense: res+1;      hashed: prime_y mod size
    stride_z: int  # dense: (res+1)^2;  hashed: prime_z mod size


def grid_levels(num_levels: int, base_resolution: int, desired_resolution: float, log2_hashmap_size: int) -> list[GridLevel]:
    """The level table of a hash grid (resolutions, table offsets/sizes, dense or hashed)."""
    table = 2**log2_hashmap_size
    scale = math.exp2(math.log2(desired_resolution / base_resolution) / (num_levels - 1)) if num_levels > 1 else 1.0
    levels, offset = [], 0
    for level in range(num_levels):
        res = int(math.ceil(base_resolution * scale**level))
        dense_rows = (res + 1) ** 3
        if dense_rows <= table:
            size = int(math.ceil(dense_rows / 8) * 8)
            levels.append(GridLevel(res, offset, size, False, res + 1, (res + 1) ** 2))
        else:
            # Reducing the primes mod T (a power of two) first gives the same low bits as the uint32
            # products and keeps every product below 2^31 (coordinates < 2^12, primes mod T < 2^19).
            levels.append(GridLevel(res, offset, table, True, PRIMES[1] % table, PRIMES[2] % table))
            size = table
        offset += size
    return levels


def level_indices_weights(
    uT: Tensor, res: int, stride_y: int, stride_z: int, hashed: bool, mask: int, smoothstep: bool, wide: bool = False
) -> tuple[Tensor, Tensor]:
    """Corner rows and interpolation weights of one level, corner-major.

    Args:
        uT: [3, N] positions in [0, 1] (float32), coordinate-major.
        res, stride_y, stride_z, hashed, mask: from :class:`GridLevel` (mask = table size - 1).
        wide: int64 index math (tables so large that res * T >= 2^31).
    Returns:
        idx: [8, N] int32 (int64 if wide) rows relative to the level's offset, corner k = bx + 2 by + 4 bz.
        w: [8, N] float32 weights (sum 1 inside the cube, 0 for points outside it).

    The corner-major layout keeps N as the contiguous innermost dimension of every broadcast, which
    TensorIterator vectorises; point-major [N, 2, 2, 2] broadcasts are ~3x slower on CPU.
    """
    pos = (uT * res - 0.5).clamp(0.0, res - 1.0)
    p0 = pos.floor()
    f = pos - p0
    if smoothstep:
        f = f * f * (3.0 - 2.0 * f)
    itype = torch.int64 if wide else torch.int32
    c0 = p0.to(itype)
    c = torch.stack([c0, (c0 + 1).clamp(max=res - 1)], 1)  # [3, 2, N]: per-axis corner coordinates
    c = c * torch.tensor([1, stride_y, stride_z], dtype=itype, device=uT.device).view(3, 1, 1)
    # Per-axis broadcasting: combine the 2 values per axis into 8 corners with 2 ops instead of 8x3.
    if hashed:
        c = c & mask
        idx = (c[2][:, None, None] ^ c[1][None, :, None]) ^ c[0][None, None, :]
    else:
        idx = (c[2][:, None, None] + c[1][None, :, None]) + c[0][None, None, :]
    inside = ((uT >= 0) & (uT <= 1)).all(0).to(uT.dtype)  # stable-dreamfusion: 0 outside the cube
    w1 = torch.stack([1.0 - f, f], 1)  # [3, 2, N]
    wx = w1[0] * inside
    w = (w1[2][:, None, None] * w1[1][None, :, None]) * wx[None, None, :]
    return idx.reshape(8, -1), w.reshape(8, -1)


_compiled_indices_weights = None


def _get_compiled_indices_weights():
    """``level_indices_weights`` compiled with torch.compile (one fused loop per level kind)."""
    global _compiled_indices_weights
    if _compiled_indices_weights is None:
        _compiled_indices_weights = torch.compile(level_indices_weights, dynamic=True)
    return _compiled_indices_weights


def _scatter_level(grad_table: Tensor, idx: Tensor, w: Tensor, grad_level: Tensor) -> None:
    """grad_table[idx[c, n]] += w[c, n] * grad_level[:, n] for one level.

    grad_table [S, C] (rows of this level), idx/w [8, N], grad_level [C, N] (feature-major, contiguous).
    """
    if grad_table.device.type != "cpu":
        src = w.unsqueeze(-1) * grad_level.T.unsqueeze(0)  # [8, N, C]
        grad_table.index_add_(0, idx.reshape(-1), src.reshape(-1, grad_table.shape[1]))
        return
    # On CPU only the 1-D index_add_ is a tight loop, and w * g with N innermost is vectorised; a
    # [8, N, C] broadcast with C = 2 innermost is ~5x slower than the two 1-D products.
    flat = idx.reshape(-1)
    for ch in range(grad_table.shape[1]):
        grad_table[:, ch].index_add_(0, flat, (w * grad_level[ch]).reshape(-1))


class _HashGridFunction(torch.autograd.Function):
    """Hash-grid encoding with a hand-written backward (gradient w.r.t. the table only).

    Everything runs level by level with N (points) as the contiguous innermost dimension, the
    layout that CPU kernels vectorise: corner rows/weights are [8, N]; a corner's features are
    gathered with one 1-D ``index_select`` (an fp32 pair read as one 8-byte element) and reduced over
    the 8 corners into rows of a feature-major [L*C, N] result, returned as its transposed view
    [N, L*C] (``nn.Linear`` consumes that layout without a copy). Backward: per level and feature,
    one 1-D ``index_add_`` of ``w * grad`` into the table column. On CPU the levels run on a thread
    pool (they touch disjoint rows; ``index_add_`` itself is serial).
    """

    @staticmethod
    def forward(ctx, u: Tensor, table: Tensor, encoder: "HashGridEncoder", n_active: int, need_grad: bool) -> Tensor:  # type: ignore[override]
        n_points, channels = u.shape[0], table.shape[1]
        levels = encoder.levels
        index_fn = encoder._index_fn()
        alloc = torch.zeros if n_active < len(levels) else torch.empty
        out_t = alloc(len(levels) * channels, n_points, dtype=table.dtype, device=u.device)
        # (ctx.needs_input_grad is True even under no_grad, hence the explicit need_grad)
        save = need_grad and n_points * n_active * 64 <= encoder.max_saved_bytes
        uT = u.T.contiguous()
        table_data = table.detach()
        pack64 = channels * table.element_size() == 8 and table.is_contiguous()

        block = encoder.block_points if u.device.type == "cpu" else n_points
        itype = torch.int64 if encoder.wide_indices else torch.int32

        def level(li: int):
            lv = levels[li]
            rows = table_data[lv.offset : lv.offset + lv.size]
            if save:
                idx_all = torch.empty(8, n_points, dtype=itype, device=u.device)
                w_all = torch.empty(8, n_points, dtype=table.dtype, device=u.device)
            # Blocks of points keep the [8, n] corner arrays in cache (all points at once stream
            # them through memory: half the throughput at a million points).
            for s in range(0, n_points, max(block, 1)):
                e = min(s + block, n_points)
                idx, w = index_fn(uT[:, s:e], lv.resolution, lv.stride_y, lv.stride_z, lv.hashed, lv.size - 1, encoder.smoothstep, encoder.wide_indices)
                w = w.to(table.dtype)
                flat = idx.reshape(-1)
                if pack64:
                    # one 8-byte gather per corner (both features share a cache line): half the random reads
                    vals = torch.index_select(rows.view(torch.float64).view(-1), 0, flat).view(table.dtype).view(8, e - s, channels)
                    for ch in range(channels):
                        torch.sum(vals[..., ch] * w, 0, out=out_t[li * channels + ch, s:e])
                else:
                    for ch in range(channels):
                        vals = torch.index_select(rows[:, ch], 0, flat).view(8, e - s)
                        torch.sum(vals.mul_(w), 0, out=out_t[li * channels + ch, s:e])
                if save:
                    idx_all[:, s:e], w_all[:, s:e] = idx, w
            return (idx_all, w_all) if save else ()

        # Levels are independent: on CPU they run on a thread pool (largest speed-up per core).
        saved = [t for pair in parallel_map(level, range(n_active), u.device) for t in pair]
        ctx.encoder, ctx.n_active, ctx.saved_indices = encoder, n_active, save
        ctx.save_for_backward(u, *saved)
        ctx.table_shape, ctx.table_dtype = table.shape, table.dtype
        return out_t.T

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        with section("field"):
            return _HashGridFunction._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out: Tensor):
        u, *saved = ctx.saved_tensors
        encoder, n_active = ctx.encoder, ctx.n_active
        levels, channels = encoder.levels, ctx.table_shape[1]
        grad_t = grad_out.to(ctx.table_dtype).T.contiguous()  # [L*C, N]: rows contiguous per feature
        grad_table = torch.zeros(ctx.table_shape, dtype=ctx.table_dtype, device=u.device)
        index_fn = encoder._index_fn()
        uT = u.T.contiguous() if not ctx.saved_indices else None

        n_points = u.shape[0]
        block = encoder.block_points if u.device.type == "cpu" else n_points

        def level(li: int) -> None:
            lv = levels[li]
            for s in range(0, n_points, max(block, 1)):
                e = min(s + block, n_points)
                if ctx.saved_indices:
                    idx, w = saved[2 * li][:, s:e], saved[2 * li + 1][:, s:e]
                else:
                    idx, w = index_fn(uT[:, s:e], lv.resolution, lv.stride_y, lv.stride_z, lv.hashed, lv.size - 1, encoder.smoothstep, encoder.wide_indices)
                    w = w.to(ctx.table_dtype)
                _scatter_level(grad_table[lv.offset : lv.offset + lv.size], idx, w, grad_t[li * channels : (li + 1) * channels, s:e])

        parallel_map(level, range(n_active), u.device)
        return None, grad_table, None, None, None


class HashGridEncoder(nn.Module):
    """Multiresolution hash grid (instant-NGP / stable-dreamfusion ``GridEncoder``) in pure PyTorch.

    Args:
        input_dim: must be 3.
        num_levels, level_dim: L levels of F features; output dim L*F.
        base_resolution: resolution of level 0.
        desired_resolution: resolution of the finest level (stable-dreamfusion: 2048 * bound).
        log2_hashmap_size: rows per hashed level = 2^this.
        interpolation: 'linear' or 'smoothstep' (stable-dreamfusion's grid backbone uses smoothstep).
        bound: inputs live in [-bound, bound]^3.
        compile: use ``torch.compile`` for the corner index/weight math (that part ~3x faster, the
            whole field ~5-10% on CPU; the first call compiles for several seconds; needs a C++
            compiler on CPU).
        init_std: embeddings start at U(-init_std, init_std).

    ``forward(x [..., 3], max_level=None) -> [..., L*F]``. ``max_level`` in (0, 1] evaluates only the
    first ``clamp(ceil(max_level * L), 1, L)`` levels; the others output 0 (progressive level).
    The output is differentiable w.r.t. the embeddings; w.r.t. ``x`` only through a slower autograd
    path taken automatically when ``x.requires_grad`` (normals of the grid field use finite
    differences, so the fast path is what training runs).
    """

    def __init__(
        self,
        input_dim: int = 3,
        num_levels: int = 16,
        level_dim: int = 2,
        base_resolution: int = 16,
        desired_resolution: float = 2048,
        log2_hashmap_size: int = 19,
        interpolation: str = "smoothstep",
        bound: float = 1.0,
        compile: bool = False,
        init_std: float = 1e-4,
    ):
        super().__init__()
        if input_dim != 3:
            raise UserError(f"the hash grid encodes 3-D points, got input_dim={input_dim}")
        if interpolation not in ("linear", "smoothstep"):
            raise UserError(f"hash-grid interpolation must be 'linear' or 'smoothstep', got {interpolation!r}")
        if not 1 <= log2_hashmap_size <= 30:
            raise UserError(f"log2_hashmap_size must be in [1, 30], got {log2_hashmap_size}")
        self.input_dim, self.num_levels, self.level_dim = input_dim, num_levels, level_dim
        self.base_resolution, self.desired_resolution = base_resolution, desired_resolution
        self.log2_hashmap_size, self.interpolation, self.bound = log2_hashmap_size, interpolation, bound
        self.smoothstep = interpolation == "smoothstep"
        self.compile = compile
        self.output_dim = num_levels * level_dim
        self.levels = grid_levels(num_levels, base_resolution, desired_resolution, log2_hashmap_size)
        # int32 index math is exact while every coordinate x stride product stays below 2^31
        self.wide_indices = max(lv.resolution * max(lv.stride_y, lv.stride_z) for lv in self.levels) >= 2**31
        total = self.levels[-1].offset + self.levels[-1].size
        self.embeddings = nn.Parameter(torch.empty(total, level_dim).uniform_(-init_std, init_std))
        # Saving corner rows/weights for backward costs 64 bytes per point and level; above this
        # budget they are recomputed instead (cheap when compiled).
        self.max_saved_bytes = 1 << 30
        # Points per block of the CPU kernels (see _HashGridFunction.forward).
        self.block_points = 1 << 17

    def extra_repr(self) -> str:
        hashed = sum(lv.hashed for lv in self.levels)
        return (
            f"levels={self.num_levels}x{self.level_dim}, res {self.levels[0].resolution}->{self.levels[-1].resolution}, "
            f"T=2^{self.log2_hashmap_size}, dense={self.num_levels - hashed}, hashed={hashed}, "
            f"interpolation={self.interpolation}, params={self.embeddings.numel()}, compile={self.compile}"
        )

    def _index_fn(self):
        return _get_compiled_indices_weights() if self.compile else level_indices_weights

    def active_levels(self, max_level: float | None) -> int:
        if max_level is None:
            return self.num_levels
        return max(min(int(math.ceil(max_level * self.num_levels)), self.num_levels), 1)

    def forward(self, x: Tensor, max_level: float | None = None) -> Tensor:
        prefix = x.shape[:-1]
        x = x.reshape(-1, 3)
        if x.dtype != torch.float64:
            x = x.float()  # positions need fp32 even under autocast (res 2048 cells)
        u = ((x + self.bound) / (2 * self.bound)).contiguous()
        n_active = self.active_levels(max_level)
        if x.requires_grad and torch.is_grad_enabled():
            out = self._forward_autograd(u, n_active)
        else:
            need_grad = torch.is_grad_enabled() and self.embeddings.requires_grad
            out = _HashGridFunction.apply(u, self.embeddings, self, n_active, need_grad)  # [N, L*F], feature-major memory
        return out if len(prefix) == 1 else out.reshape(*prefix, self.output_dim)

    def _forward_autograd(self, u: Tensor, n_active: int) -> Tensor:
        """Plain-autograd encoding (differentiable w.r.t. the positions too)."""
        outs = []
        for li, lv in enumerate(self.levels):
            if li >= n_active:
                outs.append(u.new_zeros(u.shape[0], self.level_dim, dtype=self.embeddings.dtype))
                continue
            pos = (u * lv.resolution - 0.5).clamp(0.0, lv.resolution - 1.0)
            f = pos - pos.detach().floor()
            if self.smoothstep:
                f = f * f * (3.0 - 2.0 * f)
            # Rows from the same index math as the fast path, weights rebuilt with autograd.
            with torch.no_grad():
                idx, w_ref = level_indices_weights(
                    u.detach().T.contiguous(), lv.resolution, lv.stride_y, lv.stride_z, lv.hashed, lv.size - 1, self.smoothstep, self.wide_indices
                )
                idx = idx.T
            inside = (w_ref.sum(0).unsqueeze(-1) > 0).to(u.dtype)
            w1 = torch.stack([1.0 - f, f], -1)
            w = (w1[:, 2, :, None, None] * w1[:, 1, None, :, None] * w1[:, 0, None, None, :]).reshape(-1, 8) * inside
            rows = self.embeddings[lv.offset : lv.offset + lv.size]
            outs.append((rows[idx.long()] * w.unsqueeze(-1).to(rows.dtype)).sum(1))
        return torch.stack(outs, 1).reshape(u.shape[0], -1)


# --------------------------------------------------------------------------------------------------
# Frequency encoding
# --------------------------------------------------------------------------------------------------


class FrequencyEncoder(nn.Module):
    """``[x, sin(2^0 x), cos(2^0 x), ..., sin(2^(n-1) x), cos(2^(n-1) x)]`` (each block over 3 coords).

    ``forward(x [..., D], max_level=None) -> [..., D * (1 + 2 * multires)]``; ``max_level`` in (0, 1]
    keeps the first ``int(max_level * multires)`` octaves and zero-fills the rest (progressive level).
    """

    def __init__(self, input_dim: int = 3, multires: int = 6):
        super().__init__()
        self.input_dim, self.multires = input_dim, multires
        self.output_dim = input_dim * (1 + 2 * multires)
        self.register_buffer("freqs", 2.0 ** torch.arange(multires, dtype=torch.float32), persistent=False)

    def forward(self, x: Tensor, max_level: float | None = None, **_: object) -> Tensor:
        prefix = x.shape[:-1]
        x = x.reshape(-1, self.input_dim)
        angles = x[:, None, :] * self.freqs.to(x.dtype)[None, :, None]  # [N, n, D]
        feats = torch.stack([torch.sin(angles), torch.cos(angles)], 2)  # [N, n, 2, D]
        if max_level is not None:
            keep = int(max_level * self.multires)
            mask = (torch.arange(self.multires, device=x.device) < keep).to(x.dtype)
            feats = feats * mask[None, :, None, None]
        return torch.cat([x, feats.reshape(x.shape[0], -1)], -1).view(*prefix, self.output_dim)


# --------------------------------------------------------------------------------------------------
# Optional tiny-cuda-nn backend
# --------------------------------------------------------------------------------------------------


def tcnn_available() -> bool:
    """True when ``import tinycudann`` works and CUDA is available."""
    try:
        import tinycudann  # noqa: F401
    except Exception:  # ImportError, or a broken CUDA build raising anything at import
        return False
    return torch.cuda.is_available()


class TcnnHashGridEncoder(nn.Module):
    """tiny-cuda-nn HashGrid with the same settings (fp32); only constructed when importable.

    Its table layout and grid alignment are tiny-cuda-nn's own, so parameters do not transfer
    to :class:`HashGridEncoder`; outputs agree where the function is layout-independent (tests).
    """

    def __init__(
        self, num_levels=16, level_dim=2, base_resolution=16, desired_resolution=2048, log2_hashmap_size=19,
        interpolation="smoothstep", bound=1.0, **_: object,
    ):
        super().__init__()
        import tinycudann as tcnn

        scale = math.exp2(math.log2(desired_resolution / base_resolution) / (num_levels - 1))
        self.bound, self.num_levels, self.level_dim = bound, num_levels, level_dim
        self.output_dim = num_levels * level_dim
        self.encoder = tcnn.Encoding(
            n_input_dims=3,
            encoding_config={
                "otype": "HashGrid",
                "n_levels": num_levels,
                "n_features_per_level": level_dim,
                "log2_hashmap_size": log2_hashmap_size,
                "base_resolution": base_resolution,
                "per_level_scale": scale,
                "interpolation": "Smoothstep" if interpolation == "smoothstep" else "Linear",
            },
            dtype=torch.float32,
        )

    def forward(self, x: Tensor, max_level: float | None = None) -> Tensor:
        prefix = x.shape[:-1]
        u = (x.reshape(-1, 3) + self.bound) / (2 * self.bound)
        out = self.encoder(u).float()
        if max_level is not None:
            keep = max(min(int(math.ceil(max_level * self.num_levels)), self.num_levels), 1)
            out = torch.cat([out[:, : keep * self.level_dim], out.new_zeros(out.shape[0], (self.num_levels - keep) * self.level_dim)], 1)
        return out.view(*prefix, self.output_dim)


# --------------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------------


def make_encoder(name: str, **kwargs) -> nn.Module:
    """Build an encoder by name: 'hashgrid', 'hashgrid_tcnn' (falls back to 'hashgrid' with a
    warning when tiny-cuda-nn is not importable) or 'frequency'. Keyword arguments go to the class.
    Every encoder has ``output_dim`` and ``forward(x, max_level=None)``."""
    if name == "frequency":
        return FrequencyEncoder(input_dim=kwargs.get("input_dim", 3), multires=kwargs.get("multires", 6))
    if name == "hashgrid_tcnn":
        if tcnn_available():
            return TcnnHashGridEncoder(**kwargs)
        warnings.warn("tiny-cuda-nn is not available; using the pure-PyTorch hash grid instead", stacklevel=2)
        name = "hashgrid"
    if name == "hashgrid":
        return HashGridEncoder(**kwargs)
    raise UserError(f"unknown encoder {name!r} (choose hashgrid, hashgrid_tcnn or frequency)")
