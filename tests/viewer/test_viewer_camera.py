"""The browser's (viser, OpenCV) camera and ours (OpenGL c2w) are the same camera."""

import math

import numpy as np
import pytest
import torch

from dreamfusion.cameras import OrbitConfig, get_rays, make_batch
from dreamfusion.viewer.camera import (ViewCamera, c2w_to_opencv, image_size, matrix_to_quaternion, opencv_to_c2w,
                                       quaternion_to_matrix)


def test_quaternions_round_trip():
    rng = np.random.default_rng(0)
    for q in rng.normal(size=(50, 4)):
        q = q / np.linalg.norm(q)
        m = quaternion_to_matrix(q)
        assert np.allclose(m @ m.T, np.eye(3), atol=1e-12) and np.isclose(np.linalg.det(m), 1.0)
        back = matrix_to_quaternion(m)
        assert np.allclose(back, q if q[0] >= 0 else -q, atol=1e-9)


def test_a_browser_camera_on_the_front_axis_is_our_front_camera():
    # viser: at (0, 0, 5) looking at the origin with +y up; OpenCV axes x right, y down, z forward
    # = world (+x, -y, -z): a half turn about x, quaternion (0, 1, 0, 0).
    ours = ViewCamera.orbit(90.0, 0.0, 5.0, 20.0).matrix
    browser = ViewCamera.from_viser((0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 5.0), math.radians(20.0), 1.0)
    assert np.allclose(ours, browser.matrix, atol=1e-6)
    assert np.allclose(ours[:3, :3], np.eye(3), atol=1e-6)  # right +x, up +y, back +z


@pytest.mark.parametrize("polar,azimuth", [(30, 0), (60, 45), (90, -120), (150, 170), (5, 90)])
def test_orbit_cameras_survive_the_trip_to_the_browser_and_back(polar, azimuth):
    c2w = ViewCamera.orbit(polar, azimuth, 4.0, 30.0).matrix
    wxyz, position = c2w_to_opencv(c2w)
    assert np.allclose(opencv_to_c2w(wxyz, position), c2w, atol=1e-6)  # c2w was built in float32
    # The OpenCV forward axis (+z) is our -back: it points at the origin.
    forward = quaternion_to_matrix(wxyz)[:, 2]
    assert np.allclose(forward, -position / np.linalg.norm(position), atol=1e-6)


def test_the_batch_of_a_view_camera_casts_the_rays_of_the_same_pose():
    view = ViewCamera.orbit(70.0, 25.0, 3.0, 40.0, aspect=4 / 3)
    batch = view.batch(OrbitConfig(), 30, 40)
    assert (batch.height, batch.width) == (30, 40)
    assert math.isclose(float(batch.polar[0]), 70.0, abs_tol=1e-3)
    assert math.isclose(float(batch.azimuth[0]), 25.0, abs_tol=1e-3)
    reference = make_batch(OrbitConfig(), torch.tensor([70.0]), torch.tensor([25.0]), torch.tensor([3.0]),
                           torch.tensor([40.0]), 30, 40)
    for a, b in zip(batch.rays(), get_rays(reference.c2w, reference.intrinsics, 30, 40)):
        assert torch.allclose(a, b, atol=1e-5)
    # The centre ray looks at the origin.
    o, d = batch.rays()
    centre = (o[0, 15 * 40 + 20] + d[0, 15 * 40 + 20] * 3.0)
    assert centre.norm() < 0.06


def test_image_sizes_keep_the_canvas_aspect():
    assert image_size(4 / 3, 64) == (48, 64)
    assert image_size(0.5, 64) == (64, 32)
    assert image_size(float("nan"), 50) == (50, 50)
