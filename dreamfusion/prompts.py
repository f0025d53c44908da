"""View-dependent prompting: "<prompt>, front view" text and azimuth-interpolated embeddings.

stable-dreamfusion (spec §3.6) embeds "<text>, front view", "…, side view" and "…, back view" and,
for a camera at azimuth delta ``az`` (degrees in [-180, 180), relative to the default view), mixes

    -90 <= az < 90:  r = 1 - |az| / 90,          e = r·front + (1 - r)·side
    otherwise:       r = 1 - (|az| - 90) / 90,   e = r·side  + (1 - r)·back

The older 6-class mode picks one of six prompts by the camera's view class instead. Embeddings come
from any prior with ``encode_text(list[str]) -> Tensor [B, ...]`` and are cached per (model, prompt).

Example::

    prompts = ViewPrompts(prior, "a hamburger")
    cond = prompts.interpolated(batch.delta_azimuth)   # [B, ...]
"""

from __future__ import annotations

import torch
from torch import Tensor

from .cameras import VIEW_NAMES


def view_prompt(text: str, direction: int) -> str:
    """The prompt for a view class (0 front, 1 side, 2 back, 3 side, 4 overhead, 5 bottom)."""
    return f"{text}, {VIEW_NAMES[int(direction)]} view"


def interpolation_weights(delta_azimuth: Tensor) -> Tensor:
    """Weights [B, 3] of (front, side, back) embeddings for azimuth deltas [B] in degrees."""
    az = torch.remainder(torch.as_tensor(delta_azimuth, dtype=torch.float32) + 180.0, 360.0) - 180.0
    front_half = (az >= -90.0) & (az < 90.0)
    r_front = 1.0 - az.abs() / 90.0
    r_back = 1.0 - (az.abs() - 90.0) / 90.0
    weights = torch.zeros(az.shape + (3,))
    weights[..., 0] = torch.where(front_half, r_front, torch.zeros_like(az))
    weights[..., 1] = torch.where(front_half, 1.0 - r_front, r_back)
    weights[..., 2] = torch.where(front_half, torch.zeros_like(az), 1.0 - r_back)
    return weights


class EmbeddingCache:
    """Text embeddings cached by (model key, prompt): a prompt is encoded once per model."""

    def __init__(self) -> None:
        self._store: dict[tuple[str, str], Tensor] = {}

    def get(self, prior, prompts: list[str]) -> Tensor:
        key = getattr(prior, "cache_key", type(prior).__name__)
        missing = [p for p in dict.fromkeys(prompts) if (key, p) not in self._store]
        if missing:
            with torch.no_grad():
                encoded = prior.encode_text(missing)
            for prompt, embedding in zip(missing, encoded):
                self._store[(key, prompt)] = embedding
        return torch.stack([self._store[(key, p)] for p in prompts])

    def __len__(self) -> int:
        return len(self._store)


class ViewPrompts:
    """Conditioning embeddings of one prompt for a prior, per camera.

    Args:
        prior: object with ``encode_text(list[str]) -> Tensor [N, ...]``.
        text: the user prompt; ``negative`` is the unconditional prompt ("" by default).
        view_dependent: if False every camera gets the plain prompt.
    """

    def __init__(self, prior, text: str, negative: str = "", *, view_dependent: bool = True,
                 cache: EmbeddingCache | None = None):
        self.text, self.view_dependent = text, view_dependent
        self.cache = cache if cache is not None else EmbeddingCache()
        self.prior = prior
        self.uncond = self.cache.get(prior, [negative])[0]
        self.plain = self.cache.get(prior, [text])[0]
        names = ("front", "side", "back", "overhead", "bottom")
        self.views = dict(zip(names, self.cache.get(prior, [f"{text}, {n} view" for n in names])))

    def interpolated(self, delta_azimuth: Tensor) -> Tensor:
        """Conditional embeddings [B, ...] for azimuth deltas [B] (degrees)."""
        count = torch.as_tensor(delta_azimuth).numel()
        if not self.view_dependent:
            return self.plain.expand(count, *self.plain.shape).clone()
        weights = interpolation_weights(delta_azimuth).to(self.plain.device, self.plain.dtype)  # [B, 3]
        basis = torch.stack([self.views["front"], self.views["side"], self.views["back"]])  # [3, ...]
        return torch.einsum("bk,k...->b...", weights, basis)

    def by_direction(self, direction: Tensor) -> Tensor:
        """Conditional embeddings [B, ...] chosen by 6-way view class (the pre-2023-04 mode)."""
        if not self.view_dependent:
            return self.plain.expand(len(direction), *self.plain.shape).clone()
        table = torch.stack([self.views[VIEW_NAMES[k]] for k in range(6)])
        return table[torch.as_tensor(direction, dtype=torch.long, device=table.device)]

    def with_uncond(self, cond: Tensor) -> Tensor:
        """Classifier-free-guidance batch: [uncond × B ; cond] → [2B, ...]."""
        return torch.cat([self.uncond.expand_as(cond), cond])
