"""Identity sampler: batches of P identities x K (visible, infrared) pairs of the same identity.

As in the AGW/DJANet code, an epoch covers about max(#visible, #infrared) images.  Each batch
takes P distinct identities (consecutive chunks of a fresh permutation of the identities seen in
both modalities) and, per identity, K visible and K infrared images (without replacement when the
identity has at least K, else with replacement).  The whole epoch is a function of
(seed, epoch) only; with several replicas every rank builds it and keeps every
num_replicas-th batch, so ranks see disjoint batches of equal count.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np


class IdentitySampler:
    def __init__(self, vis_labels, ir_labels, ids_per_batch: int, num_pos: int, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0):
        vis_labels, ir_labels = np.asarray(vis_labels), np.asarray(ir_labels)
        if ids_per_batch < 1 or num_pos < 1:
            raise ValueError(f"ids_per_batch={ids_per_batch}, num_pos={num_pos}; both must be >= 1")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank={rank} must be in 0..num_replicas-1={num_replicas - 1}")
        self.ids = np.intersect1d(vis_labels, ir_labels)
        if len(self.ids) == 0:
            raise ValueError("no identity has both visible and infrared images")
        self.vis_pos = {int(i): np.flatnonzero(vis_labels == i) for i in self.ids}
        self.ir_pos = {int(i): np.flatnonzero(ir_labels == i) for i in self.ids}
        self.P, self.K, self.seed = ids_per_batch, num_pos, seed
        self.num_replicas, self.rank, self.epoch = num_replicas, rank, 0
        per_epoch = max(len(vis_labels), len(ir_labels))
        batches = max(1, math.ceil(per_epoch / (self.P * self.K)))
        self.batches_per_rank = math.ceil(batches / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches_per_rank * self.P * self.K

    def _pick(self, r: np.random.Generator, pos: np.ndarray) -> np.ndarray:
        return r.choice(pos, self.K, replace=len(pos) < self.K)

    def batches(self) -> list[np.ndarray]:
        """All batches of this epoch (every rank), each a (P*K, 2) array of (vis, ir) indices."""
        r = np.random.default_rng([self.seed, self.epoch])
        total = self.batches_per_rank * self.num_replicas
        order: list[int] = []
        out = []
        for _ in range(total):
            if len(self.ids) < self.P:                  # too few ids: repeat some in a batch
                chosen = r.choice(self.ids, self.P, replace=True)
            else:
                if len(order) < self.P:
                    order = r.permutation(self.ids).tolist()
                chosen, order = order[: self.P], order[self.P:]
            pairs = [np.stack([self._pick(r, self.vis_pos[int(i)]), self._pick(r, self.ir_pos[int(i)])], 1)
                     for i in chosen]
            out.append(np.concatenate(pairs))
        return out

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for b in self.batches()[self.rank::self.num_replicas]:
            for v, i in b.tolist():
                yield v, i
