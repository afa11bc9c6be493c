"""The align module's parts: the paper's defaults, head counts, the shallow projection's choice,
the MLP's initialisation and the errors a wrong input size gets."""
from __future__ import annotations

import pytest
import torch

from djanet.align import MLP, AlignLevel, JointAlign, MambaMixer, largest_divisor, projection_geometry


def test_largest_divisor_stays_within_the_bound():
    assert largest_divisor(12, 5) == 4          # 6 divides 12 but exceeds 5
    assert largest_divisor(4, 1) == 1 and largest_divisor(9, 9) == 9 and largest_divisor(10, 30) == 10


def test_an_impossible_projection_names_the_sizes():
    with pytest.raises(ValueError, match=r"^cannot project a map of size 2 to 5 with a strided conv; use an "
                                         r"img_size that is a multiple of 16$"):
        projection_geometry(2, 5)


def test_an_align_level_defaults_to_the_papers_sizes():
    level = AlignLevel("layer2", 8, (8, 4), 16, (4, 2))
    assert level.dim == 256 and level.heads == 8            # 32 heads asked, 8 positions: 8 divides 8
    mamba = level.mixer.mamba
    assert (mamba.d_state, mamba.d_conv, mamba.d_inner) == (64, 4, 512)
    assert AlignLevel("layer2", 8, (8, 4), 16, (8, 4), attn_heads=32).heads == 32
    assert AlignLevel("layer3", 16, (11, 3), 16, (11, 3), dim=8).heads == 11   # 33 positions, at most 32 heads


def test_joint_align_passes_the_papers_sizes_to_every_level():
    channels = {"stem": 4, "layer1": 8, "layer2": 8, "layer3": 16}
    sizes = {"stem": (22, 6), "layer1": (22, 6), "layer2": (22, 6), "layer3": (11, 3)}
    align = JointAlign(channels, sizes)
    assert list(align.levels) == ["stem", "layer1", "layer2", "layer3"]
    for level in align.levels.values():
        mamba = level.mixer.mamba
        assert (level.dim, level.heads) == (256, 11)                  # 33 positions: 11 of at most 32 heads
        assert (mamba.d_model, mamba.d_state, mamba.d_conv, mamba.d_inner) == (256, 64, 4, 512)
    small = JointAlign(channels, sizes, dim=6, attn_heads=2, d_state=3, d_conv=2, expand=3)
    for level in small.levels.values():
        mamba = level.mixer.mamba
        assert (level.dim, level.heads, mamba.d_state, mamba.d_conv, mamba.d_inner) == (6, 1, 3, 2, 18)


def test_the_mixer_passes_its_sizes_to_mamba():
    mixer = MambaMixer(6, d_state=3, d_conv=2, expand=1)
    assert (mixer.mamba.d_state, mixer.mamba.d_conv, mixer.mamba.d_inner) == (3, 2, 6)


def test_the_shallow_side_is_shared_only_for_the_same_grid_and_channels():
    assert AlignLevel("layer3", 16, (4, 2), 16, (4, 2), dim=8).shallow is None
    same_channels = AlignLevel("layer2", 16, (8, 4), 16, (4, 2), dim=8)       # finer grid: its own conv
    assert same_channels.shallow is not None and same_channels.shallow.stride == (2, 2)
    same_grid = AlignLevel("layer2", 8, (4, 2), 16, (4, 2), dim=8)            # other channels: its own 1x1
    assert same_grid.shallow is not None and same_grid.shallow.kernel_size == (1, 1)


def test_a_map_of_the_wrong_size_is_named():
    level = AlignLevel("layer2", 8, (8, 4), 16, (4, 2), dim=8)
    with pytest.raises(ValueError, match=r"^align level layer2: projected map \(8, 4\) != layer3 grid \(4, 2\); "
                                         r"was the model built for this img_size\?$"):
        level(torch.randn(1, 16, 4, 2), torch.randn(1, 8, 16, 8))


def test_mlp_weights_start_small():
    torch.manual_seed(0)
    mlp = MLP(256)
    for fc in (mlp.fc1, mlp.fc2):
        assert fc.weight.std().item() == pytest.approx(0.02, rel=0.05)   # trunc-normal, std 0.02
        assert fc.weight.abs().max().item() <= 2.0 and torch.all(fc.bias == 0)
