"""The memory estimate refuses what cannot fit, with one line naming the part, and allows what is
merely large (stable-dreamfusion's own sizes)."""

import pytest

from dreamfusion.cli import parse_config
from dreamfusion.errors import UserError
from dreamfusion.memory import (GB, RENDER_BYTES_PER_SAMPLE, TRAIN_BYTES_PER_SAMPLE, TRAIN_BYTES_PER_TABLE_ENTRY,
                                VIDEO_BYTES_PER_PIXEL, check_memory, estimate_memory, hash_table_entries)

import torch

CPU = torch.device("cpu")


def config(*extra):
    return parse_config(["--text", "a hamburger", "--workspace", "ws", *extra])


def test_parts_follow_the_sizes():
    c = config("--h", "64", "--w", "64", "--num_steps", "64", "--upsample_steps", "32", "--batch_size", "2",
               "--H", "100", "--W", "200", "--dataset_size_test", "10", "--max_ray_batch", "4096")
    e = estimate_memory(c)
    assert e.training_step == 2 * 64 * 64 * 96 * TRAIN_BYTES_PER_SAMPLE + hash_table_entries(c) * TRAIN_BYTES_PER_TABLE_ENTRY
    # the default 2^19 table: 16 levels, the first 5 dense, 2 features each (the field's own parameter count)
    from dreamfusion.fields import FieldConfig, NeRFField

    assert hash_table_entries(c) == NeRFField(FieldConfig(log2_hashmap_size=19)).encoder.embeddings.numel()
    assert e.video == 10 * 100 * 200 * VIDEO_BYTES_PER_PIXEL
    assert e.render >= 4096 * 96 * RENDER_BYTES_PER_SAMPLE
    assert e.mesh == 0 and estimate_memory(config("--save_mesh")).mesh > 0
    assert e.peak == e.base + max(e.training_step, e.render + e.video, e.mesh)


def test_stable_dreamfusion_sizes_pass_and_impossible_ones_are_one_line():
    # stable-dreamfusion's defaults with -O, a 2^19 table and a 256^3 mesh fit in 8 GB
    check_memory(config("-O", "--log2_hashmap_size", "19", "--save_mesh"), CPU, available=8 * GB)
    assert estimate_memory(config("-O")).peak < 3 * GB
    with pytest.raises(UserError, match=r"needs about \d+\.\d GB of cpu memory \(a training step is the largest part"):
        check_memory(config("--h", "100000", "--w", "100000"), CPU, available=24 * GB)
    with pytest.raises(UserError, match="the test video is the largest part"):
        check_memory(config("--H", "100000", "--W", "100000"), CPU, available=24 * GB)
    with pytest.raises(UserError, match="the mesh export is the largest part"):
        check_memory(config("--mcubes_resolution", "2048", "--save_mesh"), CPU, available=24 * GB)
