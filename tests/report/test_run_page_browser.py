"""The run page in a real browser (headless Chromium, WebGL by SwiftShader), opened from file://:
the exported mesh is drawn framed on a plain background, a mouse drag turns it, the loss plot has
one curve per term."""

import numpy as np
import pytest
from browser import screenshot_pixels
from run_page_workspaces import TERMS, background_rgb, export_sphere, write_scalars

from dreamfusion.training.outputs import write_index_html

pytestmark = pytest.mark.browser

READY = "window.meshViewerReady === true || window.meshViewerError !== undefined"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("run-page")
    export_sphere(workspace)
    write_scalars(workspace)
    write_index_html(workspace)
    return workspace


def open_viewer(page, url, frame_selector=None):
    """Load ``url`` and wait (bounded) for the viewer's first frame; returns (frame, canvas)."""
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    if frame_selector is None:
        frame, canvas = page.main_frame, page.locator("canvas#view")
    else:
        frame = page.locator(frame_selector).element_handle().content_frame()
        canvas = page.frame_locator(frame_selector).locator("canvas#view")
    frame.wait_for_function(READY)
    failure = frame.evaluate("window.meshViewerError")
    assert failure is None and not errors, (failure, errors)
    return frame, canvas


def check_framed_on_the_object(pixels):
    """Corners are background, the centre is mesh, and the mesh fills a good part of the view
    without touching its edges."""
    pixels = pixels[2:-2, 2:-2]  # the iframe's border can show at a fractional page position
    mesh = np.abs(pixels.astype(int) - background_rgb()).max(axis=-1) > 8
    h, w = mesh.shape
    for corner in (mesh[:8, :8], mesh[:8, -8:], mesh[-8:, :8], mesh[-8:, -8:]):
        assert not corner.any()
    assert mesh[h // 2 - 4: h // 2 + 4, w // 2 - 4: w // 2 + 4].all()
    rows, cols = np.flatnonzero(mesh.any(axis=1)), np.flatnonzero(mesh.any(axis=0))
    assert rows[0] > 0 and cols[0] > 0 and rows[-1] < h - 1 and cols[-1] < w - 1
    assert 0.5 * min(h, w) < rows[-1] - rows[0] < min(h, w)  # framed: the sphere spans most of the height
    return mesh


def test_the_run_page_shows_the_mesh_turns_it_with_the_mouse_and_plots_each_term(browser_page, workspace):
    page = browser_page
    frame, canvas = open_viewer(page, (workspace / "index.html").as_uri(), "iframe.mesh-viewer")
    before = screenshot_pixels(canvas)
    check_framed_on_the_object(before)
    red = (before[..., 0] > 150) & (before[..., 2] < 100)
    blue = (before[..., 2] > 150) & (before[..., 0] < 100)
    assert red.sum() > 500 and blue.sum() > 500  # the texture: both halves of the sphere are in view

    frames = frame.evaluate("window.meshViewerFrames")
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 150, y + 30, steps=5)
    page.mouse.up()
    frame.wait_for_function(f"window.meshViewerFrames > {frames}")
    after = screenshot_pixels(canvas)
    check_framed_on_the_object(after)
    changed = np.abs(after.astype(int) - before).max(axis=-1) > 40
    assert changed.mean() > 0.05  # it turned: a large part of the view changed colour

    plot = page.locator("svg.plot").first
    assert plot.bounding_box()["width"] > 300
    names = plot.locator("polyline.curve").evaluate_all("curves => curves.map(c => c.dataset.name)")
    assert sorted(names) == sorted(["total", *TERMS])


def test_the_standalone_viewer_page_shows_the_mesh(browser_page, workspace):
    _, canvas = open_viewer(browser_page, (workspace / "mesh" / "viewer.html").as_uri())
    check_framed_on_the_object(screenshot_pixels(canvas))
