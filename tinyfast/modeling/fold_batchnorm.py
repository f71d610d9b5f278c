"""BatchNorm folded into the convolution before it, for inference: one convolution with a bias instead of a
convolution and a normalisation pass over its output (the normalisation of a model in eval mode is an affine
map per channel, so the folded network computes the same function up to rounding)."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import FrozenBatchNorm2d

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
