"""The complementary loss and its histogram entropy on values worked by hand or by a plain NumPy
reference that shares nothing with djanet.losses (the formula of its docstring, written out)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from djanet.losses import _histogram_entropy, complementary_loss


def test_histogram_entropy_by_hand():
    maps = torch.tensor([
        # range 0.5 from 0: normalised 0, 0.5, 0.5035, 1 -> 256 bins 0, 128, 128, 255 (one bin shared;
        # 257 bins would split it: 128, 129)
        [0.0, 0.25, 0.2517578125, 0.5],
        # the same range from 3: normalised 0, 0.4, 0.403, 1 -> bins 0, 102, 103, 255, all apart
        # (divided by 1 instead of the range they would share bin 51)
        [3.0, 3.2, 3.2015, 3.5],
        # normalised 0, 0, 0.993, 1 -> bins 0, 0, 254, 255 (the top value has bin 255 to itself)
        [0.0, 0.0, 0.4965, 0.5],
    ])
    two_one_one = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))      # 1.5 ln 2
    expected = [two_one_one, math.log(4), two_one_one]
    got = _histogram_entropy(maps)
    assert got.shape == (3,)
    assert got.tolist() == pytest.approx(expected, abs=1e-6)


def _entropy_reference(m: np.ndarray) -> np.ndarray:
    out = []
    for row in m.reshape(len(m), -1):
        norm = (row - row.min()) / max(row.max() - row.min(), 1e-12)
        idx = np.minimum(np.floor(norm * 256).astype(int), 255)
        p = np.bincount(idx, minlength=256) / len(row)
        p = p[p > 0]
        out.append(-(p * np.log(p)).sum())
    return np.asarray(out)


def _complementary_reference(feat_map: np.ndarray) -> float:
    """The docstring's formula: m = channel mean; w_k from entropies and the cosine; smooth-L1 means."""
    m = feat_map.mean(axis=1)                       # (2n, h, w)
    n = len(m) // 2
    vis, ir = m[:n], m[n:]
    a, b = vis.reshape(n, -1), ir.reshape(n, -1)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    w = 1 / (1 + np.exp(-(_entropy_reference(vis) - _entropy_reference(ir)) / (cos ** 2 + 1e-3)))

    def smooth(x):
        x = np.abs(x.reshape(n, -1))
        return np.where(x < 1, 0.5 * x ** 2, x - 0.5).mean(1)

    return float((w * smooth(vis) + (1 - w) * smooth(ir)).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_complementary_loss_equals_its_formula(seed):
    rng = np.random.default_rng(seed)
    # two pairs, three channels, a 5 x 3 map; values both inside and outside smooth-L1's quadratic part
    feat_map = rng.normal(0.0, 1.5, size=(4, 3, 5, 3)) + rng.normal(0.0, 1.0, size=(4, 1, 1, 3))
    got = complementary_loss(torch.tensor(feat_map, dtype=torch.float32)).item()
    assert got == pytest.approx(_complementary_reference(feat_map.astype(np.float32).astype(np.float64)),
                                rel=1e-5)


def test_histogram_counts_live_on_the_maps_device():
    """On the meta device (shapes without data) the entropy stays there; counts made on the CPU
    would bring it back to the CPU."""
    got = _histogram_entropy(torch.randn(3, 2, 4, 5, device="meta"))
    assert got.device.type == "meta" and got.shape == (3,)
