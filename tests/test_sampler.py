"""IdentitySampler: batch composition, determinism, replacement, epoch length, sharding."""
from __future__ import annotations

import numpy as np
import pytest

from djanet.data.sampler import IdentitySampler

VIS = np.repeat(np.arange(6), [5, 5, 5, 1, 5, 5])       # identity 3 has a single visible image
IR = np.repeat(np.arange(6), [3, 3, 3, 3, 2, 3])


def _batches(s, P, K):
    pairs = np.array(list(s))
    return pairs.reshape(-1, P * K, 2)


def test_composition():
    s = IdentitySampler(VIS, IR, ids_per_batch=3, num_pos=4, seed=1)
    batches = _batches(s, 3, 4)
    assert len(s) == len(batches) * 12 == 3 * 12                 # ceil(26 / 12) = 3 batches
    for b in batches:
        v, i = VIS[b[:, 0]], IR[b[:, 1]]
        assert (v == i).all()                                     # a pair shares its identity
        ids = v.reshape(3, 4)
        assert (ids == ids[:, :1]).all() and len(set(ids[:, 0])) == 3   # P distinct x K each


def test_replacement_when_fewer_than_k():
    s = IdentitySampler(VIS, IR, ids_per_batch=6, num_pos=4, seed=0)
    b = _batches(s, 6, 4)[0]
    rows = b[VIS[b[:, 0]] == 3]
    assert len(rows) == 4 and set(rows[:, 0]) == {15}             # the one image, 4 times
    rich = b[VIS[b[:, 0]] == 0]
    assert len(set(rich[:, 0])) == 4                              # enough images: no repeats


def test_deterministic_per_epoch():
    a = IdentitySampler(VIS, IR, 2, 2, seed=5)
    b = IdentitySampler(VIS, IR, 2, 2, seed=5)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(IdentitySampler(VIS, IR, 2, 2, seed=6)) != first


def test_sharding():
    full = IdentitySampler(VIS, IR, 2, 2, seed=3)                 # ceil(26 / 4) = 7 batches
    shards = [IdentitySampler(VIS, IR, 2, 2, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    assert len(full) == 7 * 4
    assert len(shards[0]) == len(shards[1]) == len(list(shards[0])) == 4 * 4   # 8 batches / 2 ranks
    batches = shards[0].batches()
    assert len(batches) == 8 and all(np.array_equal(a, b) for a, b in zip(batches, full.batches()))
    for r, s in enumerate(shards):
        assert np.array_equal(np.array(list(s)), np.concatenate(batches[r::2]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="rank=2"):
        IdentitySampler(VIS, IR, 2, 2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="both visible and infrared"):
        IdentitySampler([0, 1], [2, 3], 2, 2)
    s = IdentitySampler([0, 1], [0, 1], ids_per_batch=4, num_pos=1)   # fewer ids than P
    assert len(list(s)) == 4
