"""index.html: the mesh viewer with the GLB embedded, the standalone viewer page, the loss plots."""

import base64
import os

import pytest
import trimesh
from run_page_workspaces import embedded_glb, iframes, write_scalars

from dreamfusion.report import mesh_page
from dreamfusion.training.outputs import write_index_html


@pytest.fixture
def box_glb(tmp_path):
    """A small GLB in <workspace>/mesh (any valid GLB: the page must carry its exact bytes)."""
    path = tmp_path / "mesh" / "mesh.glb"
    path.parent.mkdir()
    box = trimesh.creation.box(extents=(1.0, 0.5, 0.25))
    box.visual.vertex_colors = [200, 80, 30, 255]
    path.write_bytes(box.export(file_type="glb"))
    return path


def test_the_run_page_embeds_the_viewer_with_the_exact_glb(tmp_path, box_glb):
    page = write_index_html(tmp_path).read_text()
    [frame] = iframes(page)
    assert "mesh-viewer" in frame["class"]
    viewer = frame["srcdoc"]  # the whole viewer page, entities decoded
    assert base64.b64decode(embedded_glb(viewer), validate=True) == box_glb.read_bytes()
    assert "Copyright 2010-2022 Three.js Authors" in viewer and "SPDX-License-Identifier: MIT" in viewer
    assert "THREE.GLTFLoader=GLTFLoader" in viewer and "http" not in embedded_glb(viewer)
    assert "<h2>Mesh</h2>" in page and "href='mesh/mesh.glb'" in page and "href='mesh/viewer.html'" in page


def test_the_standalone_viewer_is_the_same_page_and_is_rewritten_only_when_the_mesh_changes(tmp_path, box_glb):
    page = write_index_html(tmp_path).read_text()
    viewer_path = box_glb.with_name(mesh_page.VIEWER_NAME)
    assert viewer_path.read_text() == iframes(page)[0]["srcdoc"]
    os.utime(viewer_path, ns=(1, 1))
    write_index_html(tmp_path)  # the end of the next epoch: same mesh
    assert viewer_path.stat().st_mtime_ns == 1
    box_glb.write_bytes(trimesh.creation.icosphere().export(file_type="glb"))  # a new export
    write_index_html(tmp_path)
    assert base64.b64decode(embedded_glb(viewer_path.read_text())) == box_glb.read_bytes()
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary left


def test_a_large_mesh_is_linked_not_embedded(tmp_path, box_glb, monkeypatch):
    monkeypatch.setattr(mesh_page, "INLINE_MAX_BYTES", box_glb.stat().st_size - 1)
    page = write_index_html(tmp_path).read_text()
    assert iframes(page) == [] and "mesh-glb" not in page
    assert "too large to embed in this page" in page and "href='mesh/viewer.html'" in page
    viewer = box_glb.with_name(mesh_page.VIEWER_NAME).read_text()
    assert base64.b64decode(embedded_glb(viewer)) == box_glb.read_bytes()


def test_the_loss_section_appears_with_the_scalars(tmp_path):
    assert "<h2>Loss</h2>" not in write_index_html(tmp_path).read_text()
    write_scalars(tmp_path)
    page = write_index_html(tmp_path).read_text()
    assert "<h2>Loss</h2>" in page and page.count("<svg") == 2  # loss, learning rate
    assert "data-name='total'" in page and "data-name='lr'" in page
    assert "<h2>Mesh</h2>" not in page and "<iframe" not in page


def test_a_mesh_without_a_glb_is_listed_without_a_viewer(tmp_path):
    (tmp_path / "mesh").mkdir()
    (tmp_path / "mesh" / "mesh.obj").write_text("v 0 0 0\n")
    page = write_index_html(tmp_path).read_text()
    assert "href='mesh/mesh.obj'" in page and "<iframe" not in page
    assert not (tmp_path / "mesh" / mesh_page.VIEWER_NAME).exists()
