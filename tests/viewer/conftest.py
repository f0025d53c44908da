"""A small trained workspace for the viewer tests: the offline exemplar prior for a few dozen steps at
tiny sizes (a real, asymmetric object in the making), with its exported mesh. The exemplar settings
are the demo's, so the exemplar image set is shared with the other tests of a session."""

import shutil

import pytest

from dreamfusion.cli import main
from viewer_helpers import VIEWER_ARGS

@pytest.fixture(scope="session")
def viewer_workspace(tmp_path_factory):
    """A finished workspace (40 steps, mesh exported). Tests that write into it take a copy."""
    workspace = tmp_path_factory.mktemp("viewer") / "ws"
    code = main([*VIEWER_ARGS, "--iters", "40", "--workspace", str(workspace), "--save_mesh"])
    assert code == 0 and (workspace / "mesh" / "mesh.glb").is_file()
    return workspace


@pytest.fixture
def viewer_workspace_copy(viewer_workspace, tmp_path):
    copy = tmp_path / "ws"
    shutil.copytree(viewer_workspace, copy)
    return copy
