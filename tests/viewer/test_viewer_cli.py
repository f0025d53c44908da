"""The viewer from the command line: `dreamfusion view <workspace>` and `--gui` training print the
URL of the port really taken, show the field (and the exported mesh beside it) in a browser, quit
cleanly on Ctrl-C without touching the workspace's outputs; bad input is one line and exit 2."""

import io
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from viewer_helpers import VIEWER_ARGS


class Running:
    """A `dreamfusion` subprocess whose stdout lines are read as they come."""

    def __init__(self, args, tmp_path):
        self.stderr_path = tmp_path / "stderr.txt"
        self._stderr = open(self.stderr_path, "w")
        # Ctrl-C is what these tests send: give the child the default SIGINT disposition even when
        # pytest runs as a background job (which starts with SIGINT ignored, inherited by children).
        self.process = subprocess.Popen([sys.executable, "-m", "dreamfusion", *map(str, args)], stdout=subprocess.PIPE,
                                        stderr=self._stderr, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for_line(self, start: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if line.startswith(start):
                return line
        raise AssertionError(f"no line starting {start!r}; stderr: {self.stderr_path.read_text()[-2000:]}")

    def interrupt(self, timeout: float = 30.0) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._stderr.close()

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._stderr.close()


def snapshot(workspace):
    return {p.relative_to(workspace): p.read_bytes() for p in sorted(workspace.rglob("*"))
            if p.is_file() and p.parts[-2] in ("checkpoints", "mesh", "results")}


@pytest.mark.browser
@pytest.mark.slow
def test_view_shows_field_and_mesh_on_the_port_it_really_took(viewer_workspace_copy, chromium_browser, tmp_path):
    workspace = viewer_workspace_copy
    before = snapshot(workspace)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    run = Running(["view", workspace, "--gui_port", taken, "--device", "cpu"], tmp_path)
    page = chromium_browser.new_page(viewport={"width": 1800, "height": 600})
    try:
        url = run.wait_for_line("viewer: ").split()[1]
        port = urlparse(url).port
        assert port != taken  # viser moved on from the busy port; the URL says where it went
        page.goto(url)
        page.wait_for_function("/frame \\d+: \\d+×\\d+/.test(document.body.innerText)", timeout=60_000)
        page.wait_for_timeout(1500)  # the mesh (GLB) and the refined frame load
        pixels = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(int)
        # Home camera: field and mesh side by side (the field at x = 0, the mesh 2.2 to the right),
        # projected at about 40 % and 60 % of the width at this aspect ratio; white around them.
        row = pixels[250:350]
        dark = lambda region: (region.min(axis=-1) < 200).mean()  # noqa: E731
        assert dark(row[:, 620:800]) > 0.05, "the field is not drawn"
        assert dark(row[:, 1000:1180]) > 0.05, "the mesh is not drawn"
        assert dark(row[:, 0:200]) < 0.01
    finally:
        page.close()
        busy.close()
    assert run.interrupt() == 0
    assert snapshot(workspace) == before  # looking changes nothing


@pytest.mark.slow
def test_gui_training_serves_then_waits_for_ctrl_c(viewer_workspace_copy, tmp_path):
    run = Running([*VIEWER_ARGS, "--iters", "44", "--workspace", viewer_workspace_copy, "--gui"], tmp_path)
    try:
        url = run.wait_for_line("viewer: ").split()[1]
        assert url.startswith("http://127.0.0.1:")
        with socket.create_connection(("127.0.0.1", urlparse(url).port), timeout=10):
            pass  # the server answers while training runs
        assert "still at " + url in run.wait_for_line("training finished")
        assert (viewer_workspace_copy / "checkpoints" / "df_ep0003.pth").is_file()  # steps 41-44 trained
    except BaseException:
        run.kill()
        raise
    assert run.interrupt() == 0


@pytest.mark.parametrize("args,message", [
    (["view", "/no/such/workspace"], "workspace not found"),
    (["view", "{ws}", "--gui_port", "port"], "invalid int value"),
    (["--text", "a hamburger", "--gui", "--gui_port", "70000"], "--gui_port must be a port number"),
    (["--text", "a hamburger", "--gui", "--gui_host", " "], "--gui_host is empty"),
])
def test_bad_viewer_input_is_one_line(args, message, viewer_workspace, tmp_path):
    args = [a.replace("{ws}", str(viewer_workspace)) for a in args]
    if args[0] != "view":
        args += ["--workspace", str(tmp_path / "new")]
    result = subprocess.run([sys.executable, "-m", "dreamfusion", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "new").exists()
