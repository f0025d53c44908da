"""Measure u2netp's mask IoU on the synthetic photos of the tests and the seconds per photo of the pipeline.

    .venv/bin/python tests/preprocess/measure_preprocess.py      # the table in docs/preprocess.md

Not a test (pytest collects test_*.py only): it prints one row per photo (3 sizes x 3 seeds) and a summary.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preprocess_scenes import blob_photo  # noqa: E402

from dreamfusion.preprocess import background, preprocess_image  # noqa: E402


def main() -> int:
    background.check_model()
    start = time.perf_counter()
    background.load_session()
    print(f"onnxruntime import + session: {time.perf_counter() - start:.2f} s (once per process)")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in (256, 384, 512):
            for seed in range(3):
                rgb, silhouette = blob_photo(size, seed)
                path = Path(folder) / f"blob{size}_{seed}.jpg"
                cv2.imwrite(str(path), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
                start = time.perf_counter()
                alpha, _ = background.remove_background(rgb)
                mask_seconds = time.perf_counter() - start
                mask = alpha > 127
                iou = (mask & silhouette).sum() / (mask | silhouette).sum()
                start = time.perf_counter()
                preprocess_image(path, depth_model="none", log=lambda line: None)
                rows.append((size, seed, iou, mask_seconds, time.perf_counter() - start))
                print(f"{size}x{size} seed {seed}: IoU {iou:.4f}, u2netp {mask_seconds:.2f} s, "
                      f"whole photo (read, mask, recentre, write) {rows[-1][-1]:.2f} s")
    ious = np.array([r[2] for r in rows])
    seconds = np.array([r[4] for r in rows])
    print(f"IoU: min {ious.min():.4f}, median {np.median(ious):.4f}, mean {ious.mean():.4f}; "
          f"seconds per photo: median {np.median(seconds):.2f}, max {seconds.max():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
