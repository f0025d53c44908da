"""The viewer's link to a training run: pausing stops the steps, actions run on the training thread
between steps, the viewer's copy of the weights follows, and watching never changes the result."""

import math
import threading
import time

import numpy as np
import torch

from dreamfusion.viewer.camera import ViewCamera
from dreamfusion.viewer.frames import ViewSettings, render_frame
from dreamfusion.viewer.link import LossHistory
from viewer_helpers import linked_trainer, wait_until

CPU = torch.device("cpu")


def test_loss_history_aligns_terms_and_bins_long_runs():
    history = LossHistory()
    history.add(1, {"total": 2.0, "sds": 2.0})
    history.add(2, {"total": 3.0, "sds": 2.5, "entropy": 0.5})
    steps, terms = history.arrays()
    assert steps.tolist() == [1, 2] and math.isnan(terms["entropy"][0]) and terms["entropy"][1] == 0.5
    long = LossHistory()
    for step in range(1, 1001):
        long.add(step, {"total": float(step)})
    steps, terms = long.arrays(max_points=10)
    assert len(steps) == 10 and steps[0] == 50.5 and terms["total"][-1] == 950.5  # means of 100-step bins


def test_pause_actions_copies_and_stop(viewer_workspace_copy):
    trainer, link = linked_trainer(viewer_workspace_copy, iters=400)
    result = {}
    thread = threading.Thread(target=lambda: result.update(code=trainer.train()), name="training")
    thread.start()
    try:
        wait_until(lambda: link.step >= 43, what="steps after the resume at 40")
        link.paused.set()
        wait_until(lambda: link.status == "paused", what="the pause")
        paused_at = link.step
        time.sleep(0.5)
        assert link.step == paused_at and trainer.global_step == paused_at
        # Pausing copies the weights: the viewer shows exactly what the optimiser holds.
        live = trainer.scene.state_dict()
        with link.scene_for_frame() as (scene, _):
            assert all(torch.equal(v, live[k]) for k, v in scene.state_dict().items())
        # Actions run on the training thread, between steps, even while paused; a failing one is reported.
        ran = {}
        link.submit(lambda t: (threading.current_thread().name, t.global_step), lambda r, e: ran.update(ok=(r, e)))
        link.submit(lambda t: 1 / 0, lambda r, e: ran.update(bad=(r, e)))
        wait_until(lambda: "ok" in ran and "bad" in ran, what="the actions")
        assert ran["ok"] == (("training", paused_at), None)
        assert isinstance(ran["bad"][1], ZeroDivisionError)
        link.paused.clear()
        wait_until(lambda: link.step >= paused_at + 3, what="steps after resuming")
        link.paused.set()  # hold still while the history is read
        wait_until(lambda: link.status == "paused", what="the second pause")
        steps, terms = link.history.arrays()
        assert steps.tolist() == list(range(41, link.step + 1))  # every step since the resume at 40, once
        parts = sum(v for k, v in terms.items() if k != "total")
        assert np.allclose(terms["total"], parts, rtol=1e-5)  # the total is the sum of the terms
        link.paused.clear()
        link.request_stop()
        thread.join(timeout=60)
        assert not thread.is_alive() and result["code"] == 130
        state = torch.load(trainer.ckpt.full_checkpoints()[-1][1], map_location="cpu", weights_only=False)
        assert state["global_step"] == link.step  # stopped with a checkpoint of the last step
    finally:
        link.request_stop()
        thread.join(timeout=60)
        trainer.close()


def test_watching_a_seeded_run_does_not_change_it(viewer_workspace, tmp_path):
    """Frames drawn all the time and weights copied every step: the same weights as an unwatched run."""
    import shutil

    final = {}
    for watched in (False, True):
        workspace = tmp_path / f"ws-{watched}"
        shutil.copytree(viewer_workspace, workspace)
        trainer, link = linked_trainer(workspace, iters=46)
        if not watched:
            trainer.observer = None
        stop = threading.Event()

        def draw_forever():
            camera = ViewCamera.orbit(60, 30, 4.0, 25.0).batch(trainer.orbit, 24, 24)
            while not stop.is_set():
                link.request_sync()
                with link.scene_for_frame() as (scene, _):
                    render_frame(scene, camera, ViewSettings(shading="lambertian"), device=CPU)

        drawer = threading.Thread(target=draw_forever)
        if watched:
            drawer.start()
        try:
            assert trainer.train() == 0
        finally:
            stop.set()
            if watched:
                drawer.join()
            trainer.close()
        final[watched] = {k: v.clone() for k, v in trainer.scene.state_dict().items()}
        if watched:
            assert link.weights_version > 0
    assert all(torch.equal(final[False][k], final[True][k]) for k in final[False])
