"""What the run page (``<workspace>/index.html``) shows besides images and videos, one module each:

- :mod:`~dreamfusion.report.scalars`: the run's scalars as CSV (written by the run log, read here),
- :mod:`~dreamfusion.report.plots`: line plots as inline SVG,
- :mod:`~dreamfusion.report.loss_curves`: the loss section (total, each term, learning rate),
- :mod:`~dreamfusion.report.three_js`: three.js and its glTF loader, from trimesh's bundle,
- :mod:`~dreamfusion.report.mesh_page`: the self-contained interactive viewer of ``mesh.glb``.

The page itself is assembled by :func:`dreamfusion.training.outputs.write_index_html`. Nothing
here imports torch or the rest of the library.
"""
