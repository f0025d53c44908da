"""Renderers: volume rendering of the radiance field (`volume`), and triangle rasterization
(`rasterizer`, differentiable, with an antialiasing pass for silhouette gradients) with the mesh
renderer built on it (`mesh`), shared by export, evaluation and the DMTet stage."""

from dreamfusion.renderers.volume import (
    RenderConfig,
    VolumeRenderer,
    composite,
    near_far_from_aabb,
    near_far_from_sphere,
    random_light_direction,
    sample_pdf,
)

__all__ = [
    "RenderConfig",
    "VolumeRenderer",
    "composite",
    "near_far_from_aabb",
    "near_far_from_sphere",
    "random_light_direction",
    "sample_pdf",
]
