"""Distributed training: this process's place in a torchrun job (gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .model import resolve_device


@dataclass
class Distributed:
    """This process's place in a torchrun job (a job of one without torchrun)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every process if it is true on any."""
        if self.world_size == 1:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model as the training step calls it: itself alone, under DDP in a job of several processes."""
        return torch.nn.parallel.DistributedDataParallel(model) if self.world_size > 1 else model


def local_processes() -> int:
    """Processes of this job on this machine (torchrun's LOCAL_WORLD_SIZE): they share its cores."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


def setup_distributed(device_name: str) -> Distributed:
    """Pick the device; join the process group when started by torchrun (gloo on CPU, nccl on GPU)."""
    device_name = resolve_device(device_name).type
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(device=torch.device(device_name))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dist.init_process_group(backend="nccl" if device_name == "cuda" else "gloo")
    if device_name == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    return Distributed(rank=dist.get_rank(), world_size=world_size, device=device)
