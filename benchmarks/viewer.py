"""The browser viewer's cost and latency, measured in one run (ratios, since machines are noisy).

    python benchmarks/viewer.py [--seconds 12] [--drags 8] [--rounds 2]

Trains the offline demo's settings (exemplar prior, 32x32 renders, 32+16 samples) with ``--gui``'s
viewer attached, in phases that alternate within one run:

* no browser connected / a headless Chromium connected with the camera still: training it/s of each,
  and their ratio (target: the connected phase keeps >= 75 %). The first seconds after a browser
  connects (it loads viser's client, the view is refined, the frusta are created) are reported on
  their own, then the connected phase is measured;
* camera drags in the browser (Playwright mouse), each followed by stillness: the time from the
  mouse release to the arrival, in the page, of the first frame drawn from the final camera
  (target: <= 0.5 s), while training runs and while it is paused.

Prints a table; writes nothing outside a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dreamfusion.cli import parse_config  # noqa: E402
from dreamfusion.training.entry import build_trainer  # noqa: E402
from dreamfusion.viewer.browser import launch_chromium  # noqa: E402
from dreamfusion.viewer.link import TrainingLink, viewer_copy  # noqa: E402
from dreamfusion.viewer.run import viewer_context  # noqa: E402
from dreamfusion.viewer.server import Viewer, ViewerOptions  # noqa: E402

# Records when each "frame N:" status text reaches the page (performance.now(), ms).
WATCH_FRAMES = """() => {
  window.__frames = [];
  let last = null;
  const look = () => {
    const m = document.body.innerText.match(/frame (\\d+):/);
    if (m && m[1] !== last) { last = m[1]; window.__frames.push([performance.now(), parseInt(m[1])]); }
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def steps_per_second(link: TrainingLink, seconds: float) -> float:
    start_step, start = link.step, time.perf_counter()
    time.sleep(seconds)
    return (link.step - start_step) / (time.perf_counter() - start)


VERBOSE = False
SETTLE_S = 8.0  # after a browser connects: page load, the view refined, the frusta created


def clock_offset(page) -> float:
    """server perf_counter() minus browser performance.now() (seconds), from the quickest of a few
    round trips (a local page: well under a millisecond of error)."""
    best = None
    for _ in range(5):
        before = time.perf_counter()
        browser = page.evaluate("performance.now()") / 1000.0
        after = time.perf_counter()
        if best is None or after - before < best[0]:
            best = (after - before, (before + after) / 2 - browser)
    return best[1]


def drag_latency(page, viewer: Viewer, dx: int, offset: float) -> tuple[float, float, float]:
    """Drag the camera and release. Returns (seconds from the browser's last camera message to the
    arrival, in the page, of the first frame drawn from that camera; the same from the mouse
    release; the seconds that frame took to draw)."""
    renderer = viewer.client_renderers()[0]
    page.mouse.move(200, 300)
    page.mouse.down()
    page.mouse.move(200 + dx, 310, steps=6)
    page.mouse.up()
    released = page.evaluate("performance.now()") / 1000.0 + offset
    time.sleep(1.5)  # let the camera settle and the frames arrive
    final = renderer.current()
    frame = next((f for f in renderer.history if (f.camera, f.settings) == final), None)
    arrived = next((t / 1000.0 + offset for t, n in page.evaluate("window.__frames")
                    if frame is not None and n == frame.sequence), None)
    if arrived is None:
        return float("nan"), float("nan"), float("nan")
    if VERBOSE:
        print(f"  asked->start {frame.at - frame.seconds - frame.asked_at:.3f}  draw {frame.seconds:.3f}  "
              f"sent->arrived {arrived - frame.at:.3f}  side {frame.side}  release->asked {frame.asked_at - released:.3f}")
    return arrived - frame.asked_at, arrived - released, frame.seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each it/s phase")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two it/s phases")
    parser.add_argument("--drags", type=int, default=8, help="camera drags per latency row")
    parser.add_argument("--verbose", action="store_true", help="print each drag's timeline")
    args = parser.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    from playwright.sync_api import sync_playwright

    workspace = Path(tempfile.mkdtemp(prefix="viewer-bench-"))
    config = parse_config(["--file", str(ROOT / "configs/exemplar-demo.txt"), "--text", "a hamburger",
                           "--workspace", str(workspace), "--iters", "100000", "--device", "cpu", "--gui"])
    trainer = build_trainer(config, torch.device("cpu"), progress_bar=False, log_echo=False)
    link = TrainingLink(viewer_copy(trainer.scene), iters=config.iters, text=config.text, training=True)
    link.attach_trainer(trainer)
    trainer.observer = link
    viewer = Viewer(link, viewer_context(config, trainer, training=True), ViewerOptions(max_side=512))
    url = viewer.start()
    trainer_thread = threading.Thread(target=trainer.train, daemon=True)
    trainer_thread.start()
    rows = []
    try:
        while link.step < 30:  # past the first steps' one-off costs (exemplar sets, warm-up)
            time.sleep(0.5)
        alone, connecting, connected = [], [], []
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            for _ in range(args.rounds):
                alone.append(steps_per_second(link, args.seconds))
                page = browser.new_page(viewport={"width": 800, "height": 600})
                page.goto(url)
                deadline = time.time() + 60
                while not viewer.client_renderers() or viewer.client_renderers()[0].sent is None:
                    if time.time() > deadline:
                        raise SystemExit("the browser got no frame in 60 s")
                    time.sleep(0.1)
                connecting.append(steps_per_second(link, SETTLE_S))
                connected.append(steps_per_second(link, args.seconds))
                page.close()
                time.sleep(1.0)
            page = browser.new_page(viewport={"width": 800, "height": 600})
            page.goto(url)
            while not viewer.client_renderers() or viewer.client_renderers()[0].sent is None:
                time.sleep(0.1)
            page.evaluate(WATCH_FRAMES)
            offset = clock_offset(page)
            time.sleep(2.0)
            training_latency = [drag_latency(page, viewer, 40 + 7 * i, offset) for i in range(args.drags)]
            link.paused.set()
            time.sleep(1.0)
            paused_latency = [drag_latency(page, viewer, -40 - 7 * i, offset) for i in range(args.drags)]
            link.paused.clear()
            browser.close()
    finally:
        link.request_stop()
        trainer_thread.join(timeout=120)
        viewer.close()
        trainer.close()

    a, c = statistics.mean(alone), statistics.mean(connected)
    rows.append(("training it/s, no browser", f"{a:.2f}", ", ".join(f"{v:.2f}" for v in alone)))
    rows.append((f"training it/s, the first {SETTLE_S:.0f} s after a browser connects", f"{statistics.mean(connecting):.2f}",
                 ", ".join(f"{v:.2f}" for v in connecting)))
    rows.append(("training it/s, browser connected (camera still)", f"{c:.2f}", ", ".join(f"{v:.2f}" for v in connected)))
    rows.append(("ratio connected / alone (target >= 0.75)", f"{c / a:.2f}", ""))
    for name, values in (("while training", training_latency), ("training paused", paused_latency)):
        ok = [v for v in values if v[0] == v[0]]
        stopped, released, drawn = ([v[k] for v in ok] for k in range(3))
        rows.append((f"frame latency after the camera stops, {name} (target <= 0.5 s)",
                     f"median {statistics.median(stopped):.2f} s, max {max(stopped):.2f} s" if ok else "no frames",
                     f"{len(ok)}/{len(values)} drags; drawing took median {statistics.median(drawn):.2f} s; "
                     f"from the mouse release median {statistics.median(released):.2f} s" if ok else ""))
    width = max(len(r[0]) for r in rows)
    print(f"viewer benchmark: demo settings (exemplar, 32x32, 32+16 samples) on {torch.get_num_threads()} CPU threads, "
          f"preview {viewer.options.preview_side} px, max {viewer.options.max_side} px")
    for name, value, detail in rows:
        print(f"{name:<{width}}  {value:<28} {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
