"""The browser's camera as this project's camera, and back.

viser reports a client's camera as a camera-to-world rotation quaternion ``wxyz`` in OpenCV axes
(+x right, +y down, +z forward), a ``position`` and a vertical field of view in radians. Our poses
(:mod:`dreamfusion.cameras`) are OpenGL c2w matrices with columns right, up, back (the camera looks
along -back), so the rotation differs by a flip of the y and z axes::

    c2w[:3, :3] = R_opencv @ diag(1, -1, -1)

    view = ViewCamera.from_viser(wxyz, position, fov_rad)
    batch = view.batch(orbit, height=96, width=128)      # a CameraBatch for scene.render
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dreamfusion.cameras import CameraBatch, OrbitConfig, make_batch, position_to_spherical

_FLIP_YZ = np.diag([1.0, -1.0, -1.0])


def quaternion_to_matrix(wxyz) -> np.ndarray:
    """Rotation matrix [3, 3] of a unit quaternion (w, x, y, z) (normalised first)."""
    w, x, y, z = np.asarray(wxyz, dtype=np.float64) / np.linalg.norm(wxyz)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quaternion(matrix) -> np.ndarray:
    """Unit quaternion (w, x, y, z) with w >= 0 of a rotation matrix [3, 3] (Shepperd's method)."""
    m = np.asarray(matrix, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def opencv_to_c2w(wxyz, position) -> np.ndarray:
    """Our OpenGL c2w [4, 4] from a viser (OpenCV) camera rotation and position."""
    c2w = np.eye(4)
    c2w[:3, :3] = quaternion_to_matrix(wxyz) @ _FLIP_YZ
    c2w[:3, 3] = np.asarray(position, dtype=np.float64)
    return c2w


def c2w_to_opencv(c2w) -> tuple[np.ndarray, np.ndarray]:
    """(wxyz, position) of the viser camera that sees what our c2w [4, 4] sees."""
    c2w = np.asarray(c2w, dtype=np.float64)
    return matrix_to_quaternion(c2w[:3, :3] @ _FLIP_YZ), c2w[:3, 3].copy()


def image_size(aspect: float, longer_side: int) -> tuple[int, int]:
    """(height, width) of a render with width/height ``aspect`` whose longer side is ``longer_side``."""
    aspect = float(aspect) if aspect and math.isfinite(aspect) and aspect > 0 else 1.0
    if aspect >= 1.0:
        return max(1, round(longer_side / aspect)), longer_side
    return longer_side, max(1, round(longer_side * aspect))


@dataclass(frozen=True)
class ViewCamera:
    """One pinhole camera of the viewer: OpenGL ``c2w`` [4, 4], vertical ``fovy`` in degrees and
    the width/height ``aspect`` of the browser's canvas."""

    c2w: tuple  # 16 floats, row-major (hashable, so a frame knows which camera it shows)
    fovy: float
    aspect: float

    @classmethod
    def from_viser(cls, wxyz, position, fov_rad: float, aspect: float) -> "ViewCamera":
        return cls(tuple(opencv_to_c2w(wxyz, position).reshape(-1).tolist()), math.degrees(fov_rad), float(aspect))

    @classmethod
    def orbit(cls, polar: float, azimuth: float, radius: float, fovy: float, aspect: float = 1.0) -> "ViewCamera":
        """A camera on the orbit sphere looking at the origin (this project's angle convention)."""
        one = make_batch(OrbitConfig(), torch.tensor([polar]), torch.tensor([azimuth]), torch.tensor([radius]),
                         torch.tensor([fovy]), 1, 1)
        return cls(tuple(one.c2w[0].double().reshape(-1).tolist()), float(fovy), float(aspect))

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.c2w, dtype=np.float64).reshape(4, 4)

    def batch(self, orbit: OrbitConfig, height: int, width: int) -> CameraBatch:
        """A one-camera :class:`CameraBatch` (angles read off the position, for the view class)."""
        c2w = torch.tensor(self.matrix, dtype=torch.float32)[None]
        polar, azimuth, radius = position_to_spherical(c2w[:, :3, 3])
        return make_batch(orbit, polar, azimuth, radius, torch.tensor([self.fovy]), height, width, c2w=c2w)
