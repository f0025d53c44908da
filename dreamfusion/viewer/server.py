"""The browser viewer: a viser server showing a run's field from each browser's camera.

    viewer = Viewer(link, ViewerContext(config, orbit, device), ViewerOptions(port=0))
    url = viewer.start()          # http://127.0.0.1:<the port viser really took>
    ...
    viewer.close()

Per connected browser a render thread draws the field progressively: a small frame as soon as the
camera moves (at most ``preview_side`` pixels on the longer side, fewer when frames are slow, so that
it takes about ``preview_budget_s``, as stable-dreamfusion's GUI scales its resolution), then frames
twice as large each while the camera stays still, up to ``max_side`` (and the canvas). While a run trains, frames that the camera
did not ask for (refinements, refreshes as the weights change) are spaced so that rendering takes
at most ``1 - train_util`` of the time. The panel has the run's controls (pause, save a checkpoint,
export the mesh), the view settings (shading, light, field of view, background), the loss curve,
the last training cameras as frusta with their renders, and the guidance preview.
"""

from __future__ import annotations

import collections
import contextlib
import io
import math
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dreamfusion.cameras import OrbitConfig
from dreamfusion.viewer.camera import ViewCamera, c2w_to_opencv, image_size
from dreamfusion.viewer.frames import SHADINGS, ViewSettings, render_frame
from dreamfusion.viewer.link import TrainingLink

MESH_OFFSET = 2.2
"""The exported mesh is drawn this many --bound to the side (+x) of the field."""

# Every batch of panel updates makes the browser redraw its 3D view for a moment (viser renders on
# demand, then settles for 250 ms), which costs a software-rendering browser about half a core when
# done twice a second: the panel is refreshed once a second, in one batch, the plot every 2 s.
PANEL_PERIOD_S = 1.0
PLOT_PERIOD_S = 2.0

TERM_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf")


@dataclass
class ViewerOptions:
    host: str = "127.0.0.1"
    port: int = 0                 # 0: a free port
    preview_side: int = 64        # largest longer side of the frame drawn as soon as the camera moves
    min_preview_side: int = 24
    preview_budget_s: float = 0.12  # the preview's side is chosen to take about this long to draw
    max_side: int = 512           # longer side of a fully refined frame (also capped by the canvas)
    train_util: float = 0.9       # share of the time left to training by frames the camera did not ask for
    settle_s: float = 0.08        # the camera is still this long before a frame is refined
    refresh_s: float = 2.0        # at most this often, the view is redrawn from newer weights


@dataclass
class ViewerContext:
    """What the viewer needs to know about the run."""

    orbit: OrbitConfig
    device: torch.device
    amp: bool = False
    home: tuple[float, float, float] = (90.0, 0.0, 5.0)   # polar, azimuth, radius of the start camera
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)  # what it looks at
    fovy: float = 20.0
    light: tuple[float, float] = (60.0, 0.0)
    bound: float = 1.0
    title: str = "dreamfusion"
    mesh_path: Path | None = None                        # a GLB shown beside the field
    save_checkpoint: Callable | None = None              # action(trainer) -> str, when training
    export_mesh: Callable | None = None                  # action(trainer) -> Path of the GLB


@dataclass
class SentFrame:
    """The last frame a client got: for tests and the panel."""

    camera: ViewCamera
    settings: ViewSettings
    weights_version: int
    side: int
    height: int
    width: int
    seconds: float
    image: np.ndarray
    sequence: int
    at: float            # time.perf_counter() when it was sent
    asked_at: float      # time.perf_counter() of the browser's last camera message before it was drawn


class Viewer:
    def __init__(self, link: TrainingLink, context: ViewerContext, options: ViewerOptions | None = None):
        self.link, self.context, self.options = link, context, options or ViewerOptions()
        self.settings = ViewSettings(light_polar=context.light[0], light_azimuth=context.light[1])
        self.show_frusta = True
        self.server = None
        self.url = ""
        self._clients: dict[int, _ClientRenderer] = {}
        self._closed = threading.Event()
        self._panel_thread: threading.Thread | None = None
        self._plot_terms: tuple[str, ...] = ()
        self._frusta_shown = -1
        self._guidance_shown = None
        self._mesh_handle = None
        self._frusta_handles: list = []
        self._frusta_frames: list = []         # the TrainingFrame each frustum shows
        self._frusta_next = 0
        self._plotted_at = 0.0

    # ---------------------------------------------------------------------------- start/stop
    def start(self) -> str:
        import viser

        o, ctx = self.options, self.context
        port = o.port or _free_port(o.host)
        with contextlib.redirect_stdout(io.StringIO()):  # viser prints its own banner: we print the URL
            self.server = server = viser.ViserServer(host=o.host, port=port, label=ctx.title, verbose=False)
        server.scene.set_up_direction("+y")
        server.scene.world_axes.visible = False
        server.initial_camera.position = self._home_position()
        server.initial_camera.look_at = ctx.target
        server.initial_camera.up = (0.0, 1.0, 0.0)
        server.initial_camera.fov = math.radians(ctx.fovy)
        self._build_panel(server)
        self.grid = server.scene.add_grid("/grid", width=4.0, height=4.0, plane="xz",
                                          position=(0.0, -ctx.bound, 0.0))
        if ctx.mesh_path is not None and Path(ctx.mesh_path).is_file():
            self.show_mesh(Path(ctx.mesh_path))
        server.on_client_connect(self._connect)
        server.on_client_disconnect(self._disconnect)
        host = o.host if o.host not in ("0.0.0.0", "") else "127.0.0.1"
        self.url = f"http://{host}:{server.get_port()}"
        self._panel_thread = threading.Thread(target=self._panel_loop, name="viewer-panel", daemon=True)
        self._panel_thread.start()
        return self.url

    def close(self) -> None:
        self._closed.set()
        for client in list(self._clients.values()):
            client.stop()
        if self.server is not None:
            with contextlib.redirect_stdout(io.StringIO()):
                self.server.stop()

    # ------------------------------------------------------------------------------- clients
    def _connect(self, client) -> None:
        renderer = _ClientRenderer(self, client)
        self._clients[client.client_id] = renderer
        self.link.clients = len(self._clients)
        client.camera.on_update(lambda _camera: renderer.wake(camera_moved=True))
        renderer.start()

    def _disconnect(self, client) -> None:
        renderer = self._clients.pop(client.client_id, None)
        self.link.clients = len(self._clients)
        if renderer is not None:
            renderer.stop()

    def client_renderers(self) -> list["_ClientRenderer"]:
        return list(self._clients.values())

    def _redraw_all(self) -> None:
        for renderer in list(self._clients.values()):
            renderer.wake(camera_moved=True)

    # --------------------------------------------------------------------------------- panel
    def _build_panel(self, server) -> None:
        gui, ctx = server.gui, self.context
        with gui.add_folder("Run"):
            self.status_text = gui.add_markdown("starting")
            self.pause_button = gui.add_button("Pause", disabled=not self.link.training)
            self.pause_button.on_click(lambda _: self._toggle_pause())
            self.save_button = gui.add_button("Save checkpoint", disabled=ctx.save_checkpoint is None)
            self.save_button.on_click(lambda _: self._run_action("saving a checkpoint", ctx.save_checkpoint))
            self.export_button = gui.add_button("Export mesh", disabled=ctx.export_mesh is None)
            self.export_button.on_click(lambda _: self._run_action("exporting the mesh", ctx.export_mesh,
                                                                   then=self._exported))
            self.action_text = gui.add_markdown("")
        with gui.add_folder("View"):
            self.shading = gui.add_dropdown("Shading", SHADINGS, initial_value=self.settings.shading)
            self.light_polar = gui.add_slider("Light polar", 0.0, 180.0, 1.0, self.settings.light_polar)
            self.light_azimuth = gui.add_slider("Light azimuth", -180.0, 180.0, 1.0, self.settings.light_azimuth)
            self.ambient = gui.add_slider("Ambient", 0.0, 1.0, 0.05, self.settings.ambient_ratio)
            self.fov = gui.add_slider("FOV (deg)", 1.0, 120.0, 1.0, ctx.fovy)
            self.background = gui.add_rgb("Background", (255, 255, 255))
            self.scene_background = gui.add_checkbox("Scene's own background", True)
            self.max_side = gui.add_slider("Max resolution", 32, 2048, 32, self.options.max_side)
            self.frusta_box = gui.add_checkbox("Training cameras", True)
            self.grid_box = gui.add_checkbox("Grid", True)
            self.mesh_box = gui.add_checkbox("Mesh", True, visible=False)
            self.home_button = gui.add_button("Reset view")
            self.frame_text = gui.add_markdown("no frame yet")
        for handle in (self.shading, self.light_polar, self.light_azimuth, self.ambient, self.background,
                       self.scene_background):
            handle.on_update(lambda _: self._settings_changed())
        self.max_side.on_update(lambda _: self._redraw_all())
        self.fov.on_update(lambda _: self._set_fov(self.fov.value))
        self.frusta_box.on_update(lambda _: self.set_overlays(frusta=self.frusta_box.value))
        self.grid_box.on_update(lambda _: self.set_overlays(grid=self.grid_box.value))
        self.mesh_box.on_update(lambda _: self.set_overlays(mesh=self.mesh_box.value))
        self.home_button.on_click(lambda _: self.reset_view())
        with gui.add_folder("Loss"):
            self.loss_plot = None
            self.loss_holder = gui.add_markdown("no steps yet")
        with gui.add_folder("Guidance"):
            self.guidance_text = gui.add_markdown("the prior's view of the latest step appears here while training")
            self.guidance_image = gui.add_image(np.full((32, 96, 3), 255, np.uint8), label="render | noisy | denoised",
                                                visible=False)

    def _settings_changed(self) -> None:
        bg = None if self.scene_background.value else tuple(c / 255.0 for c in self.background.value)
        self.settings = replace(self.settings, shading=self.shading.value, light_polar=float(self.light_polar.value),
                                light_azimuth=float(self.light_azimuth.value),
                                ambient_ratio=float(self.ambient.value), background=bg)
        self._redraw_all()

    def set_settings(self, settings: ViewSettings) -> None:
        """Set the view settings from Python (tests, scripts); the panel follows."""
        self.settings = settings
        self.shading.value = settings.shading
        self._redraw_all()

    @staticmethod
    def settings_aspect(client) -> float:
        try:
            return client.camera.aspect
        except (AssertionError, ZeroDivisionError):
            return 1.0

    def _set_fov(self, degrees: float) -> None:
        for client in self.server.get_clients().values():
            client.camera.fov = math.radians(degrees)

    def set_overlays(self, *, frusta: bool | None = None, grid: bool | None = None, mesh: bool | None = None) -> None:
        """Show or hide what is drawn over the field (the frusta, the grid, the mesh)."""
        if frusta is not None:
            self.show_frusta = frusta
            self.frusta_box.value = frusta
            self._frusta_shown = -1
            for handle in self._frusta_handles:
                handle.visible = frusta
        if grid is not None:
            self.grid_box.value = grid
            self.grid.visible = grid
        if mesh is not None and self._mesh_handle is not None:
            self.mesh_box.value = mesh
            self._mesh_handle.visible = mesh

    def _home_position(self) -> tuple[float, float, float]:
        polar, azimuth, radius = self.context.home
        home = ViewCamera.orbit(polar, azimuth, radius, self.context.fovy)
        return tuple(float(a + b) for a, b in zip(home.matrix[:3, 3], self.context.target))

    def reset_view(self) -> None:
        """Every browser's camera back to the start camera."""
        for client in self.server.get_clients().values():
            with client.atomic():
                client.camera.look_at = self.context.target
                client.camera.position = self._home_position()
                client.camera.fov = math.radians(self.context.fovy)

    def show_mesh(self, glb: Path) -> None:
        """Show an exported GLB beside the field (shifted along +x so both can be seen at once)."""
        if self._mesh_handle is not None:
            self._mesh_handle.remove()
        offset = MESH_OFFSET * self.context.bound
        self._mesh_handle = self.server.scene.add_glb("/mesh", glb.read_bytes(), position=(offset, 0.0, 0.0))
        self.mesh_box.visible = True
        self._mesh_handle.visible = self.mesh_box.value

    def _toggle_pause(self) -> None:
        if self.link.paused.is_set():
            self.link.paused.clear()
        else:
            self.link.paused.set()
        self.pause_button.label = "Resume" if self.link.paused.is_set() else "Pause"

    def _run_action(self, what: str, action: Callable | None, then: Callable | None = None) -> None:
        if action is None:
            return
        self.action_text.content = f"{what}…"

        def done(result, error) -> None:
            if error is not None:
                reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
                self.action_text.content = f"**failed** {what}: {reason}"
                return
            self.action_text.content = f"done: {result}"
            if then is not None:
                then(result)

        self.link.submit(action, done)

    def _exported(self, glb) -> None:
        if glb is not None and Path(glb).is_file():
            self.show_mesh(Path(glb))

    def _panel_loop(self) -> None:
        """Refresh the status, loss plot, frusta and guidance panel a few times a second."""
        reported = set()
        while not self._closed.wait(PANEL_PERIOD_S):
            try:
                with self.server.atomic():
                    self._refresh_panel()
            except Exception as error:  # noqa: BLE001 - the viewer must never stop a run; say it once
                if self._closed.is_set():
                    return
                key = f"{type(error).__name__}: {error}"
                if key not in reported:
                    reported.add(key)
                    print(f"viewer: panel update failed ({key[:200]})", file=sys.stderr)

    def _refresh_panel(self) -> None:
        snap = self.link.snapshot()
        step, iters = snap["step"], snap["iters"]
        loss = ""
        steps, terms = snap["history"]
        if len(steps) and "total" in terms and np.isfinite(terms["total"][-1]):
            loss = f" · loss {terms['total'][-1]:.4g}"
        progress = f"step {step} / {iters}" if iters else f"step {step}"
        rate = f" · {snap['it_per_s']:.2f} it/s" if snap["status"] == "training" and snap["it_per_s"] else ""
        text = f"**{snap['status']}** · {progress}{rate}{loss}"
        if self.status_text.content != text:
            self.status_text.content = text
        now = time.perf_counter()
        if len(steps) >= 2 and now - self._plotted_at >= PLOT_PERIOD_S:
            self._plotted_at = now
            self._update_plot(steps, terms)
        if snap["frusta_version"] != self._frusta_shown and self.show_frusta:
            self._frusta_shown = snap["frusta_version"]
            self._draw_frusta(snap["frusta"])
        shot = snap["guidance"]
        if shot is not None and shot is not self._guidance_shown:
            self._guidance_shown = shot
            self.guidance_image.image = shot.strip
            self.guidance_image.visible = True
            self.guidance_text.content = f"step {shot.step} · t = {shot.timestep} · prompt: *{shot.prompt}*"
        if self.pause_button.disabled == self.link.training:
            self.pause_button.disabled = not self.link.training

    def _update_plot(self, steps: np.ndarray, terms: dict[str, np.ndarray]) -> None:
        import viser.uplot as uplot

        names = tuple(["total"] + sorted(k for k in terms if k != "total"))
        data = (steps, *[np.nan_to_num(terms[n], nan=np.nan) for n in names])
        values = np.concatenate([v[np.isfinite(v)] for v in data[1:]]) if len(names) else np.zeros(0)
        log = bool(len(values) and (values > 0).all())
        if self.loss_plot is None or names != self._plot_terms:
            if self.loss_plot is not None:
                self.loss_plot.remove()
            self.loss_holder.visible = False
            series = (uplot.Series(label="step"),
                      *[uplot.Series(label=n, stroke=TERM_COLOURS[i % len(TERM_COLOURS)], width=2 if i == 0 else 1)
                        for i, n in enumerate(names)])
            scales = {"x": uplot.Scale(time=False, auto=True), "y": uplot.Scale(distr=3 if log else 1, auto=True)}
            with self.server.gui.add_folder("Loss"):
                self.loss_plot = self.server.gui.add_uplot(data, series, scales=scales, aspect=1.5,
                                                           title="loss (log scale)" if log else "loss")
            self._plot_terms = names
        else:
            self.loss_plot.data = data

    def _draw_frusta(self, frames) -> None:
        """Show training cameras not shown yet, each in the slot of the oldest one: a frustum is
        updated in place (pose and image), never rebuilt, which is what a browser pays for."""
        for frame in frames:
            if any(shown is frame for shown in self._frusta_frames):
                continue
            slot = self._frusta_next % TrainingLink.FRUSTA
            self._frusta_next += 1
            wxyz, position = c2w_to_opencv(frame.c2w)
            if slot < len(self._frusta_handles):
                handle = self._frusta_handles[slot]
                handle.fov, handle.aspect = math.radians(frame.fovy), frame.aspect
                handle.wxyz, handle.position, handle.image = wxyz, position, frame.image
                self._frusta_frames[slot] = frame
            else:
                self._frusta_handles.append(self.server.scene.add_camera_frustum(
                    f"/training/camera_{slot:02d}", fov=math.radians(frame.fovy), aspect=frame.aspect, scale=0.15,
                    image=frame.image, wxyz=wxyz, position=position, color=(200, 60, 30),
                    visible=self.show_frusta))
                self._frusta_frames.append(frame)


class _ClientRenderer:
    """Draws one browser's view: see the module docstring."""

    def __init__(self, viewer: Viewer, client):
        self.viewer, self.client = viewer, client
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._moved_at = time.perf_counter()
        self.sent: SentFrame | None = None
        self.history: collections.deque[SentFrame] = collections.deque(maxlen=64)  # the last frames sent
        self.sequence = 0
        self._next_free = 0.0                 # no unrequested frame before this time (training)
        self._seconds_per_pixel = 0.0         # of recent frames (an average), for the preview's size
        self._thread = threading.Thread(target=self._loop, name=f"viewer-client-{client.client_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self, camera_moved: bool = False) -> None:
        if camera_moved:
            self._moved_at = time.perf_counter()
        self._wake.set()

    def current(self) -> tuple[ViewCamera, ViewSettings] | None:
        camera = self.client.camera
        try:
            aspect = camera.aspect
        except (AssertionError, ZeroDivisionError):
            return None  # no camera message from the browser yet
        return ViewCamera.from_viser(camera.wxyz, camera.position, camera.fov, aspect), self.viewer.settings

    def _sides(self) -> list[int]:
        o = self.viewer.options
        cap = int(self.viewer.max_side.value) if self.viewer.max_side is not None else o.max_side
        try:
            cap = min(cap, max(self.client.camera.image_width, self.client.camera.image_height))
        except AssertionError:
            pass
        preview = o.preview_side
        if self._seconds_per_pixel > 0:  # as large as the time budget allows
            aspect = max(self.viewer.settings_aspect(self.client), 1e-3)
            longer_per_pixel = max(aspect, 1 / aspect)  # longer side^2 / pixels
            preview = int(math.sqrt(o.preview_budget_s / self._seconds_per_pixel * longer_per_pixel))
        preview = max(o.min_preview_side, min(preview, o.preview_side))
        sides = [min(preview, cap)]
        while sides[-1] < cap:
            sides.append(min(sides[-1] * 2, cap))
        return sides

    def _loop(self) -> None:
        link, options = self.viewer.link, self.viewer.options
        while not self._stop.is_set():
            self._wake.wait(timeout=0.05)
            self._wake.clear()
            state = None if self._stop.is_set() else self.current()
            if state is None:
                continue
            camera, settings = state
            sides, sent, now = self._sides(), self.sent, time.perf_counter()
            if sent is None or (sent.camera, sent.settings) != (camera, settings):
                with link.hold_training():
                    self._draw(camera, settings, sides[0])  # the camera moved: a small frame at once
                continue
            if link.training and not link.paused.is_set() and now < self._next_free:
                continue  # training's share of the time comes first
            if sent.side < sides[-1]:
                if now - self._moved_at >= options.settle_s:
                    self._draw(camera, settings, next(s for s in sides if s > sent.side))
            elif link.latest_version != sent.weights_version:
                self._draw(camera, settings, sent.side)  # newer weights (a refresh, or the pause's copy)
            elif link.training and not link.paused.is_set() and now - sent.at >= options.refresh_s:
                link.request_sync()  # copied at the next step boundary

    def _draw(self, camera: ViewCamera, settings: ViewSettings, side: int) -> None:
        viewer, link = self.viewer, self.viewer.link
        height, width = image_size(camera.aspect, side)
        batch = camera.batch(viewer.context.orbit, height, width)

        def cancelled() -> bool:
            state = self.current()
            return self._stop.is_set() or state is None or state != (camera, settings)

        asked_at = self._moved_at
        started = time.perf_counter()
        with link.scene_for_frame() as (scene, version):
            frame = render_frame(scene, batch, settings, device=viewer.context.device, amp=viewer.context.amp,
                                 cancelled=cancelled)
        seconds = time.perf_counter() - started
        if frame is not None:
            rate = seconds / (height * width)
            self._seconds_per_pixel = rate if self._seconds_per_pixel == 0 else 0.7 * self._seconds_per_pixel + 0.3 * rate
        if link.training and not link.paused.is_set():
            # Keep rendering to (1 - train_util) of the time: after a frame of r seconds, wait
            # r·u/(1 - u) before another frame the camera did not ask for.
            u = min(max(viewer.options.train_util, 0.05), 0.95)
            self._next_free = time.perf_counter() + seconds * u / (1.0 - u)
        if frame is None:
            self._wake.set()  # cancelled by a newer camera: draw that one
            return
        image, depth = frame
        self.sequence += 1
        self.client.scene.set_background_image(image, format="jpeg", jpeg_quality=92, depth=depth)
        self.sent = SentFrame(camera, settings, version, side, height, width, seconds, image, self.sequence,
                              time.perf_counter(), asked_at)
        self.history.append(self.sent)
        viewer.frame_text.content = f"frame {self.sequence}: {width}×{height} in {seconds:.2f} s"
        self.client.flush()  # no batching window: the frame goes out now
        self._wake.set()  # look again: refine or refresh


def _free_port(host: str) -> int:
    """A port the OS says is free now (viser itself moves on to the next one if it gets taken)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host if host not in ("", "0.0.0.0") else "127.0.0.1", 0))
        return probe.getsockname()[1]
