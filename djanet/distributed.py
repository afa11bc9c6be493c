"""Multi-process training under `torchrun`, and a no-op stand-in for one process.

`torchrun --nproc_per_node N -m djanet train ...` sets RANK/WORLD_SIZE/LOCAL_RANK;
`setup()` then joins the process group (NCCL on CUDA, gloo on CPU) and the engine
wraps the model in DistributedDataParallel.  Each rank draws its own share of
the identity batches; rank 0 alone writes logs and checkpoints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")
    distributed: bool = False
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def average(self, values: dict[str, float]) -> dict[str, float]:
        """Mean of per-rank scalars (epoch losses) so rank 0 logs the global figure."""
        if not self.distributed or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return {k: v / self.size for k, v in zip(keys, t.tolist())}

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def cleanup(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup() -> World:
    """Join the process group when launched by torchrun; otherwise a single-process World.

    `torchrun --nproc_per_node 1` also joins (a group of one): that is how a single GPU runs
    the NCCL and DistributedDataParallel path.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        return World()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device, backend = torch.device("cuda", local), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend=backend)
    return World(rank=rank, size=size, device=device, distributed=True, owns_group=owns)
