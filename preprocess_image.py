"""stable-dreamfusion compatible entry point: ``python preprocess_image.py photo.jpg [--size 256]
[--border_ratio 0.2] [--recenter True|False] [--dont_recenter]``, the same pipeline as
``dreamfusion preprocess`` (which also takes several photos, ``--depth_model`` and ``--out_dir``)."""

import sys

from dreamfusion.cli import legacy_preprocess_main

if __name__ == "__main__":
    sys.exit(legacy_preprocess_main())
