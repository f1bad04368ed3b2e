"""Several GPUs (or CPU processes) under torchrun: joining the process group, wrapping the model in
DistributedDataParallel, and checking that every rank holds the same weights. NCCL on GPUs, gloo on CPUs; rank 0
logs and saves. A single process needs none of this: :func:`init_distributed` then returns ``Dist()``."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """This process's place: ``rank`` of ``world`` processes, ``local_rank`` on its host."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on GPUs, gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank)


def wrap_ddp(model: torch.nn.Module, place: Dist, device: torch.device) -> torch.nn.Module:
    """The model itself for one process, else DistributedDataParallel over it (gradients all-reduced)."""
    if place.world <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


@torch.no_grad()
def replicas_identical(model: torch.nn.Module, place: Dist) -> bool:
    """True when every rank holds bit-identical weights (compared through a gathered fingerprint)."""
    if place.world <= 1:
        return True
    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    weights = torch.arange(1, flat.numel() + 1, device=flat.device, dtype=torch.float64).sin()
    fingerprint = torch.stack([flat.sum(), (flat * weights).sum()])
    gathered = [torch.zeros_like(fingerprint) for _ in range(place.world)]
    dist.all_gather(gathered, fingerprint)
    return all(torch.equal(g, gathered[0]) for g in gathered)
