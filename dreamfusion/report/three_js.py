"""three.js (r140) and its GLTFLoader, read from the copy trimesh bundles for its notebook viewer.

trimesh ships one HTML template (``trimesh/resources/templates/viewer.zip``) holding, in one
``<script>``: the minified three.js build, the examples' TrackballControls and GLTFLoader (classic
``THREE.*`` scripts), then its own page code. Only the first and the third are taken, so the mesh
viewer runs from ``file://`` with no network and nothing vendored in this repository.

    source = three_js_sources()   # str: three.js + GLTFLoader, licence header kept; for a <script>

three.js and its examples are MIT-licensed (Copyright 2010-2022 Three.js Authors); the core keeps
its ``@license`` header and the loader gets one naming it.
"""

from __future__ import annotations

import functools

_GLTF_LOADER_START = "(function(){class GLTFLoader"
_GLTF_LOADER_END = "THREE.GLTFLoader=GLTFLoader;})();"
_GLTF_LOADER_HEADER = ("/**\n * @license\n * GLTFLoader of three.js r140 (examples/js), as bundled by trimesh\n"
                       " * Copyright 2010-2022 Three.js Authors\n * SPDX-License-Identifier: MIT\n */\n")


@functools.lru_cache(maxsize=1)
def three_js_sources() -> str:
    """The JavaScript that defines ``THREE`` and ``THREE.GLTFLoader`` (about 700 kB).

    Raises:
        RuntimeError: trimesh's bundle is not laid out as expected (another trimesh version).
    """
    import trimesh.resources
    import trimesh.util

    archive = trimesh.util.decompress(trimesh.resources.get_bytes("templates/viewer.zip"), file_type="zip")
    page = archive["viewer.html.template"].read().decode("utf-8")
    script = page[page.find("<script>") + len("<script>"): page.rfind("</script>")]
    core_end = script.find("\n(function(){")  # the classic example scripts follow the core's UMD build
    loader_start = script.find(_GLTF_LOADER_START)
    loader_end = script.find(_GLTF_LOADER_END, max(loader_start, 0))
    core = script[:core_end]
    if not (core.startswith("/**\n * @license") and core.rstrip().endswith("}));") and '"140"' in core
            and 0 < core_end < loader_start < loader_end):
        raise RuntimeError(f"trimesh {trimesh.__version__}: its bundled three.js viewer is not laid out as "
                           f"expected (three.js r140 core, then GLTFLoader); the mesh viewer needs trimesh 5.2")
    loader = script[loader_start: loader_end + len(_GLTF_LOADER_END)]
    return f"{core}\n{_GLTF_LOADER_HEADER}{loader}\n"
