"""ResNet (or RegNet) + FPN backbones of the TinyPerson detectors (docs/protocol.md §5.1).

The network is torchvision's, with frozen BatchNorm (statistics and affine parameters fixed, as
`norm_eval=True, requires_grad=False` in the reference) and its stem and first stage frozen
(`frozen_stages=1`). Frozen BatchNorm only makes sense with pretrained statistics: a network trained from
scratch (no ImageNet weights on the machine) needs `norm="batch"` or `"group"`, which are trained.

The FPN starts at C2 (`start_level=0`). With all five levels it adds P6 from an extra 3x3 stride-2 conv: on
P5's output (FCOS, `add_extra_convs='on_output'`) or on C5 (RetinaNet, `'on_input'`); or, without extra conv
(Faster-FPN, `add_extra_convs=False`), by max-pooling P5 with stride 2 (`"max_pool"`). With fewer levels the
network stops at the stage the last one needs (3 levels: C2-C4, no C5): persons under 32 px never reach P5.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn
from torchvision import models
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from tinyfast.modeling.layers import make_group_norm
from tinyfast.utils.schema import Flag, Integer, OneOf, Section, Sequence, Text, setting

# torchvision constructors and the ImageNet weights that go with them (the reference's ResNets: V1).
BACKBONES = {
    "resnet18": (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (models.resnet34, models.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V1),
    "resnet101": (models.resnet101, models.ResNet101_Weights.IMAGENET1K_V1),
    "regnet_x_400mf": (models.regnet_x_400mf, models.RegNet_X_400MF_Weights.IMAGENET1K_V2),
    "regnet_y_400mf": (models.regnet_y_400mf, models.RegNet_Y_400MF_Weights.IMAGENET1K_V2),
    "regnet_y_800mf": (models.regnet_y_800mf, models.RegNet_Y_800MF_Weights.IMAGENET1K_V2),
}
_NORMS = {
    "frozen": FrozenBatchNorm2d,
    "batch": nn.BatchNorm2d,
    "group": make_group_norm,
}


@dataclass(frozen=True)
class BackboneConfig(Section):
    """The backbone and FPN options every detector config shares (its first fields); the detector configs
    are the `[model]` section of a config."""

    section: ClassVar[str] = "model"

    backbone: str = setting(OneOf(tuple(BACKBONES)), "resnet50")
    pretrained: bool = setting(Flag(), True)
    backbone_norm: str = setting(OneOf(tuple(_NORMS)), "frozen")  # "batch" or "group" to train from scratch
    # mmdetection's meaning: -1 trains everything, 0 freezes the stem, k also the first k stages.
    frozen_stages: int = setting(Integer(-1, 4), 1)
    channels: int = setting(Integer(1), 256)
    strides: tuple[int, ...] = setting(Sequence(Integer(1), min_length=1), (4, 8, 16, 32, 64))
    # A run folder or checkpoint whose weights start the run (every tensor whose name and shape match; the
    # engine loads them, not when resuming). "": the initialisation above.
    init_from: str = setting(Text(), "")


def local_imagenet_weights(name: str) -> models.WeightsEnum | None:
    """torchvision's ImageNet weights for backbone `name`, in the local torch hub cache.

    When the file is not there it is downloaded through torchvision's weights API (with a progress bar);
    when that fails (offline) the caller gets None and a warning naming the file, where it goes and where
    it comes from.
    """
    weights = BACKBONES[name][1]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if cached.is_file():
        return weights
    try:
        weights.get_state_dict(progress=True)  # downloads into the cache, checking the file's hash
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a bad download a RuntimeError
        warnings.warn(
            f"ImageNet weights for {name} are not in {cached.parent} and could not be downloaded ({error}): "
            f"the backbone starts from random initialisation. To use them, put {cached.name} there "
            f"(from {weights.url}).",
            stacklevel=2,
        )
        return None
    return weights


def check_pretrained(model_config: dict) -> None:
    """A backbone with frozen BatchNorm or frozen stages needs ImageNet weights: without them (none asked
    for, or none to be had) its statistics and first layers would stay random and the run would train
    noise. ValueError naming the three settings, before any training; ImageNet weights missing from the
    cache are downloaded here (see `local_imagenet_weights`)."""
    pretrained = model_config.get("pretrained", True)
    norm, frozen = model_config.get("backbone_norm", "frozen"), model_config.get("frozen_stages", 1)
    if (norm != "frozen" and frozen < 0) or model_config.get("init_from"):
        return  # nothing frozen, or the weights come from model.init_from (the engine checks they load)
    if pretrained and local_imagenet_weights(model_config.get("backbone", "resnet50")) is not None:
        return
    why = "model.pretrained = true but they are not available" if pretrained else "model.pretrained = false"
    raise ValueError(
        f"model.backbone_norm = {norm!r} and model.frozen_stages = {frozen} freeze parts of the backbone, "
        f"which needs ImageNet weights, but {why}: set model.pretrained = true with the weights in place, "
        'or train from scratch with model.backbone_norm = "batch" (or "group") and model.frozen_stages = -1'
    )


def _stem_and_stages(network: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """The stem and the four stages (outputs at strides 4, 8, 16, 32) of a torchvision ResNet or RegNet."""
    if isinstance(network, models.RegNet):
        return network.stem, list(network.trunk_output.children())
    stem = nn.Sequential(network.conv1, network.bn1, network.relu, network.maxpool)
    return stem, [network.layer1, network.layer2, network.layer3, network.layer4]


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


class BackboneFPN(nn.Module):
    """One FPN map per entry of `strides`, P2 first, each with `out_channels` channels. `strides` must be the
    first levels of (4, 8, 16, 32, 64): all five, or fewer, e.g. (4, 8, 16)."""

    all_strides = (4, 8, 16, 32, 64)

    def __init__(
        self,
        name: str = "resnet50",
        out_channels: int = 256,
        extra_source: Literal["on_output", "on_input", "max_pool"] = "on_output",
        pretrained: bool = True,
        frozen_stages: int = 1,
        norm: Literal["frozen", "batch", "group"] = "frozen",
        strides: tuple[int, ...] = all_strides,
    ):
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {name!r}")
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {sorted(_NORMS)}, got {norm!r}")
        if extra_source not in ("on_output", "on_input", "max_pool"):
            raise ValueError(
                f"extra_source must be 'on_output', 'on_input' or 'max_pool', got {extra_source!r}"
            )
        if not strides or tuple(strides) != self.all_strides[: len(strides)]:
            first_levels = list(self.all_strides)
            raise ValueError(
                f"strides must be the first levels of {first_levels} (P2 first), got {list(strides)}"
            )
        num_levels = len(strides)
        constructor = BACKBONES[name][0]
        weights = local_imagenet_weights(name) if pretrained else None
        self.stem, stages = _stem_and_stages(constructor(weights=weights, norm_layer=_NORMS[norm]))
        self.stages = nn.ModuleList(stages[: min(num_levels, 4)])
        # mmdetection's meaning: -1 trains everything, 0 freezes the stem, k also the first k stages.
        for module in ([self.stem] if frozen_stages >= 0 else []) + list(
            self.stages[: max(frozen_stages, 0)]
        ):
            module.requires_grad_(False)
        stage_channels = [
            [m for m in stage.modules() if isinstance(m, nn.Conv2d)][-1].out_channels for stage in self.stages
        ]
        if num_levels < 5:
            extra_block = None
        elif extra_source == "max_pool":
            extra_block = LastLevelMaxPool()
        else:
            extra_in = out_channels if extra_source == "on_output" else stage_channels[-1]
            extra_block = LastLevelP6(extra_in, out_channels, extra_source)
        self.fpn = FeaturePyramidNetwork(stage_channels, out_channels, extra_blocks=extra_block)

    @classmethod
    def from_config(
        cls, config: BackboneConfig, extra_source: Literal["on_output", "on_input", "max_pool"]
    ) -> BackboneFPN:
        return cls(
            config.backbone,
            config.channels,
            extra_source,
            config.pretrained,
            config.frozen_stages,
            config.backbone_norm,
            config.strides,
        )

    def forward(self, images: Tensor) -> list[Tensor]:
        x = self.stem(images)
        features = OrderedDict()
        for index, stage in enumerate(self.stages):
            x = stage(x)
            features[f"c{index + 2}"] = x
        return list(self.fpn(features).values())
