"""What the op wrappers share: Python arguments converted to the types of the op schemas, defaults filled.

The ops check the values themselves (``csrc/ops/<op>.cpp``, so that raw ``torch.ops.tinyfast`` calls are
checked too); here only what cannot be converted is rejected, with the same ``ValueError`` naming the
argument. Strict: a bool is not a number, a string is not a number, 2.7 is not an int.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import torch

# Converted to int64, the only integer dtype of the schemas; other dtypes go to the op, which names them.
_NARROW_INTEGER_DTYPES = (torch.int32, torch.int16, torch.int8, torch.uint8)


def fail(op: str, message: str):
    raise ValueError(f"{op}: {message}")


def tensor(op: str, name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        fail(op, f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def integer_tensor(op: str, name: str, value) -> torch.Tensor:
    """An integer tensor as int64 (other dtypes unchanged: the op rejects them)."""
    value = tensor(op, name, value)
    return value.to(torch.int64) if value.dtype in _NARROW_INTEGER_DTYPES else value


def real(op: str, name: str, value) -> float:
    """A Python, NumPy or one-element tensor real number (as torchvision's thresholds), as a float."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype != torch.bool:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(op, f"{name} must be a number, got {value!r}")
    return float(value)


def integer(op: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(op, f"{name} must be an int, got {value!r}")
    return int(value)


def optional_integer(op: str, name: str, value) -> int | None:
    return None if value is None else integer(op, name, value)


def boolean(op: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        fail(op, f"{name} must be a bool, got {value!r}")
    return value


def string(op: str, name: str, value) -> str:
    if not isinstance(value, str):
        fail(op, f"{name} must be a str, got {value!r}")
    return value


def check_one_device(op: str, tensors: dict[str, torch.Tensor]) -> None:
    """For the fake kernels, which stand in for the op's C++ checks where no kernel runs (tracing, meta
    tensors): tensors on several devices are the op's ValueError, not a dispatch to the meta kernel."""
    devices = [t.device for t in tensors.values()]
    if any(device != devices[0] for device in devices):
        names = ", ".join(tensors)
        fail(op, f"{names} must be on one device, got {', '.join(str(d) for d in devices)}")


def integers(op: str, name: str, values) -> list[int]:
    values = _listed(op, name, values, "ints")
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        fail(op, f"{name} must be a sequence of ints, got {values!r}")
    return [int(v) for v in values]


def reals(op: str, name: str, values) -> list[float]:
    values = _listed(op, name, values, "numbers")
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        fail(op, f"{name} must be a sequence of numbers, got {values!r}")
    return [float(v) for v in values]


def _listed(op: str, name: str, values, what: str) -> list:
    if isinstance(values, (str, bytes, torch.Tensor)) or not isinstance(values, Iterable):
        fail(op, f"{name} must be a sequence of {what}, got {values!r}")
    return list(values)
