"""Process-group helpers: rank, world size and the few collectives the package needs. Without a process
group (a single process, no torchrun) every collective is the identity."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def is_main_process() -> bool:
    """Rank 0, also before the process group exists (torchrun's `RANK`)."""
    return (rank() if is_initialized() else int(os.environ.get("RANK", "0"))) == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def sum_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over all processes, as a new tensor (the input is left alone)."""
    total = tensor.clone()
    if world_size() > 1:
        dist.all_reduce(total)
    return total


def mean_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    return sum_over_processes(tensor) / world_size()


def max_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise maximum over all processes, as a new tensor (the input is left alone)."""
    highest = tensor.clone()
    if world_size() > 1:
        dist.all_reduce(highest, op=dist.ReduceOp.MAX)
    return highest


def all_gather_objects(value) -> list:
    """Every process's `value` (picklable), in rank order, in every process."""
    if world_size() == 1:
        return [value]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def gather_objects_to_main(value) -> list | None:
    """Every process's `value` in rank order on rank 0, None elsewhere."""
    if world_size() == 1:
        return [value]
    gathered = [None] * world_size() if rank() == 0 else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def broadcast_from_main(value):
    """Rank 0's `value` in every process."""
    if world_size() == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
