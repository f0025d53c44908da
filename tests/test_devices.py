import random

import numpy as np
import pytest
import torch

from dreamfusion.devices import seed_everything, select_device
from dreamfusion.errors import UserError


def test_auto_picks_an_available_device():
    device = select_device("auto")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert device.type == expected
    assert select_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_cuda_is_a_clear_error():
    with pytest.raises(UserError, match="CUDA is not available"):
        select_device("cuda")


def test_unknown_device_is_a_clear_error():
    with pytest.raises(UserError, match="unknown device"):
        select_device("gpu7")


def test_seed_repeats_python_numpy_and_torch_streams():
    seed_everything(123)
    first = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(123)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1] and torch.equal(first[2], second[2])
