"""Workspaces for the run page tests: a mesh and the scalars of a short run."""

import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from dreamfusion.report.scalars import ScalarsCsv, scalars_path

TERMS = ("sds", "orient")  # with the total, three curves


def write_scalars(workspace: Path, steps: int = 60) -> None:
    """Losses of a short run: the total, two terms decades apart, and the learning rate."""
    csv = ScalarsCsv(scalars_path(workspace))
    for step in range(1, steps + 1):
        sds, orient = 2.0 * math.exp(-step / 20) + 0.05, 1e-3 * math.exp(-step / 50)
        csv.append(step, {"train/loss": sds + orient, "train/sds": sds, "train/orient": orient,
                          "train/lr": 1e-3 * min(1.0, step / 10)})
    csv.close()


def export_sphere(workspace: Path) -> Path:
    """The project's exporter on an analytic sphere (radius 0.6, off centre), red where x < 0.1
    and blue elsewhere: the files a user gets in <workspace>/mesh. Returns mesh.glb."""
    import torch

    from dreamfusion.export import export_mesh

    centre = torch.tensor([0.1, 0.2, -0.15])

    def density(x):  # 10 (the export's level) on the sphere, linear along rays from its centre
        return 10.0 + 20.0 * (1.0 - (x - centre.to(x)).norm(dim=-1) / 0.6)

    def albedo(x):
        red, blue = torch.tensor([0.9, 0.1, 0.1]).to(x), torch.tensor([0.1, 0.2, 0.9]).to(x)
        return torch.where(x[:, :1] < 0.1, red, blue)

    result = export_mesh(density, albedo, workspace / "mesh", resolution=24, surface="density",
                         decimate_target=2000, texture_size=64, progress=False)
    return Path(result.glb_path)


class _Iframes(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        if tag == "iframe":
            self.found.append(dict(attrs))


def iframes(page: str) -> list[dict]:
    """The attributes of each ``<iframe>`` of a page (entities decoded, e.g. ``srcdoc``)."""
    parser = _Iframes()
    parser.feed(page)
    return parser.found


def embedded_glb(viewer_page: str) -> str:
    """The base64 text of the GLB inside a viewer page."""
    return re.search(r"<script type='application/octet-stream' id='mesh-glb'>([^<]*)</script>", viewer_page).group(1)


def background_rgb() -> np.ndarray:
    from dreamfusion.report.mesh_page import BACKGROUND

    return np.array([int(BACKGROUND[i:i + 2], 16) for i in (1, 3, 5)])
