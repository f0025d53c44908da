"""Named moments where a test can stop a run from outside, to kill it there (``kill -9``).

With ``DREAMFUSION_PAUSE_AT=<name>`` and ``DREAMFUSION_PAUSE_FILE=<path>`` in the environment, the
process that reaches :func:`pause_point` ``(name)`` writes ``path`` and sleeps until it is killed.
Without them it costs one dictionary lookup. Names: ``checkpoint`` (a checkpoint's temporary file is
written, not yet renamed), ``validation`` (the first validation view is written), ``video`` (the
colour video is written, the depth video not yet), ``export`` (the mesh files are in their temporary
folder, not yet moved to ``mesh/``).
"""

from __future__ import annotations

import os
import time


def pause_point(name: str) -> None:
    if os.environ.get("DREAMFUSION_PAUSE_AT") != name:
        return
    marker = os.environ.get("DREAMFUSION_PAUSE_FILE")
    if marker:
        with open(marker, "w") as handle:
            handle.write(str(os.getpid()))
    while True:
        time.sleep(60)
