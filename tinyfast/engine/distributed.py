"""The processes of a `torchrun` launch: the process group (NCCL on GPUs, gloo on CPU), each process's
device, and the few collectives the engine needs. Without torchrun a run is a group of one process and
every collective is the identity.

    torchrun --nproc_per_node 4 -m tinyfast.train CONFIG                         # one machine, 4 GPUs
    torchrun --nnodes 2 --node_rank R --nproc_per_node 4 --master_addr HOST --master_port 29500 \\
        -m tinyfast.train CONFIG                                                  # two machines
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Processes:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if _initialized() else 1


def rank() -> int:
    return dist.get_rank() if _initialized() else 0


def is_main_process() -> bool:
    """Rank 0, also before the process group exists (torchrun's `RANK`)."""
    return (rank() if _initialized() else int(os.environ.get("RANK", "0"))) == 0


def select_device(setting: str, local_rank: int = 0) -> torch.device:
    """`"auto"`: this process's GPU when there is one, else the CPU; `"cuda"` insists on a GPU."""
    if setting not in DEVICES:
        raise ValueError(f"train.device must be one of {DEVICES}, got {setting!r}")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is 'cuda' but no GPU is visible")
    if setting == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise ValueError(
            f"process with LOCAL_RANK {local_rank} has no GPU of its own "
            f"({torch.cuda.device_count()} visible): start at most one process per GPU (--nproc_per_node)"
        )
    return torch.device("cuda", local_rank)


@contextlib.contextmanager
def launch(device_setting: str = "auto") -> Iterator[Processes]:
    """Joins the process group that torchrun describes in the environment (`WORLD_SIZE`, `RANK`,
    `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`), or uses the one the caller created; leaves a group it
    created when the block ends."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_setting, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    created = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _initialized()
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield Processes(rank(), world_size(), local_rank, device)
    finally:
        if created:
            dist.destroy_process_group()


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
