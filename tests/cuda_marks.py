"""The mark of the tests that compare a CUDA path with the CPU: run them on a machine with a GPU and a build
of tinyfast with its CUDA kernels (`pytest -m cuda`, as `bench/gpu_check.sh` does), skip them elsewhere."""

import pytest
import torch

from tinyfast.ops import cuda_available_in_build


def cuda_test(function):
    function = pytest.mark.skipif(
        torch.cuda.is_available() and not cuda_available_in_build(),
        reason="tinyfast was built without its CUDA kernels",
    )(function)
    function = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")(function)
    return pytest.mark.cuda(function)
