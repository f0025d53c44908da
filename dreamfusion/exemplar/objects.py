"""The built-in procedural objects: analytic SDF + albedo, selected from the prompt text.

World axes follow docs/conventions.md: y up, the object's front faces +z (azimuth 0). Every object
fits inside radius 0.85, well inside the renderer's bound of 1, and sits roughly centred on the
origin where the NeRF's density blob starts.

An object is a list of :class:`Part`; its SDF is the minimum over the parts and its albedo at a
point is the colour of the nearest part. A part's colour is either an RGB triple or a function of
the points (sesame seeds, mushroom spots).

Example::

    obj = get_object("A Hamburger, front view")     # -> the hamburger
    d = obj.sdf(points)                             # [N]
    rgb = obj.albedo(points)                        # [N, 3]
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch
from torch import Tensor

from dreamfusion.errors import UserError
from dreamfusion.exemplar import sdf as S

Colour = Union[Sequence[float], Callable[[Tensor], Tensor]]

VIEW_GROUPS = ("front", "side", "back", "overhead", "bottom")
"""The view groups of the exemplar prior; both 'side' classes (1 and 3) share one group."""

_VIEW_WORDS = {"front": "front", "side": "side", "back": "back", "overhead": "overhead", "top": "overhead",
               "bottom": "bottom"}
_VIEW_SUFFIX = re.compile(r"[\s,;:.\-]*\b(front|side|back|overhead|top|bottom)\s+view\W*$")
_ARTICLES = {"a", "an", "the"}


@dataclass
class Part:
    """One primitive of an object: ``sdf(points [N,3]) -> [N]`` and a colour."""

    name: str
    sdf: Callable[[Tensor], Tensor]
    colour: Colour


@dataclass
class AnalyticObject:
    """A built-in object. ``name`` is its canonical prompt ("a hamburger")."""

    name: str
    parts: list[Part]
    aliases: tuple[str, ...] = ()
    front_back_symmetric: bool = True
    blend: float = 0.0  # smooth-union width between consecutive parts (0 = hard union)
    description: str = ""

    def part_distances(self, points: Tensor) -> Tensor:
        """Signed distances to every part, [N, n_parts]."""
        return torch.stack([part.sdf(points) for part in self.parts], dim=-1)

    def sdf(self, points: Tensor) -> Tensor:
        """Signed distance bound of the whole object at ``points`` [N, 3] -> [N]."""
        d = self.part_distances(points)
        if self.blend <= 0:
            return d.min(dim=-1).values
        out = d[:, 0]
        for k in range(1, d.shape[-1]):
            out = S.smooth_union(out, d[:, k], self.blend)
        return out

    def albedo(self, points: Tensor) -> Tensor:
        """RGB albedo in [0, 1] of the part nearest to each point, [N, 3]."""
        nearest = self.part_distances(points).argmin(dim=-1)
        out = torch.zeros(points.shape[0], 3, dtype=points.dtype, device=points.device)
        for k, part in enumerate(self.parts):
            sel = nearest == k
            if not bool(sel.any()):
                continue
            if callable(part.colour):
                out[sel] = part.colour(points[sel]).to(out.dtype)
            else:
                out[sel] = torch.as_tensor(part.colour, dtype=out.dtype, device=out.device)
        return out

    @property
    def key(self) -> str:
        """File-name-safe identifier ("a hamburger" -> "hamburger")."""
        return normalise_text(self.name).replace(" ", "_")


# --------------------------------------------------------------------------------------- helpers


def _spots(base: Sequence[float], spot: Sequence[float], centres: Tensor, radius: float) -> Callable[[Tensor], Tensor]:
    """Colour function: ``spot`` within ``radius`` of any of ``centres`` [K, 3], else ``base``."""

    def colour(p: Tensor) -> Tensor:
        c = centres.to(p)
        near = torch.cdist(p, c).min(dim=-1).values < radius
        out = torch.as_tensor(base, dtype=p.dtype, device=p.device).expand(p.shape[0], 3).clone()
        out[near] = torch.as_tensor(spot, dtype=p.dtype, device=p.device)
        return out

    return colour


def _dome_points(count: int, centre: Sequence[float], radii: Sequence[float], min_elevation: float, seed: int) -> Tensor:
    """``count`` points on the upper part of an ellipsoid (fixed pseudo-random, golden-angle spiral)."""
    g = torch.Generator().manual_seed(seed)
    k = torch.arange(count, dtype=torch.float64)
    azimuth = k * math.pi * (3.0 - math.sqrt(5.0)) + torch.rand(count, generator=g, dtype=torch.float64) * 0.3
    elevation = min_elevation + (math.pi / 2 - min_elevation) * (k + 0.5) / count
    unit = torch.stack([elevation.cos() * azimuth.sin(), elevation.sin(), elevation.cos() * azimuth.cos()], -1)
    return (unit * torch.tensor(radii, dtype=torch.float64) + torch.tensor(centre, dtype=torch.float64)).float()


# ----------------------------------------------------------------------------------------- objects


def _hamburger() -> AnalyticObject:
    bun = (0.86, 0.55, 0.24)
    seeds = _dome_points(14, (0.0, 0.02, 0.0), (0.56, 0.40, 0.56), math.radians(25), seed=1)

    def lettuce(p: Tensor) -> Tensor:
        # A thin disk with a frilly, wavy rim that sticks out between the patty and the top bun.
        angle = torch.atan2(p[:, 0], p[:, 2])
        rim = 0.60 + 0.035 * torch.sin(9.0 * angle)
        radial = p[:, [0, 2]].norm(dim=-1) - rim
        axial = (p[:, 1] - 0.0 - 0.012 * torch.sin(7.0 * angle)).abs() - 0.022
        d = torch.stack([radial, axial], -1)
        return d.clamp_min(0).norm(dim=-1) + d.max(-1).values.clamp_max(0)

    return AnalyticObject(
        name="a hamburger",
        aliases=("hamburger", "burger", "cheeseburger"),
        description="bottom bun, patty, cheese slice, lettuce, sesame top bun",
        parts=[
            Part("bottom bun", lambda p: S.round_cylinder_y(p, (0, -0.33, 0), 0.55, 0.10, 0.07), bun),
            Part("patty", lambda p: S.round_cylinder_y(p, (0, -0.15, 0), 0.58, 0.08, 0.05), (0.33, 0.17, 0.07)),
            Part("cheese", lambda p: S.round_box(S.rotate_y(p, 45.0), (0, -0.055, 0), (0.50, 0.02, 0.50), 0.01),
                 (1.0, 0.78, 0.08)),
            Part("lettuce", lettuce, (0.30, 0.72, 0.16)),
            Part("top bun", lambda p: S.cut_below(S.ellipsoid(p, (0, 0.02, 0), (0.56, 0.40, 0.56)), p, 0.03),
                 _spots(bun, (0.97, 0.92, 0.72), seeds, 0.035)),
        ],
    )


def _snowman() -> AnalyticObject:
    snow, coal = (0.92, 0.93, 0.97), (0.06, 0.06, 0.07)
    return AnalyticObject(
        name="a snowman",
        aliases=("snowman", "snow man"),
        front_back_symmetric=False,
        description="three snowballs, top hat, coal eyes and buttons, carrot nose pointing to +z",
        parts=[
            Part("base", lambda p: S.sphere(p, (0, -0.42, 0), 0.36), snow),
            Part("middle", lambda p: S.sphere(p, (0, 0.06, 0), 0.26), snow),
            Part("head", lambda p: S.sphere(p, (0, 0.42, 0), 0.18), snow),
            Part("nose", lambda p: S.round_cone(p, (0, 0.42, 0.14), (0, 0.40, 0.40), 0.045, 0.008), (1.0, 0.48, 0.08)),
            Part("eyes", lambda p: torch.minimum(S.sphere(p, (0.07, 0.48, 0.155), 0.026),
                                                 S.sphere(p, (-0.07, 0.48, 0.155), 0.026)), coal),
            Part("buttons", lambda p: torch.minimum(S.sphere(p, (0, 0.13, 0.245), 0.032),
                                                    S.sphere(p, (0, 0.0, 0.255), 0.032)), coal),
            Part("hat brim", lambda p: S.round_cylinder_y(p, (0, 0.575, 0), 0.20, 0.012, 0.005), coal),
            Part("hat", lambda p: S.round_cylinder_y(p, (0, 0.66, 0), 0.12, 0.08, 0.01), coal),
        ],
    )


def _mushroom() -> AnalyticObject:
    spots = _dome_points(9, (0.0, 0.0, 0.0), (0.6, 0.45, 0.6), math.radians(15), seed=2)
    return AnalyticObject(
        name="a mushroom",
        aliases=("mushroom", "toadstool"),
        description="a red, white-spotted cap on a cream stem",
        parts=[
            Part("stem", lambda p: S.round_cone(p, (0, -0.50, 0), (0, 0.05, 0), 0.17, 0.12), (0.93, 0.88, 0.76)),
            Part("cap", lambda p: S.cut_below(S.ellipsoid(p, (0, 0.0, 0), (0.60, 0.45, 0.60)), p, 0.0),
                 _spots((0.80, 0.10, 0.08), (0.97, 0.96, 0.92), spots, 0.085)),
        ],
    )


def _red_cube() -> AnalyticObject:
    return AnalyticObject(
        name="a red cube",
        aliases=("red cube", "red box"),
        description="an axis-aligned cube of half side 0.4",
        parts=[Part("cube", lambda p: S.round_box(p, (0, 0, 0), (0.4, 0.4, 0.4)), (0.85, 0.08, 0.08))],
    )


def _blue_torus() -> AnalyticObject:
    return AnalyticObject(
        name="a blue torus",
        aliases=("blue torus", "blue donut", "blue doughnut", "blue ring"),
        description="a torus lying flat, major radius 0.5, minor radius 0.18",
        parts=[Part("torus", lambda p: S.torus_y(p, (0, 0, 0), 0.5, 0.18), (0.10, 0.25, 0.85))],
    )


def _rubber_duck() -> AnalyticObject:
    yellow, black = (1.0, 0.84, 0.10), (0.05, 0.05, 0.05)
    return AnalyticObject(
        name="a rubber duck",
        aliases=("rubber duck", "rubber duckie", "rubber ducky", "duck"),
        front_back_symmetric=False,
        blend=0.08,
        description="a yellow duck facing +z with an orange beak and an upturned tail at -z",
        parts=[
            Part("body", lambda p: S.ellipsoid(p, (0, -0.20, -0.05), (0.40, 0.28, 0.52)), yellow),
            Part("tail", lambda p: S.round_cone(p, (0, -0.16, -0.40), (0, 0.04, -0.60), 0.12, 0.04), yellow),
            Part("head", lambda p: S.sphere(p, (0, 0.24, 0.20), 0.23), yellow),
            Part("beak", lambda p: S.ellipsoid(p, (0, 0.19, 0.45), (0.12, 0.05, 0.12)), (1.0, 0.45, 0.05)),
            Part("eyes", lambda p: torch.minimum(S.sphere(p, (0.10, 0.32, 0.38), 0.035),
                                                 S.sphere(p, (-0.10, 0.32, 0.38), 0.035)), black),
        ],
    )


def _teapot() -> AnalyticObject:
    glaze, lid = (0.22, 0.58, 0.52), (0.15, 0.42, 0.38)
    return AnalyticObject(
        name="a teapot",
        aliases=("teapot", "tea pot"),
        front_back_symmetric=False,
        description="a teal teapot, spout towards +z and handle towards -z",
        parts=[
            Part("body", lambda p: S.cut_below(S.ellipsoid(p, (0, -0.10, 0), (0.45, 0.36, 0.45)), p, -0.40), glaze),
            Part("lid", lambda p: S.cut_below(S.ellipsoid(p, (0, 0.20, 0), (0.27, 0.12, 0.27)), p, 0.20), lid),
            Part("knob", lambda p: S.sphere(p, (0, 0.35, 0), 0.06), lid),
            Part("spout", lambda p: S.round_cone(p, (0, -0.14, 0.34), (0, 0.20, 0.70), 0.09, 0.04), glaze),
            Part("handle", lambda p: S.torus_x(p, (0, -0.06, -0.44), 0.19, 0.045), glaze),
        ],
    )


_BUILDERS = (_hamburger, _snowman, _mushroom, _red_cube, _blue_torus, _rubber_duck, _teapot)
OBJECTS: dict[str, AnalyticObject] = {obj.name: obj for obj in (build() for build in _BUILDERS)}
"""All built-in objects by canonical prompt, in a fixed order (the embedding layout depends on it)."""

OBJECT_NAMES: tuple[str, ...] = tuple(OBJECTS)


# ------------------------------------------------------------------------------------ prompt text


def normalise_text(text: str) -> str:
    """Lower case, punctuation to spaces, leading article dropped: "A Red-Cube!" -> "red cube"."""
    words = re.sub(r"[^a-z0-9]+", " ", text.lower()).split()
    if words and words[0] in _ARTICLES:
        words = words[1:]
    return " ".join(words)


def split_view_suffix(prompt: str) -> tuple[str, str | None]:
    """Split "a hamburger, front view" into ("a hamburger", "front"); no suffix gives None.

    "top view" is read as the overhead group.
    """
    match = _VIEW_SUFFIX.search(prompt.lower())
    if match is None:
        return prompt, None
    return prompt[: match.start()], _VIEW_WORDS[match.group(1)]


def known_prompts_line() -> str:
    return ", ".join(f'"{name}"' for name in OBJECT_NAMES)


def match_object(text: str) -> AnalyticObject | None:
    """The object a prompt (without view suffix) names; None for the empty prompt.

    An exact alias match wins; otherwise the prompt must contain the aliases of exactly one object
    as whole words ("a DSLR photo of a hamburger"). Anything else raises UserError listing the
    known prompts.
    """
    norm = normalise_text(text)
    if not norm:
        return None
    for obj in OBJECTS.values():
        if norm == normalise_text(obj.name) or norm in obj.aliases:
            return obj
    padded = f" {norm} "
    found = [obj for obj in OBJECTS.values() if any(f" {alias} " in padded for alias in obj.aliases)]
    if len(found) == 1:
        return found[0]
    reason = "names more than one built-in object" if found else "is not a built-in object"
    raise UserError(f"prompt {text.strip()!r} {reason} of --guidance exemplar; known prompts: {known_prompts_line()}")


def parse_prompt(prompt: str) -> tuple[AnalyticObject | None, str | None]:
    """(object or None for unconditional, view group name or None) of a prompt."""
    text, view = split_view_suffix(prompt)
    return match_object(text), view


def get_object(prompt: str) -> AnalyticObject:
    """The built-in object named by ``prompt`` (view suffix allowed); UserError if none."""
    obj, _ = parse_prompt(prompt)
    if obj is None:
        raise UserError(f"an empty prompt names no object for --guidance exemplar; known prompts: {known_prompts_line()}")
    return obj
