"""Losses against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from djanet.config import LossConfig
from djanet.losses import (DJANetLoss, _histogram_entropy, batch_hard_triplet, complementary_loss,
                           id_loss, pairwise_euclidean, triplet_features)


def test_id_loss_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    expect = (-math.log(math.e ** 2 / (math.e ** 2 + 1)) - math.log(1 / (1 + math.e))) / 2
    assert id_loss(logits, labels).item() == pytest.approx(expect, rel=1e-6)


def test_triplet_by_hand():
    # 1-D points: ids 0 at 0 and 1, id 1 at 3 and 5.
    x = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
    y = torch.tensor([0, 0, 1, 1])
    torch.testing.assert_close(pairwise_euclidean(x)[0], torch.tensor([1e-6, 1.0, 3.0, 5.0]),
                               atol=1e-5, rtol=0)
    # d_ap: 1, 1, 2, 2; d_an: 3, 2, 2, 4; margin 0.7 -> relu(-1.3, -0.3, 0.7, -1.3)
    assert batch_hard_triplet(x, y, 0.7).item() == pytest.approx(0.7 / 4, abs=1e-5)
    # margin met everywhere -> zero
    assert batch_hard_triplet(x, y, 0.0).item() == pytest.approx(0.0, abs=1e-6)
    far = torch.tensor([[0.0], [0.1], [10.0], [10.1]])
    assert batch_hard_triplet(far, y, 0.7).item() == 0.0


def test_entropy_by_hand():
    m = torch.tensor([[0.0, 1.0, 0.0, 1.0]])           # two bins, half each
    assert _histogram_entropy(m).item() == pytest.approx(math.log(2), rel=1e-6)
    assert _histogram_entropy(torch.ones(1, 4)).item() == pytest.approx(0.0, abs=1e-6)


def test_complementary_by_hand_and_gradient():
    # VIS map: constant 0.5 (entropy 0); IR map: 0 / 2 halves (entropy log 2); one pair.
    vis = torch.full((1, 3, 2, 2), 0.5)
    ir = torch.tensor([0.0, 2.0, 0.0, 2.0]).view(1, 1, 2, 2).repeat(1, 3, 1, 1)
    fmap = torch.cat([vis, ir]).requires_grad_(True)
    cos = (0.5 * 2 * 2) / (1.0 * math.sqrt(8))        # <(.5,.5,.5,.5), (0,2,0,2)> / norms
    w = 1 / (1 + math.exp(-(0 - math.log(2)) / (cos ** 2 + 1e-3)))
    s_vis = 0.5 * 0.25                                  # smooth-L1 in the quadratic zone
    s_ir = (0 + 1.5 + 0 + 1.5) / 4                      # |2| - 0.5 in the linear zone
    loss = complementary_loss(fmap)
    assert loss.item() == pytest.approx(w * s_vis + (1 - w) * s_ir, rel=1e-5)
    loss.backward()
    assert fmap.grad.abs().sum() > 0


def test_djanet_loss_dict_and_switch():
    torch.manual_seed(0)
    out = {"logits": torch.randn(8, 3), "pool": torch.randn(8, 5),
           "feat_map": torch.rand(8, 4, 3, 2)}
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    cfg = LossConfig(margin=0.3, triplet_weight=0.5, complementary_weight=2.0)
    d = DJANetLoss(cfg)(out, labels)
    assert set(d) == {"id", "triplet", "complementary", "total"}
    assert d["complementary"] > 0
    torch.testing.assert_close(d["total"], d["id"] + 0.5 * d["triplet"] + 2.0 * d["complementary"])
    torch.testing.assert_close(d["triplet"], batch_hard_triplet(out["pool"], labels, 0.3))
    off = DJANetLoss(LossConfig(complementary=False))(out, labels)
    assert off["complementary"].item() == 0.0
    torch.testing.assert_close(off["total"], off["id"] + off["triplet"])


def test_triplet_warmup_reports_the_term_but_leaves_it_out_of_the_total():
    torch.manual_seed(0)
    out = {"logits": torch.randn(8, 3), "pool": torch.randn(8, 5), "feat_map": torch.rand(8, 4, 3, 2)}
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    loss = DJANetLoss(LossConfig(margin=0.3, triplet_warmup=2, complementary=False))
    for epoch in (0, 1):
        d = loss(out, labels, epoch)
        assert d["triplet"] > 0
        torch.testing.assert_close(d["total"], d["id"])
    for epoch in (2, None):             # None: no schedule (a bare call) adds every term
        d = loss(out, labels, epoch)
        torch.testing.assert_close(d["total"], d["id"] + d["triplet"])


def test_triplet_on_pool_falls_to_its_margin_by_shrinking_but_not_on_unit_bn_features():
    # 1-d features, two ids: the hardest positive (2 apart) is farther than the hardest negative
    # (1 apart), as across modalities from random weights.  Shrinking everything by s lowers the
    # pooled hinge to s * (d_ap - d_an) + margin, towards the margin with no learning at all.
    x = torch.tensor([[0.0, 1.0], [2.0, 1.0], [1.0, 1.0], [3.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    losses = [DJANetLoss(LossConfig(margin=0.3, complementary=False))(
        {"logits": torch.zeros(4, 2), "pool": s * x, "bn": s * x}, labels)["triplet"].item()
        for s in (1.0, 0.1, 0.001)]
    assert losses[0] == pytest.approx(1.3) and losses[1] == pytest.approx(0.4)
    assert losses[2] == pytest.approx(0.3, abs=1e-3)
    unit = [DJANetLoss(LossConfig(margin=0.3, complementary=False, triplet_features="bn"))(
        {"logits": torch.zeros(4, 2), "pool": s * x, "bn": s * x}, labels)["triplet"].item()
        for s in (1.0, 0.1, 0.001)]
    assert unit == pytest.approx([unit[0]] * 3, rel=1e-4) and unit[0] > 0.3
    expect = batch_hard_triplet(torch.nn.functional.normalize(x, dim=1), labels, 0.3)
    assert unit[0] == pytest.approx(expect.item(), rel=1e-6)


def test_triplet_features_names_the_option_at_fault():
    with pytest.raises(ValueError, match="triplet_features='bnneck'.*'pool' or 'bn'"):
        triplet_features({"pool": torch.zeros(2, 2)}, "bnneck")
