"""The browser viewer (``--gui``, ``dreamfusion view``): a run's field from any camera, while it trains
or from a finished workspace, with its controls, loss curve, training cameras and guidance preview.

Built on viser (an install extra, imported only when a viewer starts). Modules: ``camera`` (the
browser's camera as ours), ``frames`` (one frame of the scene), ``link`` (the link to a training
run, the Trainer's observer), ``server`` (the viser server, panel and per-browser render threads),
``run`` (what the CLI calls), ``browser`` (a headless Chromium for tests and benchmarks).
See docs/viewer.md.
"""
