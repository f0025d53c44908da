"""Checkpoint naming, --ckpt resolution, atomic writes, pruning, corrupt files, RNG states."""

import random

import numpy as np
import pytest
import torch

from dreamfusion.checkpoints import (CheckpointManager, atomic_save, capture_rng_state, load_checkpoint,
                                     restore_rng_state)
from dreamfusion.errors import UserError


def state(value):
    return {"model": {"w": torch.tensor([float(value)])}, "global_step": value}


def test_resolve_semantics(tmp_path):
    m = CheckpointManager(tmp_path, keep=2, log=lambda s: None)
    assert m.resolve("latest").path is None          # nothing yet: fresh start
    assert m.resolve("scratch").path is None
    with pytest.raises(UserError, match="does not exist"):
        m.resolve("best")
    with pytest.raises(UserError, match="not found"):
        m.resolve(str(tmp_path / "nope.pth"))
    m.save_full(state(1), 1)
    m.save_full(state(2), 2)
    m.save_best(state(2))
    latest = m.resolve("latest")
    assert latest.path == m.epoch_path(2) and not latest.model_only
    assert m.resolve("latest_model").model_only and m.resolve("latest_model").path == m.epoch_path(2)
    best = m.resolve("best")
    assert best.path.name == "df.pth" and best.model_only
    explicit = m.resolve(str(m.epoch_path(1)))
    assert explicit.path == m.epoch_path(1) and not explicit.model_only
    assert load_checkpoint(explicit.path)["global_step"] == 1


def test_keep_last_n(tmp_path):
    m = CheckpointManager(tmp_path, keep=2, log=lambda s: None)
    for epoch in range(1, 6):
        m.save_full(state(epoch), epoch)
    assert [e for e, _ in m.full_checkpoints()] == [4, 5]
    assert load_checkpoint(m.epoch_path(5))["format"] == "dreamfusion-checkpoint-1"


def test_atomic_save_leaves_old_file_when_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "out" / "x.pth"
    atomic_save(state(1), path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_save({"model": Unpicklable()}, path)
    assert load_checkpoint(path)["global_step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["x.pth"]  # no temporary left behind


def test_corrupt_checkpoint_is_a_one_line_user_error_and_kept(tmp_path):
    m = CheckpointManager(tmp_path, log=lambda s: None)
    m.save_full(state(1), 1)
    path = m.epoch_path(1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    with pytest.raises(UserError) as info:
        load_checkpoint(m.resolve("latest").path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "--ckpt scratch" in message
    assert path.read_bytes() == data[: len(data) // 2]  # untouched
    (tmp_path / "checkpoints" / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError):
        load_checkpoint(tmp_path / "checkpoints" / "junk.pth")
    torch.save({"weights": 1}, tmp_path / "foreign.pth")
    with pytest.raises(UserError, match="no model weights"):
        load_checkpoint(tmp_path / "foreign.pth")


def test_set_aside_moves_instead_of_overwriting(tmp_path):
    messages = []
    m = CheckpointManager(tmp_path, keep=5, log=messages.append)
    for epoch in (1, 2, 3):
        m.save_full(state(epoch), epoch)
    m.save_best(state(3))
    folder = m.set_aside(newer_than_epoch=1)       # resuming from epoch 1: 2 and 3 are another future
    assert sorted(p.name for p in folder.iterdir()) == ["df_ep0002.pth", "df_ep0003.pth"]
    assert [e for e, _ in m.full_checkpoints()] == [1] and m.best_path.is_file()
    folder2 = m.set_aside(newer_than_epoch=None)   # fresh start: everything goes
    assert sorted(p.name for p in folder2.iterdir()) == ["df.pth", "df_ep0001.pth"]
    assert folder2 != folder and len(messages) == 2
    assert m.set_aside(None) is None


def test_stale_temporaries_are_removed(tmp_path):
    m = CheckpointManager(tmp_path, log=lambda s: None)
    m.folder.mkdir(parents=True)
    (m.folder / ".df_ep0001.pth.tmp-123").write_bytes(b"partial")
    m.remove_stale_temporaries()
    assert list(m.folder.iterdir()) == []


def test_rng_state_round_trip():
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    saved = capture_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_rng_state(saved)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_checkpoints_load_with_weights_only_and_rng_survives(tmp_path):
    random.seed(5)
    np.random.seed(5)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    path = tmp_path / "df_ep0001.pth"
    atomic_save({**state(1), "rng": capture_rng_state()}, path)
    expected = (random.random(), np.random.randn(), torch.rand(1).item())
    torch.load(path, weights_only=True)  # nothing but tensors and plain values
    restore_rng_state(load_checkpoint(path)["rng"])
    assert (random.random(), np.random.randn(), torch.rand(1).item()) == expected


def test_an_older_checkpoint_is_converted_once(tmp_path):
    np.random.seed(3)
    path = tmp_path / "df_ep0002.pth"
    old_rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    torch.save({**state(2), "rng": old_rng}, path)  # the format before tensor-only RNG states
    expected = np.random.rand()
    lines = []
    loaded = load_checkpoint(path, log=lines.append)
    assert len(lines) == 1 and "converted" in lines[0]
    assert loaded["global_step"] == 2
    np.random.seed(0)
    restore_rng_state(loaded["rng"])
    assert np.random.rand() == expected
    torch.load(path, weights_only=True)  # rewritten in place
    load_checkpoint(path, log=lines.append)
    assert len(lines) == 1


class _Payload:
    """Stands for a pickled object whose loading would run code."""

    def __reduce__(self):
        return (print, ("this ran",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, capsys):
    path = tmp_path / "someone_elses.pth"
    torch.save({**state(1), "extra": _Payload()}, path)
    before = path.read_bytes()
    with pytest.raises(UserError, match="refused: loading it would run code it names \\(builtins.print\\)"):
        load_checkpoint(path)
    assert "this ran" not in capsys.readouterr().out
    assert path.read_bytes() == before
