"""What every benchmark shares: the devices to run on, the quick mode, honest timers (the machine they ran
on: `tinyfast.utils.machine`).

The quick mode (one small round, as a smoke test) is on under ``--benchmark-disable`` (CI runs each benchmark
once as a test) or ``TINYFAST_BENCH_QUICK=1`` (the default when ``CI=true``).
"""

import os
import time

import pytest
import torch

from tinyfast.ops import cuda_available_in_build

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(
                not (torch.cuda.is_available() and cuda_available_in_build()),
                reason="needs a CUDA device and tinyfast built with CUDA kernels",
            ),
        ],
    ),
]


def quick_mode(benchmark) -> bool:
    default = "1" if os.environ.get("CI") == "true" else "0"
    return benchmark.disabled or os.environ.get("TINYFAST_BENCH_QUICK", default) == "1"


def synchronized(function, device):
    """``function`` made to return only once its device work is done, so that timing it is honest."""

    def run():
        result = function()
        if device == "cuda":
            torch.cuda.synchronize()
        return result

    return run


def best_time(function, runs):
    """The result of ``function`` and its fastest run in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return result, min(times)
