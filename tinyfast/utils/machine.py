"""What a measurement ran on, for the captions of the benchmark and study tables."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

import torch


def machine() -> dict[str, str | int]:
    """What the numbers were measured on: CPU model, the cores this process may use, torch, the GPU if any."""
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    described = {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "torch": torch.__version__}
    if torch.cuda.is_available():
        described["gpu"] = torch.cuda.get_device_name()
    return described


def describe(machine_info: dict) -> str:
    """One line for a table's caption, from ``machine()``."""
    line = f"{machine_info['cpu']}, {machine_info['cores']} cores, torch {machine_info['torch']}"
    return line + (f", {machine_info['gpu']}" if "gpu" in machine_info else "")
