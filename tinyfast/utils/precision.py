"""Which floating-point precision to compute in: `train.amp` and `test.precision` settings resolved for a
device. "auto" picks the fastest precision that the hardware runs natively and that keeps accuracy:
bfloat16 on GPUs that support it and on CPUs with native bfloat16 instructions (AVX512-BF16, AMX), else
float32. fp16 is never chosen automatically (it needs a gradient scaler and overflows more easily)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

AUTO = "auto"
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_SETTINGS = (AUTO, *PRECISIONS)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bfloat16 arithmetic natively (x86 AVX512-BF16 or AMX-BF16, Arm BF16).

    oneDNN also runs bfloat16 on plain AVX512 by emulation, which is slower than float32: that does not
    count. Read from the kernel's CPU flags (Linux); elsewhere False."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and cpu_has_native_bf16()


def resolve_precision(setting: str, device: torch.device | str, name: str) -> torch.dtype | None:
    """The autocast dtype for `setting` ("auto", "bf16", "fp16", "fp32") on `device`; None means float32.

    `name` is the config key, used in the error message. fp16 on a CPU is refused: PyTorch's CPU kernels
    run it far slower than float32."""
    device = torch.device(device)
    if setting == AUTO:
        return torch.bfloat16 if native_bf16(device) else None
    if setting not in PRECISIONS:
        raise ValueError(f"{name} must be one of {list(PRECISION_SETTINGS)}, got {setting!r}")
    if setting == "fp16" and device.type == "cpu":
        raise ValueError(f"{name} = 'fp16' is not supported on the CPU (use 'bf16', 'fp32' or 'auto')")
    return PRECISIONS[setting]
