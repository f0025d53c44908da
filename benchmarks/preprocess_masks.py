"""Background-removal masks of the image benchmark's photos, with and without opening see-through holes.

Every built-in object, from the three input cameras of benchmarks/image_to_3d.py, over each of the
four procedural backgrounds (84 photos, 256², seed 0): U²-Net-p's mask (alpha > 127) and the mask after
``dreamfusion.preprocess.holes.open_see_through_holes``, each scored by IoU against the true
silhouette, in the photo's own frame (no recentring, so the IoU is the mask's alone).

    .venv/bin/python benchmarks/preprocess_masks.py            # the table in docs/preprocess.md
    .venv/bin/python benchmarks/preprocess_masks.py --objects "a blue torus" --all-rows
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from image_to_3d import CAMERAS  # noqa: E402

from dreamfusion.exemplar.objects import OBJECT_NAMES  # noqa: E402
from dreamfusion.exemplar.photos import BACKGROUNDS, render_photo  # noqa: E402
from dreamfusion.preprocess.background import check_model, remove_background  # noqa: E402
from dreamfusion.preprocess.holes import open_see_through_holes  # noqa: E402

TARGET = 0.95  # issue 14's mask IoU target


def iou(alpha: np.ndarray, truth: np.ndarray) -> float:
    mask, true = alpha > 127, truth > 0.5
    return float((mask & true).sum() / max((mask | true).sum(), 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", nargs="+", default=list(OBJECT_NAMES))
    parser.add_argument("--all-rows", action="store_true", help="print every photo, not only those the step changes")
    args = parser.parse_args()
    check_model()
    rows = []
    print("| object | camera (polar, azimuth) | background | u2netp IoU | holes opened IoU | px opened | s |")
    print("|---|---|---|---:|---:|---:|---:|")
    for prompt in args.objects:
        for camera in CAMERAS:
            for background in BACKGROUNDS:
                photo = render_photo(prompt, camera, background=background, seed=0)
                alpha, _ = remove_background(photo.rgb)
                start = time.perf_counter()
                opened, count = open_see_through_holes(photo.rgb, alpha)
                seconds = time.perf_counter() - start
                row = (prompt, camera, background, iou(alpha, photo.alpha), iou(opened, photo.alpha), count, seconds)
                rows.append(row)
                if count or args.all_rows:
                    print(f"| {prompt} | {camera.polar:.0f}°, {camera.azimuth:.0f}° | {background} | {row[3]:.4f} | "
                          f"{row[4]:.4f} | {count} | {seconds:.3f} |", flush=True)
    before = np.array([r[3] for r in rows])
    after = np.array([r[4] for r in rows])
    print(f"\n{len(rows)} photos: mean IoU {before.mean():.4f} -> {after.mean():.4f}, min {before.min():.4f} -> "
          f"{after.min():.4f}; changed {sum(r[5] > 0 for r in rows)} (better {(after > before + 1e-4).sum()}, "
          f"worse {(after < before - 1e-4).sum()}); below {TARGET}: {(before < TARGET).sum()} -> {(after < TARGET).sum()}; "
          f"the step takes at most {max(r[6] for r in rows):.3f} s")
    for prompt, camera, background, _, value, _, _ in rows:
        if value < TARGET:
            print(f"  below {TARGET}: {prompt}, {camera.polar:.0f}°/{camera.azimuth:.0f}°, {background}: {value:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
