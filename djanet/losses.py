"""Losses of DJANet: identity cross-entropy, batch-hard triplet, complementary learning loss.

`DJANetLoss(loss_cfg)(out, labels)` takes the model's training output and the labels of the four
views (VIS1, VIS2, IR1, IR2 stacked on the batch axis) and returns named scalars
{'id', 'triplet', 'complementary', 'total'}.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def id_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy over all views: mean_i -log softmax(logits_i)[y_i]."""
    return F.cross_entropy(logits, labels)


def pairwise_euclidean(x: Tensor) -> Tensor:
    """``d_ij = sqrt(max(|x_i|^2 + |x_j|^2 - 2 x_i.x_j, 1e-12))`` (floor keeps the sqrt differentiable)."""
    sq = (x * x).sum(1)
    return (sq[:, None] + sq[None, :] - 2 * x @ x.t()).clamp(min=1e-12).sqrt()


def batch_hard_triplet(features: Tensor, labels: Tensor, margin: float) -> Tensor:
    """Batch-hard triplet loss (Hermans et al., "In Defense of the Triplet Loss", 2017).

    For every anchor a: d_ap = max over positives (same label), d_an = min over negatives, and
    loss = mean_a max(0, d_ap - d_an + margin), as MarginRankingLoss(d_an, d_ap, y=1).
    """
    dist = pairwise_euclidean(features.float())
    same = labels[:, None] == labels[None, :]
    d_ap = dist.masked_fill(~same, float("-inf")).amax(1)
    d_an = dist.masked_fill(same, float("inf")).amin(1)
    return F.relu(d_ap - d_an + margin).mean()


def _histogram_entropy(maps: Tensor, bins: int = 256) -> Tensor:
    """Entropy (nats) of a `bins`-bin histogram of each min-max normalised map; maps (n, ...)."""
    flat = maps.flatten(1)
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    norm = (flat - lo) / (hi - lo).clamp(min=1e-12)
    idx = (norm * bins).long().clamp(max=bins - 1)
    counts = torch.zeros(flat.shape[0], bins, device=flat.device).scatter_add_(
        1, idx, torch.ones_like(norm))
    p = counts / flat.shape[1]
    return -(p * torch.log(p.clamp(min=1e-12))).sum(1)


def complementary_loss(feat_map: Tensor) -> Tensor:
    """Complementary learning loss on layer4 maps, in the differentiable form the seed intended.

    The batch is split into its visible half V and infrared half I (pair k: V_k with I_k, the same
    identity); m = channel-mean map of each sample. Without gradient:
    cos_k = cosine(m_Vk, m_Ik), H = entropy of a 256-bin histogram of the min-max normalised map,
    w_k = sigmoid((H(m_Vk) - H(m_Ik)) / (cos_k^2 + 1e-3)). With gradient, on the continuous maps::

        loss = mean_k [ w_k * s(m_Vk) + (1 - w_k) * s(m_Ik) ],
        s(m) = mean over positions of smoothL1(m, 0) = 0.5 m^2 if |m| < 1 else |m| - 0.5

    ("smooth L2": quadratic near zero, linear beyond 1 so a large map cannot blow up the loss).
    The seed casts the maps to integers (no gradient) and standardises the per-pair losses, whose
    mean is then ~0; we do neither.
    """
    vis, ir = feat_map.float().mean(1).chunk(2, dim=0)             # (n, h, w) each
    with torch.no_grad():
        cos = F.cosine_similarity(vis.flatten(1), ir.flatten(1), dim=1)
        w = torch.sigmoid((_histogram_entropy(vis) - _histogram_entropy(ir)) / (cos ** 2 + 1e-3))

    def smooth(m: Tensor) -> Tensor:
        return F.smooth_l1_loss(m, torch.zeros_like(m), reduction="none", beta=1.0).flatten(1).mean(1)

    return (w * smooth(vis) + (1 - w) * smooth(ir)).mean()


def triplet_features(out: dict[str, Tensor], which: str) -> Tensor:
    """The features the triplet ranks: "pool" as given, "bn" L2-normalised."""
    if which == "pool":
        return out["pool"]
    if which == "bn":
        return F.normalize(out["bn"].float(), dim=1)
    raise ValueError(f"triplet_features={which!r}; expected 'pool' or 'bn'")


class DJANetLoss(nn.Module):
    """total = id_weight * id + triplet_weight * triplet + complementary_weight * complementary.

    The complementary term is 0 (and not computed) when `loss_cfg.complementary` is False.  During
    the first `loss_cfg.triplet_warmup` epochs (pass `epoch`, 0-based) the triplet term is reported
    but not added: from random weights the batch-hard triplet alone pulls every feature together
    (its value sticks at the margin) before the identity loss has made features worth ranking.

    `loss_cfg.triplet_features` picks what the triplet ranks: "pool", the pooled vector (the
    paper), or "bn", the BNNeck feature L2-normalised (what evaluation ranks).  On "pool" the
    batch-hard hinge has a way out that needs no learning: while hardest positives lie farther than
    hardest negatives (across modalities, from random weights), shrinking every distance by a factor
    s lowers the loss to s * (d_ap - d_an) + margin, down to the margin itself.  A from-scratch
    network takes it: DJANet's pooled features (norm 22) ended 0.1 apart and the loss stuck at its
    margin (book/recipe.md).  Unit BN features cannot shrink that way,
    so only rearranging lowers the loss.
    """

    def __init__(self, loss_cfg: Any):
        super().__init__()
        self.cfg = loss_cfg

    def forward(self, out: dict[str, Tensor], labels: Tensor, epoch: int | None = None) -> dict[str, Tensor]:
        c = self.cfg
        triplet_on = epoch is None or epoch >= c.triplet_warmup
        losses = {"id": id_loss(out["logits"], labels),
                  "triplet": batch_hard_triplet(triplet_features(out, c.triplet_features), labels, c.margin)}
        losses["complementary"] = (complementary_loss(out["feat_map"]) if c.complementary
                                   else out["pool"].new_zeros(()))
        losses["total"] = (c.id_weight * losses["id"] + c.triplet_weight * triplet_on * losses["triplet"]
                           + c.complementary_weight * losses["complementary"])
        return losses
