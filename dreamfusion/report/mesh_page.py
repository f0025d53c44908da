"""An interactive viewer of the exported mesh: one self-contained HTML page (three.js and the GLB
inside it, nothing fetched), so it opens from ``file://`` with no network.

    page = viewer_page(glb_bytes, title="mesh.glb")          # str: the whole page
    write_viewer_page(workspace / "mesh" / "mesh.glb")         # -> mesh/viewer.html (when changed)
    viewer_embed(page, glb_size, href="mesh/viewer.html")      # <iframe srcdoc> for the run page

Browsers refuse ``fetch`` of a sibling file from a ``file://`` page, so the GLB travels inside the
page as base64 (in a non-executed ``<script id="mesh-glb">``) and is parsed from memory. The run
page embeds the same page in an ``<iframe srcdoc>``: its script and styles stay apart from the run
page's. A GLB over :data:`INLINE_MAX_BYTES` is not embedded in the run page (it is rewritten every
epoch and should open at once): the page links ``mesh/viewer.html`` instead.

Mouse: drag orbits around the object, right-drag or shift-drag pans, the wheel zooms, a double
click goes back to the first view. The page sets ``window.meshViewerReady`` once the first frame of
the mesh is drawn, counts frames in ``window.meshViewerFrames`` and puts any failure in
``window.meshViewerError`` (tests wait on these).
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from dreamfusion.report.three_js import three_js_sources

VIEWER_NAME = "viewer.html"
BACKGROUND = "#f0f0f0"
INLINE_MAX_BYTES = 4 << 20  # a larger GLB is linked from the run page, not embedded in it
VIEWER_SIZE = (640, 480)  # the iframe on the run page, CSS pixels

_STYLE = f"""html,body{{margin:0;height:100%;background:{BACKGROUND};font-family:sans-serif}}
body{{display:flex;flex-direction:column}}
canvas{{flex:1;min-height:0;width:100%;display:block;touch-action:none;cursor:grab}}
#status{{font-size:11px;color:#555;padding:2px 6px;background:#fff}}"""

# Lights: a sky/ground hemisphere for the shadowed side and a key light above and to the right of
# the camera, following it, so the side in view is always lit. The exporter writes a rough,
# non-metallic material, which three.js then shades as albedo x (ambient + key x cos).
_VIEWER_JS = """(function () {
  "use strict";
  var canvas = document.getElementById("view"), status = document.getElementById("status");
  window.meshViewerReady = false;
  window.meshViewerFrames = 0;
  function fail(message) { window.meshViewerError = message; status.textContent = message; }
  var renderer;
  try {
    renderer = new THREE.WebGLRenderer({ canvas: canvas, antialias: true });
  } catch (error) {
    fail("This browser cannot draw WebGL here: open mesh.glb in a 3D viewer instead.");
    return;
  }
  renderer.outputEncoding = THREE.sRGBEncoding;
  renderer.setPixelRatio(window.devicePixelRatio || 1);
  var scene = new THREE.Scene();
  scene.background = new THREE.Color("__BACKGROUND__");
  var camera = new THREE.PerspectiveCamera(35, 1, 0.01, 100);
  scene.add(new THREE.HemisphereLight(0xffffff, 0x9a9a9a, 0.6));
  var key = new THREE.DirectionalLight(0xffffff, 0.55);
  scene.add(key, key.target);
  var view = { azimuth: 0.5, elevation: 0.35, distance: 1, target: new THREE.Vector3() };
  var home = null, radius = 1, pending = false, loaded = false;

  function halfFov() {  // the narrower of the vertical and horizontal half angles
    var v = THREE.MathUtils.degToRad(camera.fov / 2);
    return Math.min(v, Math.atan(Math.tan(v) * camera.aspect));
  }
  function place() {
    var c = Math.cos(view.elevation);
    camera.position.set(Math.sin(view.azimuth) * c, Math.sin(view.elevation), Math.cos(view.azimuth) * c)
      .multiplyScalar(view.distance).add(view.target);
    camera.near = view.distance / 100;
    camera.far = view.distance + 10 * radius;
    camera.lookAt(view.target);
    camera.updateProjectionMatrix();
    var offset = new THREE.Vector3(0.6, 1, 0.2).applyQuaternion(camera.quaternion).multiplyScalar(view.distance);
    key.position.copy(camera.position).add(offset);
    key.target.position.copy(view.target);
  }
  function draw() {
    pending = false;
    var w = Math.max(canvas.clientWidth, 1), h = Math.max(canvas.clientHeight, 1);
    var size = renderer.getSize(new THREE.Vector2());
    if (size.x !== w || size.y !== h) renderer.setSize(w, h, false);  // resizing clears the canvas
    camera.aspect = w / h;
    place();
    renderer.render(scene, camera);
    window.meshViewerFrames += 1;
  }
  function redraw() {
    if (loaded && !pending) { pending = true; requestAnimationFrame(draw); }
  }

  var encoded = document.getElementById("mesh-glb").textContent.replace(/\\s+/g, "");
  var binary = atob(encoded), bytes = new Uint8Array(binary.length);
  for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  new THREE.GLTFLoader().parse(bytes.buffer, "", function (gltf) {
    scene.add(gltf.scene);
    var sphere = new THREE.Box3().setFromObject(gltf.scene).getBoundingSphere(new THREE.Sphere());
    radius = sphere.radius > 0 ? sphere.radius : 1;
    view.target.copy(sphere.center);
    camera.aspect = Math.max(canvas.clientWidth, 1) / Math.max(canvas.clientHeight, 1);
    view.distance = 1.1 * radius / Math.sin(halfFov());  // the bounding sphere fills the view
    home = { azimuth: view.azimuth, elevation: view.elevation, distance: view.distance, target: view.target.clone() };
    loaded = true;
    draw();
    window.meshViewerReady = true;
  }, function (error) {
    fail("mesh.glb could not be read: " + (error && error.message ? error.message : error));
  });

  var drag = null;
  canvas.addEventListener("pointerdown", function (e) {
    drag = { x: e.clientX, y: e.clientY, pan: e.button === 2 || e.shiftKey };
    canvas.setPointerCapture(e.pointerId);
    canvas.style.cursor = "grabbing";
  });
  canvas.addEventListener("pointermove", function (e) {
    if (!drag) return;
    var dx = e.clientX - drag.x, dy = e.clientY - drag.y, h = Math.max(canvas.clientHeight, 1);
    drag.x = e.clientX;
    drag.y = e.clientY;
    if (drag.pan) {  // move the target in the view plane, as far as the object moves on screen
      var scale = 2 * view.distance * Math.tan(THREE.MathUtils.degToRad(camera.fov / 2)) / h;
      view.target.addScaledVector(new THREE.Vector3().setFromMatrixColumn(camera.matrix, 0), -dx * scale)
        .addScaledVector(new THREE.Vector3().setFromMatrixColumn(camera.matrix, 1), dy * scale);
    } else {  // a drag over the view's height turns the camera around once
      view.azimuth -= 2 * Math.PI * dx / h;
      view.elevation = Math.max(-1.55, Math.min(1.55, view.elevation + 2 * Math.PI * dy / h));
    }
    redraw();
  });
  function release() { drag = null; canvas.style.cursor = ""; }
  canvas.addEventListener("pointerup", release);
  canvas.addEventListener("pointercancel", release);
  canvas.addEventListener("contextmenu", function (e) { e.preventDefault(); });
  canvas.addEventListener("wheel", function (e) {
    e.preventDefault();
    view.distance = Math.max(0.2 * radius, Math.min(50 * radius, view.distance * Math.exp(e.deltaY * 0.001)));
    redraw();
  }, { passive: false });
  canvas.addEventListener("dblclick", function () {
    if (!home) return;
    view.azimuth = home.azimuth; view.elevation = home.elevation; view.distance = home.distance;
    view.target.copy(home.target);
    redraw();
  });
  window.addEventListener("resize", redraw);
})();
""".replace("__BACKGROUND__", BACKGROUND)


def viewer_page(glb: bytes, title: str = "mesh.glb") -> str:
    """The whole viewer page for one binary glTF (``glb``: the bytes of a ``.glb`` file)."""
    encoded = base64.b64encode(glb).decode("ascii")
    return "\n".join([
        "<!doctype html>",
        f"<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<canvas id='view'></canvas>",
        "<div id='status'>drag: orbit &middot; right-drag or shift-drag: pan &middot; wheel: zoom "
        "&middot; double-click: first view</div>",
        f"<script type='application/octet-stream' id='mesh-glb'>{encoded}</script>",
        f"<script>{three_js_sources()}</script>",
        f"<script>{_VIEWER_JS}</script>",
        "</body></html>",
    ])


def write_viewer_page(glb_path: str | os.PathLike, title: str | None = None) -> str:
    """Write ``viewer.html`` next to ``glb_path`` when it is missing or differs (an unchanged page
    keeps its file and modification time); return the page. Written atomically (temp + rename)."""
    glb_path = Path(glb_path)
    page = viewer_page(glb_path.read_bytes(), title or glb_path.name)
    target = glb_path.with_name(VIEWER_NAME)
    data = page.encode("utf-8")
    try:
        if target.stat().st_size == len(data) and target.read_bytes() == data:
            return page
    except OSError:
        pass
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return page


def viewer_embed(page: str, glb_size: int, href: str) -> str:
    """The run page's view of the mesh: ``page`` in an ``<iframe srcdoc>``, or, for a GLB over
    :data:`INLINE_MAX_BYTES` bytes, a line linking the standalone viewer at ``href``."""
    link = f"<a href='{html.escape(href)}'>{html.escape(Path(href).name)}</a>"
    if glb_size > INLINE_MAX_BYTES:
        return (f"<p>The mesh is {glb_size / 2**20:.1f} MB, too large to embed in this page: open {link} "
                f"to turn it around in 3D.</p>")
    width, height = VIEWER_SIZE
    return (f"<iframe class='mesh-viewer' title='interactive view of the mesh' width='{width}' height='{height}' "
            f"srcdoc=\"{html.escape(page, quote=True)}\"></iframe>"
            f"<p class='note'>Drag to turn the mesh around, wheel to zoom; {link} shows it in its own page.</p>")
