"""A trained detector prepared for inference: BatchNorm folded into the convolutions, channels-last memory,
the network (not the box decoding) run in reduced precision where the hardware has it and, on request,
compiled for the fixed shape of the tiles.

Folding: the normalisation of a model in eval mode is an affine map per channel, so a convolution followed
by it is one convolution with a bias, the same function up to rounding, without a pass over its output."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import FrozenBatchNorm2d

from tinyfast.utils.precision import resolve_precision

_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)
# The (conv, norm) attribute pairs of torchvision's ResNet blocks, which apply each norm right after its conv.
_BLOCK_PAIRS = {
    BasicBlock: (("conv1", "bn1"), ("conv2", "bn2")),
    Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
}


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode with every BatchNorm (trained or frozen) that directly follows a
    convolution folded into it; `model` itself is left as it is.

    Folded: consecutive (Conv2d, norm) children of an `nn.Sequential` (torchvision's stems, downsampling
    branches and Conv2dNormActivation, as in RegNet) and the conv/bn pairs of torchvision's ResNet blocks.
    Any other norm (GroupNorm, a BatchNorm after something else) stays in place."""
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in zip(names, names[1:], strict=False):
                _fold_pair(module, first, second)
        for block_type, pairs in _BLOCK_PAIRS.items():
            if type(module) is block_type:
                for conv_name, norm_name in pairs:
                    _fold_pair(module, conv_name, norm_name)
    return folded


def _fold_pair(parent: nn.Module, conv_name: str, norm_name: str) -> None:
    conv, norm = getattr(parent, conv_name), getattr(parent, norm_name)
    if not (isinstance(conv, nn.Conv2d) and isinstance(norm, _NORMS)) or norm.running_mean is None:
        return
    if conv.out_channels != norm.running_mean.numel():
        return
    conv.weight, conv.bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
    )
    setattr(parent, norm_name, nn.Identity())


def prepare_for_inference(
    model: nn.Module, precision: str, device: torch.device | str, compile: bool = False
) -> nn.Module:
    """A copy of `model` for tiled inference on `device` at `precision` ("auto", "fp32", "bf16", "fp16":
    `test.precision`): eval mode, BatchNorm folded, weights channels last, and the detector's
    `inference_dtype` set so that its `detect_tiles` runs the network under autocast in that dtype and
    decodes boxes in float32; with `compile` (`test.compile`), its tile networks compiled
    (`compile_tile_networks`). `model` itself is left as it is (a training run evaluates its own copy)."""
    prepared = fold_batchnorm(model).to(device, memory_format=torch.channels_last)
    prepared.inference_dtype = resolve_precision(precision, device, "test.precision")
    if compile:
        compile_tile_networks(prepared, torch.device(device))
    return prepared


def compile_tile_networks(model: nn.Module, device: torch.device) -> None:
    """Replaces each of the detector's `tile_networks` (the submodules that only see the tiles' fixed shape:
    backbone and dense head; not the RoI head, whose input size varies) by a `CompiledNetwork`: compiled by
    `torch.compile` for that shape, on a GPU in "reduce-overhead" mode, which replays it as a CUDA graph (one
    launch per batch of tiles, not one per layer)."""
    names = getattr(model, "tile_networks", None)
    if not names:
        raise ValueError(f"test.compile: {type(model).__name__} does not name its tile_networks")
    mode = "reduce-overhead" if device.type == "cuda" else None
    for name in names:
        setattr(model, name, CompiledNetwork(getattr(model, name), mode))
    model.cuda_graphs = mode == "reduce-overhead"  # its detect_tiles then marks each batch a new step


class CompiledNetwork(nn.Module):
    """`network` compiled with `torch.compile` (static shapes: one compilation per tile batch shape), or,
    where compiling fails (the CPU backend needs a C++ compiler; a backend may not support an operation), the
    network itself: the first failure warns, naming the error, and every later call runs eagerly. An error
    of the network itself is raised again by the eager call."""

    def __init__(self, network: nn.Module, mode: str | None = None):
        super().__init__()
        self.network = network
        self.compiled = torch.compile(network, mode=mode, dynamic=False)
        self.failed: str | None = None  # why compiling failed, once it has

    def forward(self, images: torch.Tensor):
        if self.failed is None:
            try:
                return self.compiled(images)
            except Exception as error:  # noqa: BLE001 (any failure of the compiler; see the class doc)
                self.failed = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                warnings.warn(
                    f"test.compile: torch.compile failed ({self.failed}); the network runs uncompiled",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return self.network(images)


def run_network(dtype: torch.dtype | None, network: Callable[[torch.Tensor], Any], images: torch.Tensor):
    """`network(images)` on channels-last images, under autocast in `dtype` (None: as the weights are), with
    every floating tensor of its output (nested lists and tuples) back in float32: what follows, decoding
    boxes of persons a few pixels wide in tiles hundreds of pixels wide, needs float32's 24 bits."""
    images = images.contiguous(memory_format=torch.channels_last)
    if dtype is None:
        return network(images)
    with torch.autocast(images.device.type, dtype=dtype):
        outputs = network(images)
    return _to_float32(outputs)


def _to_float32(value):
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, list | tuple):
        return type(value)(_to_float32(item) for item in value)
    return value
