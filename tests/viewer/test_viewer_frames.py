"""Viewer frames of an analytic sphere: the same pixels as the scene's own render, and each shading
mode showing what it should (coverage, depth, normals, light)."""

import math

import numpy as np
import pytest
import torch

from analytic_scenes import sphere_field
from dreamfusion.cameras import OrbitConfig
from dreamfusion.renderers import RenderConfig, VolumeRenderer
from dreamfusion.training.scene import Scene
from dreamfusion.viewer import frames
from dreamfusion.viewer.camera import ViewCamera
from dreamfusion.viewer.frames import ViewSettings, depth_image, render_frame

CPU = torch.device("cpu")
RADIUS, DISTANCE, FOVY = 0.5, 4.0, 30.0


@pytest.fixture(scope="module")
def sphere_scene():
    field = sphere_field(radius=RADIUS, sigma=200.0)
    field.bound = 1.0  # what the NeRF field has and the normal image reads
    renderer = VolumeRenderer(field, RenderConfig(num_steps=128, upsample_steps=0))
    return Scene(renderer, need_orient_loss=False)


def front_camera(size=(40, 48)):
    return ViewCamera.orbit(90.0, 0.0, DISTANCE, FOVY, aspect=size[1] / size[0]).batch(OrbitConfig(), *size)


def test_a_frame_is_the_scenes_render_whatever_the_chunking(sphere_scene, monkeypatch):
    camera = front_camera()
    monkeypatch.setattr(frames, "CHUNK_RAYS", 100)  # 1920 rays in 20 chunks
    image, depth = render_frame(sphere_scene, camera, ViewSettings(background=(1.0, 1.0, 1.0)), device=CPU)
    rays_o, rays_d = camera.rays()
    with torch.no_grad():
        whole = sphere_scene.render(rays_o, rays_d, shading="albedo", ambient_ratio=1.0, bg_color=torch.ones(3),
                                    perturb=False, training=False)["image"].reshape(40, 48, 3)
    assert np.abs(image.astype(float) - whole.numpy() * 255).max() <= 1.0
    # Coverage: the sphere's disk, radius ~ focal * R / sqrt(D^2 - R^2) pixels.
    focal = 40 / (2 * math.tan(math.radians(FOVY) / 2))
    disk = math.pi * (focal * RADIUS / math.sqrt(DISTANCE ** 2 - RADIUS ** 2)) ** 2
    covered = (np.abs(image.astype(float) - np.array([0.2, 0.6, 0.9]) * 255).max(-1) < 30).sum()
    assert abs(covered - disk) / disk < 0.08
    # Depth along the optical axis: the nearest point of the sphere at the centre, FAR off it.
    assert depth[20, 24] == pytest.approx(DISTANCE - RADIUS, abs=0.03)
    assert depth[0, 0] == frames.FAR


def test_depth_and_normal_modes(sphere_scene):
    camera = front_camera()
    grey, _ = render_frame(sphere_scene, camera, ViewSettings(shading="depth"), device=CPU)
    assert grey[20, 24, 0] == 255 and grey[0, 0, 0] == 0  # nearest = white, empty = black
    assert 0 < grey[20, 24 + 8, 0] < grey[20, 24, 0]      # farther towards the rim
    normal, _ = render_frame(sphere_scene, camera, ViewSettings(shading="normal"), device=CPU)
    # At the centre the normal faces the camera (+z): (n + 1) / 2 = (0.5, 0.5, 1).
    assert np.allclose(normal[20, 24] / 255.0, [0.5, 0.5, 1.0], atol=0.06)
    assert normal[0, 0].max() == 0


def test_the_light_slider_moves_the_light(sphere_scene):
    camera = front_camera()
    lit = dict(shading="lambertian", ambient_ratio=0.1, background=(0.0, 0.0, 0.0))
    front, _ = render_frame(sphere_scene, camera, ViewSettings(light_polar=90, light_azimuth=0, **lit), device=CPU)
    back, _ = render_frame(sphere_scene, camera, ViewSettings(light_polar=90, light_azimuth=180, **lit), device=CPU)
    right, _ = render_frame(sphere_scene, camera, ViewSettings(light_polar=90, light_azimuth=90, **lit), device=CPU)
    centre = (20, 24)
    # albedo (0.2, 0.6, 0.9) x (ambient + (1 - ambient) max(n.l, 0)): x1 lit from the camera, x0.1 from behind
    assert np.allclose(front[centre], [51, 153, 230], atol=4) and np.allclose(back[centre], [5, 15, 23], atol=3)
    assert right[20, 24 + 8].mean() > right[20, 24 - 8].mean() + 30  # light from +x: the right half is brighter


def test_a_newer_camera_cancels_a_frame(sphere_scene):
    assert render_frame(sphere_scene, front_camera(), ViewSettings(), device=CPU, cancelled=lambda: True) is None


def test_depth_image_scale():
    depth = torch.tensor([2.0, 3.0, 4.0, 0.0])
    alpha = torch.tensor([1.0, 1.0, 1.0, 0.0])
    assert torch.allclose(depth_image(depth, alpha), torch.tensor([1.0, 0.6, 0.2, 0.0]))
    assert torch.equal(depth_image(torch.zeros(3), torch.zeros(3)), torch.zeros(3))


def test_the_dmtet_stage_is_drawn_through_the_same_interface(tmp_path):
    """A DMTet surface (a tet-grid sphere of radius 0.5): the viewer's depth, coverage and normals."""
    from dreamfusion.dmtet.geometry import TetGeometry, init_from_density
    from dreamfusion.dmtet.scene import DMTetScene
    from dreamfusion.fields import FieldConfig, NeRFField

    geometry = TetGeometry(48, cache=tmp_path)
    init_from_density(geometry, lambda x: torch.where(x.norm(dim=-1) < RADIUS, 20.0, 0.0).expand(x.shape[0]), level=10.0,
                      fill_hidden=False)
    torch.manual_seed(0)
    scene = DMTetScene(NeRFField(FieldConfig(log2_hashmap_size=12, bg_radius=-1.0, num_levels=4,
                                             desired_resolution=64)), geometry)
    scene.eval()
    camera = front_camera()
    image, depth = render_frame(scene, camera, ViewSettings(background=(1.0, 1.0, 1.0)), device=CPU)
    assert depth[20, 24] == pytest.approx(DISTANCE - RADIUS, abs=0.04) and depth[0, 0] == frames.FAR
    focal = 40 / (2 * math.tan(math.radians(FOVY) / 2))
    disk = math.pi * (focal * RADIUS / math.sqrt(DISTANCE ** 2 - RADIUS ** 2)) ** 2
    covered = (depth < frames.FAR).sum()
    assert abs(covered - disk) / disk < 0.12
    normal, _ = render_frame(scene, camera, ViewSettings(shading="normal"), device=CPU)
    assert np.allclose(normal[20, 24] / 255.0, [0.5, 0.5, 1.0], atol=0.08)
