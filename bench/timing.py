"""What every benchmark shares: the devices to run on, the quick mode, honest timers, peak memory (the
machine they ran on: `tinyfast.utils.machine`).

The quick mode (one small round, as a smoke test) is on under ``--benchmark-disable`` (CI runs each benchmark
once as a test) or ``TINYFAST_BENCH_QUICK=1`` (the default when ``CI=true``).
"""

import os
import time

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from tinyfast.ops import cuda_available_in_build
from tinyfast.utils.precision import native_bf16

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


def needs_native_bf16(device: str) -> None:
    """Skips the calling benchmark where `device` would only emulate bfloat16 (slower than float32)."""
    if not native_bf16(torch.device(device)):
        pytest.skip(f"{device} has no native bfloat16: bf16 would be emulated, slower than float32")


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


def peak_bytes(function, device):
    """Peak memory allocated by torch while ``function`` runs, above what was allocated when it started."""
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        function()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        function()
    changes = [event for event in profiler.profiler.kineto_results.events() if event.name() == "[memory]"]
    allocated = peak = 0
    for event in sorted(changes, key=lambda event: event.start_ns()):
        allocated += event.nbytes()
        peak = max(peak, allocated)
    return peak
