"""The joint align module and the whole DJANet forward against the official code's own outputs.

tests/data/official_forward.json.gz was recorded once from the official architecture on CPU
(github.com/Hmn-92/DJANet, with a stand-in Mamba written from mamba_ssm's reference path): every
tensor its inference uses was set by a rule computed from the tensor's official name, then each
align level (layerATT0..3) ran on seeded random inputs and the whole network on a seeded image.
The file holds the rule, the seeds and samples of the outputs: facts, no code and no weights.
Here the same rule fills our model through the official key map, so a wrong mix, a swapped
argument or a changed activation in the align module or the body moves these numbers.
"""
from __future__ import annotations

import gzip
import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from djanet import official
from djanet.align import JointAlign
from djanet.backbone import feature_channels, feature_sizes
from djanet.config import get_config
from djanet.model import DJANet

FIXTURE = Path(__file__).parent / "data" / "official_forward.json.gz"
KEYS = Path(__file__).parent / "data" / "official_keys.json.gz"


@pytest.fixture(scope="module")
def recorded():
    return json.loads(gzip.decompress(FIXTURE.read_bytes()))


@pytest.fixture(scope="module")
def official_shapes():
    doc = json.loads(gzip.decompress(KEYS.read_bytes()))
    return {k: (tuple(shape), getattr(torch, dtype)) for k, (shape, dtype) in doc["tensors"].items()}


def rule(key: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """The fixture's weight rule (its `weight_rule` field), from the official key."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    leaf = key.rsplit(".", 1)[-1]
    if not dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)
    if leaf == "running_mean":
        return torch.randn(shape, generator=g) * 0.1
    if leaf == "running_var":
        return torch.rand(shape, generator=g) + 0.5
    if leaf == "A_log":
        return torch.rand(shape, generator=g) * 2.5
    if leaf == "D":
        return torch.randn(shape, generator=g) * 0.2 + 1.0
    if key.endswith("dt_proj.bias"):
        return torch.randn(shape, generator=g) * 0.5 - 3.0
    if leaf == "weight" and len(shape) == 1:
        return torch.rand(shape, generator=g) * 0.4 + 0.2
    if len(shape) == 1:
        return torch.randn(shape, generator=g) * 0.1
    return (torch.rand(shape, generator=g) * 2 - 1) / math.sqrt(math.prod(shape[1:]))


def seeded(shape, seed: int) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(seed))


def ruled_state(official_shapes, prefix: str = "") -> dict[str, torch.Tensor]:
    """Our state dict (keys under `prefix`, which is stripped) filled by the rule via the key map."""
    out = {}
    for key, (shape, dtype) in official_shapes.items():
        ours = official.our_key(key)
        if ours is not None and ours.startswith(prefix):
            out[ours[len(prefix):]] = rule(key, shape, dtype)
    return out


def assert_matches(sample: dict, actual: torch.Tensor, rel: float = 2e-5) -> None:
    """The recorded every-`stride`-th values and the norm, to `rel` of the tensor's largest value."""
    assert list(actual.shape) == sample["shape"]
    values = actual.detach().double().flatten()[:: sample["stride"]].numpy()
    expected = np.asarray(sample["values"])
    scale = np.abs(expected).max()
    worst = np.abs(values - expected).max()
    assert worst <= rel * scale, f"max |ours - official| = {worst:.3g} (scale {scale:.3g})"
    assert actual.double().norm().item() == pytest.approx(sample["norm"], rel=rel)


def test_each_align_level_gives_the_official_output(recorded, official_shapes):
    img_size = (384, 192)   # the official module's sizes are fixed to this input
    m = get_config("paper").model
    align = JointAlign(feature_channels(m.arch, m.width), feature_sizes(img_size), m.align_dim,
                       m.attn_heads, m.d_state, m.d_conv, m.expand)
    align.load_state_dict(ruled_state(official_shapes, "align."), strict=True)
    align.eval()
    for name, case in recorded["align"].items():
        x, level_map = seeded(case["x_shape"], case["x_seed"]), seeded(case["map_shape"], case["map_seed"])
        with torch.no_grad():
            assert_matches(case["output"], align.levels[name](x, level_map))


@pytest.mark.slow
def test_the_whole_forward_gives_the_official_features(recorded, official_shapes):
    """ResNet-50 at 384x192 with non-local blocks, both stems and the align module: about 10 s."""
    cfg = get_config("paper", **{"model.pretrained": False})
    model = DJANet.from_config(cfg.model, 395, cfg.data.img_size)
    model.load_state_dict(ruled_state(official_shapes), strict=True)
    model.eval()
    for modality, case in recorded["forward"].items():
        image = seeded(case["image_shape"], case["image_seed"])
        with torch.no_grad():
            pool, bn = model.extract(image, modality)
        assert_matches(case["pool"], pool, rel=1e-4)
        assert_matches(case["bn"], bn, rel=1e-4)
