"""The built-in exemplar prior: procedural 3D objects, their rendered views and an exact denoiser.

``make_exemplar_prior(prompt, ...)`` is what ``--guidance exemplar`` builds; see docs/exemplar.md.
"""

from dreamfusion.exemplar.metrics import evaluate_workspace, evaluation_cameras, psnr, silhouette_iou
from dreamfusion.exemplar.objects import OBJECT_NAMES, OBJECTS, VIEW_GROUPS, AnalyticObject, get_object, parse_prompt
from dreamfusion.exemplar.prior import ExemplarPrior, make_exemplar_prior, scaled_linear_alphas_cumprod
from dreamfusion.exemplar.render import ObjectRender, render_cameras
from dreamfusion.exemplar.views import ExemplarViewConfig, ExemplarViews, exemplar_cameras, load_exemplar_views

__all__ = [
    "AnalyticObject", "evaluate_workspace", "evaluation_cameras", "ExemplarPrior", "ExemplarViewConfig", "ExemplarViews", "OBJECTS", "OBJECT_NAMES", "ObjectRender",
    "VIEW_GROUPS", "exemplar_cameras", "get_object", "load_exemplar_views", "make_exemplar_prior",
    "parse_prompt", "psnr", "render_cameras", "scaled_linear_alphas_cumprod", "silhouette_iou",
]
