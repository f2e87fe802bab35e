"""Process-group setup and the few collectives the jobs need (gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(timeout_s: float) -> DistEnv:
    """Joins the process group described by torchrun's environment, or makes a 1-process group.

    The backend is nccl when CUDA is available, else gloo. ``timeout_s`` bounds every collective, so a rank
    that dies or diverges makes the others fail instead of hanging.
    """
    timeout = timedelta(seconds=timeout_s)
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    else:
        rank, world_size, local_rank, local_world_size = 0, 1, 0, 1
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if world_size > 1 or "MASTER_ADDR" in os.environ:
            dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timeout)
        else:
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
    return DistEnv(rank, world_size, local_rank, local_world_size, device)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def global_sum(values: List[float], device: torch.device) -> List[float]:
    """Sums a few scalars over all ranks (float64)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather_arrays(arrays: Dict[str, np.ndarray], env: DistEnv) -> Optional[Dict[str, np.ndarray]]:
    """Concatenates every rank's arrays on rank 0 (in rank order); other ranks get None."""
    gathered: List[Optional[Dict[str, np.ndarray]]] = [None] * env.world_size if env.is_main else []
    dist.gather_object(arrays, gathered if env.is_main else None, dst=0)
    if not env.is_main:
        return None
    return {k: np.concatenate([g[k] for g in gathered]) for k in arrays}
