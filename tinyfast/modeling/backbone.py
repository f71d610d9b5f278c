"""ResNet + FPN backbones of the TinyPerson detectors (protocol section 5).

The ResNet is torchvision's, with frozen BatchNorm (statistics and affine parameters fixed, as
`norm_eval=True, requires_grad=False` in the reference) and its stem and first stage frozen
(`frozen_stages=1`). Frozen BatchNorm only makes sense with pretrained statistics: a network trained from
scratch (no ImageNet weights on the machine) needs `norm="batch"` or `"group"`, which are trained.

The FPN starts at C2 (`start_level=0`) and adds P6 from an extra 3x3 stride-2 conv: on P5's output (FCOS,
`add_extra_convs='on_output'`) or on C5 (RetinaNet, `'on_input'`); or, without extra conv (Faster-FPN,
`add_extra_convs=False`), by max-pooling P5 with stride 2 (`"max_pool"`).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torchvision import models
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

_WEIGHTS = {
    18: models.ResNet18_Weights.IMAGENET1K_V1,
    34: models.ResNet34_Weights.IMAGENET1K_V1,
    50: models.ResNet50_Weights.IMAGENET1K_V1,
    101: models.ResNet101_Weights.IMAGENET1K_V1,
}
_CONSTRUCTORS = {18: models.resnet18, 34: models.resnet34, 50: models.resnet50, 101: models.resnet101}
_NORMS = {
    "frozen": FrozenBatchNorm2d,
    "batch": nn.BatchNorm2d,
    "group": lambda channels: nn.GroupNorm(32, channels),
}


def local_imagenet_weights(depth: int) -> models.WeightsEnum | None:
    """torchvision's ImageNet weights for a ResNet of this depth if they are in the local torch hub cache.

    Nothing is downloaded: without the file the caller gets None and a warning saying where to put it.
    """
    weights = _WEIGHTS[depth]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if cached.is_file():
        return weights
    warnings.warn(
        f"ImageNet weights for ResNet-{depth} are not in {cached.parent}: the backbone starts from random "
        f"initialisation. To use them, put {Path(weights.url).name} there (from {weights.url}).",
        stacklevel=2,
    )
    return None


class LastLevelP6(ExtraFPNBlock):
    """P6 from a 3x3 stride-2 conv on P5's output (`on_output`) or on C5 (`on_input`)."""

    def __init__(self, in_channels: int, out_channels: int, source: Literal["on_output", "on_input"]):
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        nn.init.xavier_uniform_(self.p6.weight)
        nn.init.zeros_(self.p6.bias)
        self.source = source

    def forward(self, results: list[Tensor], x: list[Tensor], names: list[str]):
        results.append(self.p6(results[-1] if self.source == "on_output" else x[-1]))
        names.append("p6")
        return results, names


class ResNetFPN(nn.Module):
    """Returns P2..P6 (strides 4, 8, 16, 32, 64), each with `out_channels` channels."""

    strides = (4, 8, 16, 32, 64)

    def __init__(
        self,
        depth: int = 50,
        out_channels: int = 256,
        extra_source: Literal["on_output", "on_input", "max_pool"] = "on_output",
        pretrained: bool = True,
        frozen_stages: int = 1,
        norm: Literal["frozen", "batch", "group"] = "frozen",
    ):
        super().__init__()
        if depth not in _CONSTRUCTORS:
            raise ValueError(f"depth must be one of {sorted(_CONSTRUCTORS)}, got {depth}")
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {sorted(_NORMS)}, got {norm!r}")
        if extra_source not in ("on_output", "on_input", "max_pool"):
            raise ValueError(
                f"extra_source must be 'on_output', 'on_input' or 'max_pool', got {extra_source!r}"
            )
        weights = local_imagenet_weights(depth) if pretrained else None
        resnet = _CONSTRUCTORS[depth](weights=weights, norm_layer=_NORMS[norm])
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.stages = nn.ModuleList([resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4])
        # mmdetection's meaning: -1 trains everything, 0 freezes the stem, k also the first k stages.
        for module in ([self.stem] if frozen_stages >= 0 else []) + list(
            self.stages[: max(frozen_stages, 0)]
        ):
            module.requires_grad_(False)
        stage_channels = [
            stage[-1].conv3.out_channels if depth >= 50 else stage[-1].conv2.out_channels
            for stage in self.stages
        ]
        if extra_source == "max_pool":
            extra_block = LastLevelMaxPool()
        else:
            extra_in = out_channels if extra_source == "on_output" else stage_channels[-1]
            extra_block = LastLevelP6(extra_in, out_channels, extra_source)
        self.fpn = FeaturePyramidNetwork(stage_channels, out_channels, extra_blocks=extra_block)

    def forward(self, images: Tensor) -> list[Tensor]:
        x = self.stem(images)
        features = OrderedDict()
        for index, stage in enumerate(self.stages):
            x = stage(x)
            features[f"c{index + 2}"] = x
        return list(self.fpn(features).values())
