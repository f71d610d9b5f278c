"""The processes of a `torchrun` launch: the process group (NCCL on GPUs, gloo on CPU), each process's
device. Without torchrun a run is a group of one process. The collectives are in `tinyfast.utils.comm`.

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

from tinyfast.utils.comm import is_initialized, rank, world_size

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
    created = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_initialized()
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield Processes(rank(), world_size(), local_rank, device)
    finally:
        if created:
            dist.destroy_process_group()
