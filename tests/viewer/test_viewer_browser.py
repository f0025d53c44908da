"""The training viewer in a real headless Chromium: the browser's camera drives the frames, which
match the trainer's own render of that camera; pause stops the steps; export writes the mesh; the
loss curve, training cameras and guidance preview reach the page."""

import json
import threading
import time

import numpy as np
import pytest

from dreamfusion.viewer.camera import ViewCamera
from dreamfusion.viewer.frames import ViewSettings
from dreamfusion.viewer.run import viewer_context
from dreamfusion.viewer.server import Viewer, ViewerOptions
from viewer_helpers import linked_trainer, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]
HEIGHT, WIDTH = 240, 320


def area_downsample(image: np.ndarray, factor: int) -> np.ndarray:
    h, w = image.shape[0] // factor, image.shape[1] // factor
    return image[:h * factor, :w * factor].reshape(h, factor, w, factor, -1).mean(axis=(1, 3))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


@pytest.fixture
def live_viewer(viewer_workspace_copy):
    trainer, link = linked_trainer(viewer_workspace_copy, iters=100_000)
    viewer = Viewer(link, viewer_context(trainer.cfg, trainer, training=True), ViewerOptions(max_side=160))
    url = viewer.start()
    thread = threading.Thread(target=trainer.train, name="training")
    thread.start()
    try:
        yield trainer, link, viewer, url
    finally:
        link.request_stop()
        thread.join(timeout=120)
        viewer.close()
        trainer.close()


def final_frame_arrived(renderer, link) -> bool:
    """The client got the fully refined frame of its current camera, from the newest weights."""
    sent = renderer.sent
    return (sent is not None and (sent.camera, sent.settings) == renderer.current()
            and sent.side == renderer._sides()[-1] and sent.weights_version == link.latest_version)


def test_the_training_viewer_in_a_browser(live_viewer, chromium_browser):
    trainer, link, viewer, url = live_viewer
    page = chromium_browser.new_page(viewport={"width": 800, "height": 600})  # 4:3, as the renders compared
    try:
        page.set_default_timeout(20_000)
        page.goto(url)
        wait_until(lambda: viewer.client_renderers() and viewer.client_renderers()[0].sent is not None,
                   what="the first frame")
        renderer = viewer.client_renderers()[0]
        client = renderer.client
        viewer.set_overlays(frusta=False, grid=False, mesh=False)  # the canvas shows the field alone

        # The panel's Pause button stops the steps.
        page.get_by_role("button", name="Pause").click()
        wait_until(lambda: link.status == "paused", what="the pause")
        paused_at = link.step
        time.sleep(0.6)
        assert link.step == paused_at == trainer.global_step
        page.wait_for_function("document.body.innerText.includes('paused')")

        wait_until(lambda: final_frame_arrived(renderer, link), what="the refined frame")
        time.sleep(0.3)  # the browser decodes the background image
        before = client.get_render(HEIGHT, WIDTH, transport_format="png", timeout=20)[..., :3]

        # Move the camera the way a user does: drag on the canvas (left of the panel).
        start = renderer.sent.camera
        page.mouse.move(200, 300)
        page.mouse.down()
        page.mouse.move(290, 250, steps=6)
        page.mouse.up()
        wait_until(lambda: renderer.sent.camera != start and final_frame_arrived(renderer, link),
                   what="the frame of the moved camera")
        time.sleep(0.3)
        after = client.get_render(HEIGHT, WIDTH, transport_format="png", timeout=20)[..., :3]
        assert np.abs(after.astype(float) - before.astype(float)).mean() > 3.0  # the view turned

        # What the browser shows is the trainer's own render of the browser's camera.
        camera = client.camera
        view = ViewCamera.from_viser(camera.wxyz, camera.position, camera.fov, camera.aspect)
        assert view == renderer.sent.camera
        expected = trainer.render_views(view.batch(trainer.orbit, HEIGHT, WIDTH), normals=False)[0]["rgb"].numpy()
        shown = after.astype(np.float64) / 255.0
        assert psnr(area_downsample(shown, 4), area_downsample(expected, 4)) >= 25.0
        assert (expected < 0.9).any(axis=-1).mean() > 0.02  # and it is not an empty frame

        # Shading modes: the normal image has a black background.
        viewer.set_settings(ViewSettings(shading="normal"))
        wait_until(lambda: renderer.sent.settings.shading == "normal" and final_frame_arrived(renderer, link),
                   what="the normal frame")
        assert renderer.sent.image[0, 0].max() == 0 and renderer.sent.image.max() > 100
        viewer.set_settings(ViewSettings())

        # Export from the panel: a fresh mesh of the paused step, shown in the scene.
        manifest = trainer.workspace / "mesh" / "export.json"
        page.get_by_role("button", name="Export mesh").click()
        wait_until(lambda: json.loads(manifest.read_text())["global_step"] == paused_at, timeout=120,
                   what="the export")
        wait_until(lambda: viewer._mesh_handle is not None, what="the mesh in the scene")
        page.wait_for_function("document.body.innerText.includes('mesh.glb')")

        # Resume: steps go on, and the loss curve, training cameras and guidance preview arrive.
        page.get_by_role("button", name="Resume").click()
        viewer.set_overlays(frusta=True, grid=True)
        wait_until(lambda: link.step >= paused_at + 3, what="steps after resuming")
        wait_until(lambda: viewer.loss_plot is not None, timeout=30, what="the loss plot")
        wait_until(lambda: len(viewer._frusta_handles) > 0, timeout=30, what="the training cameras")
        frame = link.snapshot()["frusta"][-1]
        assert frame.image.shape == (24, 24, 3) and frame.image.min() < 200  # the step's render, not blank
        assert abs(np.linalg.norm(frame.c2w[:3, 3]) - 3.2) < 0.3  # on the training orbit
        wait_until(lambda: link.guidance is not None, timeout=30, what="the guidance preview")
        page.wait_for_function("document.body.innerText.includes('prompt: a hamburger, ')")
        assert page.locator(".uplot").count() >= 1
        shot = link.guidance
        assert shot.strip.shape[1] == 3 * shot.strip.shape[0] and 0 <= shot.timestep < 1000

        # Save a checkpoint from the panel, while training.
        page.get_by_role("button", name="Save checkpoint").click()
        page.wait_for_function("document.body.innerText.includes('saved df_ep')")
    finally:
        page.close()
