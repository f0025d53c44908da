"""Density activations of the radiance field (spec §3.9).

Example::

    sigma = trunc_exp(raw)              # exp, but with a gradient that cannot overflow
    sigma = biased_softplus(raw, 0.0)   # the 'softplus' density activation
    raw = inverse_density_activation("exp")(sigma)
    sigma = density_activation("exp")(raw)
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

# exp(15) ~ 3.3e6: large enough that real densities never reach the clamp, small enough that one
# sample's gradient cannot become inf in fp16/fp32 and poison the hash table.
_TRUNC_EXP_GRAD_CLAMP = 15.0


class _TruncExp(torch.autograd.Function):
    """exp(x) computed in fp32, with backward ``g * exp(min(x, 15))``."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.float()  # fp16 exp overflows at x > 11; density must stay finite under autocast
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad_output * torch.exp(x.clamp(max=_TRUNC_EXP_GRAD_CLAMP))


def trunc_exp(x: Tensor) -> Tensor:
    """Truncated-gradient exponential: forward ``exp(x)`` (fp32), backward ``g * exp(min(x, 15))``."""
    return _TruncExp.apply(x)


def biased_softplus(x: Tensor, bias: float = 0.0) -> Tensor:
    """``softplus(x - bias)``: the 'softplus' density activation (stable-dreamfusion uses bias 0)."""
    return F.softplus(x - bias)


# Densities at or below this read as it when inverted (0 has no preimage).
_SMALLEST_DENSITY = 1e-30


def density_activation(name: str) -> Callable[[Tensor], Tensor]:
    """The density activation ``name`` ('exp': :func:`trunc_exp`; 'softplus': :func:`biased_softplus`, bias 0)."""
    if name == "exp":
        return trunc_exp
    if name == "softplus":
        return biased_softplus
    raise ValueError(f"unknown density activation {name!r}")


def inverse_density_activation(name: str) -> Callable[[Tensor], Tensor]:
    """The inverse of the density activation ``name`` ('exp' or 'softplus', bias 0): density
    Float[N] >= 0 -> the field's raw output (0 and below map to the preimage of 1e-30)."""
    if name == "exp":
        return lambda sigma: torch.log(sigma.float().clamp_min(_SMALLEST_DENSITY))
    if name == "softplus":  # log(exp(y) - 1), written to stay finite for small and large y
        def inverse_softplus(sigma: Tensor) -> Tensor:
            y = sigma.float().clamp_min(_SMALLEST_DENSITY)
            return y + torch.log(-torch.expm1(-y))
        return inverse_softplus
    raise ValueError(f"unknown density activation {name!r}")
