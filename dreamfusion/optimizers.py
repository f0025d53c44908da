"""Optimisers, learning-rate schedules and the weight EMA of the NeRF stage (spec §3.10).

    groups = model.get_params(5 * cfg.lr)             # [{"params": ..., "lr": ...}, ...]
    optimizer = build_optimizer(cfg.optim, groups)    # Adan (default) or Adam
    scheduler = build_lr_scheduler(cfg.backbone, optimizer, cfg.iters)
    ema = ExponentialMovingAverage(model.parameters(), decay=0.95)

Adan is our own implementation of the update rule stable-dreamfusion uses (sail-sg's Adan with
``no_prox=False``), written from the formulas in the spec and tested against a hand-computed update.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor

from dreamfusion.errors import UserError


class Adan(torch.optim.Optimizer):
    """Adaptive Nesterov momentum (Xie et al. 2022), as used by stable-dreamfusion.

    Per step, with ``g`` the gradient and ``g'`` the previous step's (clipped) gradient
    (``g' = g`` on the first step)::

        g  ← g · min(1, max_grad_norm / (‖all grads‖₂ + eps))      # global clip, if max_grad_norm > 0
        m  ← β1·m + (1-β1)·g
        v  ← β2·v + (1-β2)·(g - g')
        n  ← β3·n + (1-β3)·(g + β2·(g - g'))²
        den = √n / √(1-β3^k) + eps
        p  ← p - lr/(1-β1^k) · m/den - lr·β2/(1-β2^k) · v/den
        p  ← p / (1 + lr·wd)              (no_prox=False; no_prox=True: p·(1 - lr·wd) first)

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        betas: (β1, β2, β3), default (0.98, 0.92, 0.99).
        eps: denominator epsilon (also used in the clip ratio).
        weight_decay: decoupled decay ``wd``.
        max_grad_norm: global gradient-norm clip; ``<= 0`` disables it.
        no_prox: apply decay as ``p·(1-lr·wd)`` before the update instead of ``p/(1+lr·wd)`` after.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float, float] = (0.98, 0.92, 0.99),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        max_grad_norm: float = 0.0,
        no_prox: bool = False,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or max_grad_norm < 0:
            raise ValueError("Adan: lr, eps, weight_decay and max_grad_norm must be >= 0")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Adan: betas must be in [0, 1), got {betas}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        max_grad_norm=max_grad_norm, no_prox=no_prox)
        super().__init__(params, defaults)

    @torch.no_grad()
    def _clip_factor(self) -> Tensor | float:
        max_norm = self.defaults["max_grad_norm"]
        if max_norm <= 0:
            return 1.0
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return 1.0
        # half-precision gradients are summed in fp32; fp32/fp64 ones in their own precision.
        total = torch.sqrt(sum((gr.float() if gr.dtype in (torch.float16, torch.bfloat16) else gr).pow(2).sum()
                               for gr in grads))
        # stays a tensor: no device sync on CUDA.
        return torch.clamp(max_norm / (total + self.defaults["eps"]), max=1.0)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        clip = self._clip_factor()
        for group in self.param_groups:
            beta1, beta2, beta3 = group["betas"]
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_diff"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["prev_grad"] = None
                state["step"] += 1
                k = state["step"]
                m, v, n = state["exp_avg"], state["exp_avg_diff"], state["exp_avg_sq"]
                grad = p.grad * clip if not (isinstance(clip, float) and clip == 1.0) else p.grad
                # Few passes over memory (the hash table is large): `prev` is reused as the buffer
                # for diff, then the Nesterov term, then the denominator, and takes grad at the end.
                prev = state["prev_grad"]
                if prev is None:
                    prev = state["prev_grad"] = torch.zeros_like(grad)  # diff = 0 on the first step
                else:
                    torch.sub(grad, prev, out=prev)  # diff
                m.lerp_(grad, 1 - beta1)
                v.lerp_(prev, 1 - beta2)
                torch.add(grad, prev, alpha=beta2, out=prev)  # Nesterov term g + β2·diff
                n.mul_(beta3).addcmul_(prev, prev, value=1 - beta3)
                # m/(√n/√c3 + eps) = √c3·m/(√n + eps·√c3), c3 = 1 - β3^k: one denominator for both terms
                s3 = math.sqrt(1 - beta3**k)
                denom = torch.sqrt(n, out=prev).add_(eps * s3)
                if group["no_prox"] and wd:
                    p.mul_(1 - lr * wd)
                p.addcdiv_(m, denom, value=-lr * s3 / (1 - beta1**k))
                p.addcdiv_(v, denom, value=-lr * beta2 * s3 / (1 - beta2**k))
                if not group["no_prox"] and wd:
                    p.div_(1 + lr * wd)
                prev.copy_(grad)
        return loss


def build_optimizer(name: str, param_groups: list[dict]) -> torch.optim.Optimizer:
    """The optimiser of ``--optim`` over parameter groups that already carry their ``lr``.

    * ``adan``: Adan, eps 1e-8, weight decay 2e-5, global grad-norm clip 5 (stable-dreamfusion).
    * ``adam``: Adam, betas (0.9, 0.99), eps 1e-15.
    """
    if name == "adan":
        return Adan(param_groups, eps=1e-8, weight_decay=2e-5, max_grad_norm=5.0)
    if name == "adam":
        return torch.optim.Adam(param_groups, betas=(0.9, 0.99), eps=1e-15)
    raise UserError(f"unknown --optim {name!r}: choose adan or adam")


def build_lr_scheduler(backbone: str, optimizer: torch.optim.Optimizer, iters: int):
    """Per-iteration LR schedule, per parameter group: the rate decays geometrically to
    ``final_lr_factor`` × its start over ``iters`` (``lr · f^min(it/iters, 1)``). A group's own
    ``final_lr_factor`` key wins; otherwise ``vanilla`` decays to 0.1 (stable-dreamfusion) and the
    other backbones stay constant."""
    total = max(iters, 1)
    default = 0.1 if backbone == "vanilla" else 1.0

    def schedule(factor: float):
        return lambda it: factor ** min(it / total, 1.0)

    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, [schedule(float(g.get("final_lr_factor", default))) for g in optimizer.param_groups])


class ExponentialMovingAverage:
    """Shadow copy of parameters: ``s ← s - (1-d)·(s - p)``.

    With ``use_num_updates`` (torch_ema's default, which stable-dreamfusion inherits) the decay of
    the k-th update is ``min(decay, (1+k)/(10+k))``, so early averages follow the weights closely.

    ``store``/``copy_to``/``restore`` swap the averaged weights in for validation and back.
    """

    def __init__(self, parameters: Iterable[Tensor], decay: float, use_num_updates: bool = True):
        if not 0.0 <= decay <= 1.0:
            raise ValueError("EMA decay must be in [0, 1]")
        self.decay = decay
        self.num_updates: int | None = 0 if use_num_updates else None
        self._params = [p for p in parameters if p.requires_grad]
        self.shadow = [p.detach().clone() for p in self._params]
        self._stored: list[Tensor] | None = None

    def current_decay(self) -> float:
        """Decay the next :meth:`update` will use."""
        if self.num_updates is None:
            return self.decay
        k = self.num_updates + 1
        return min(self.decay, (1 + k) / (10 + k))

    @torch.no_grad()
    def update(self) -> None:
        d = self.current_decay()
        if self.num_updates is not None:
            self.num_updates += 1
        for s, p in zip(self.shadow, self._params):
            s.sub_((1.0 - d) * (s - p.detach()))

    @torch.no_grad()
    def store(self) -> None:
        self._stored = [p.detach().clone() for p in self._params]

    @torch.no_grad()
    def copy_to(self) -> None:
        for s, p in zip(self.shadow, self._params):
            p.copy_(s)

    @torch.no_grad()
    def restore(self) -> None:
        if self._stored is None:
            raise RuntimeError("EMA.restore() without store()")
        for s, p in zip(self._stored, self._params):
            p.copy_(s)
        self._stored = None

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates,
                "shadow": [s.detach().clone() for s in self.shadow]}

    def load_state_dict(self, state: dict) -> None:
        shadow = state["shadow"]
        if len(shadow) != len(self._params) or any(
                a.shape != b.shape for a, b in zip(shadow, self._params)):
            raise ValueError("EMA state does not match the model's parameters")
        self.decay = state["decay"]
        self.num_updates = state["num_updates"]
        self.shadow = [s.to(device=p.device, dtype=p.dtype).clone()
                       for s, p in zip(shadow, self._params)]
