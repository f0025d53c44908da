"""How close a distilled object is to the analytic object it was asked for, seen from all around
and measured in 3D (docs/exemplar.md, "Scoring a result").

* :mod:`.images`: silhouette IoU, PSNR, normal error of one image against the ground truth;
* :mod:`.views`: evaluation rings (polar 30…150 × 8 azimuths), cached ground truth, framing checks,
  per-ring scores of any renderer;
* :mod:`.geometry`: volume IoU, surface distances both ways, pieces, watertightness, inner shells;
* :mod:`.workspace`: all of it for a trained workspace (field and exported mesh), and the command
  line ``python -m dreamfusion.exemplar.metrics <workspace>``.
"""

from dreamfusion.exemplar.metrics.geometry import (SURFACE_TOLERANCE, LoadedMesh, load_mesh, mesh_geometry_report,
                                                   object_solid, surface_distances, voxelize_mesh, volume_iou)
from dreamfusion.exemplar.metrics.images import normal_error_deg, psnr, silhouette_iou, summarise
from dreamfusion.exemplar.metrics.views import (EVAL_FOVY, EVAL_POLARS, EVAL_RADIUS, RingSpec, ViewRender, check_framed,
                                                evaluation_cameras, ground_truth, rings_covered, score_views)
from dreamfusion.exemplar.metrics.workspace import evaluate_workspace, format_report, json_report

__all__ = [
    "EVAL_FOVY", "EVAL_POLARS", "EVAL_RADIUS", "LoadedMesh", "RingSpec", "SURFACE_TOLERANCE", "ViewRender",
    "check_framed", "evaluate_workspace", "evaluation_cameras", "format_report", "ground_truth", "json_report",
    "load_mesh", "mesh_geometry_report", "normal_error_deg", "object_solid", "psnr", "rings_covered", "score_views",
    "silhouette_iou", "summarise", "surface_distances", "voxelize_mesh", "volume_iou",
]
