"""Loads the compiled extension, which registers the ``torch.ops.tinyfast`` library."""

import torch

try:
    from tinyfast import _C  # noqa: F401  (importing it registers the ops)
except ImportError as error:  # pragma: no cover - only without a build
    raise ImportError(
        "tinyfast's compiled ops are not built. From the repository root run "
        "`pip install -e . --no-build-isolation` (see README.md)."
    ) from error


def cuda_available_in_build() -> bool:
    """True when the CUDA kernels were compiled into ``tinyfast._C`` (a GPU is still needed to run them)."""
    return bool(torch.ops.tinyfast.built_with_cuda())
