"""``dreamfusion preprocess``: a photo to the ``<stem>_rgba.png`` (+ ``_depth.png``, ``_normal.png``) that
``--image`` trains on, like stable-dreamfusion's ``preprocess_image.py``. See docs/preprocess.md.

    from dreamfusion.preprocess import preprocess_image
    result = preprocess_image("photo.jpg", size=256, border_ratio=0.2, depth_model="none")

Modules: `images` (reading and checking the photo), `background` (u2netp through onnxruntime),
`depth` (DPT depth, normals derived from it), `recenter` (crop/scale/centre and the sidecar transform),
`pipeline` (the stages in order, atomic writing). A tool over the library: nothing in the library imports it.
"""

from .pipeline import PreprocessResult, preprocess_image, preprocess_images
from .recenter import Sidecar

__all__ = ["PreprocessResult", "Sidecar", "preprocess_image", "preprocess_images"]
