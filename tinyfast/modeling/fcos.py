"""Adap FCOS (docs/protocol.md §5.4): ResNet-FPN P2-P6, an FCOS head without GroupNorm, focal + GIoU +
centerness losses, with targets from the compiled `tinyfast.ops.fcos_targets`.

Differences from torchvision's FCOS that TinyPerson needs: P2 (stride 4) is used, regress ranges start at
16 px, no GroupNorm, centerness on the regression branch, regression in stride units (`norm_on_bbox`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from tinyfast.modeling.backbone import BackboneConfig, BackboneFPN
from tinyfast.modeling.dense_detector import DenseDetector
from tinyfast.modeling.layers import conv_tower, flatten_levels, init_dense_head
from tinyfast.modeling.postprocess import select_level_candidates, sigmoid_tile_by_tile
from tinyfast.ops import fcos_targets
from tinyfast.utils.comm import sum_over_processes, world_size
from tinyfast.utils.schema import FRACTION, POSITIVE, Flag, Integer, OneOf, Real, Sequence, setting


@dataclass(frozen=True)
class FCOSConfig(BackboneConfig):
    num_classes: int = setting(Integer(1), 1)
    stacked_convs: int = setting(Integer(0), 4)
    head_group_norm: bool = setting(Flag(), False)
    regress_ranges: tuple[tuple[float, float], ...] = setting(
        Sequence(Sequence(Real(allow_inf=True), length=2), min_length=1),
        ((-1, 16), (16, 32), (32, 64), (64, 128), (128, math.inf)),
    )
    center_sampling_radius: float = setting(POSITIVE, 1.5)
    focal_alpha: float = setting(FRACTION, 0.25)
    focal_gamma: float = setting(Real(0), 2.0)
    loss_bbox_weight: float = setting(Real(0), 1.0)
    # What the quality branch (the one FCOS calls centerness) learns for a positive location: "centerness",
    # or "iou", the IoU of the box it predicts with its target, so that the tightest boxes score highest.
    quality_target: str = setting(OneOf(("centerness", "iou")), "centerness")
    # Inference, per tile: top `nms_pre` locations per level by score x quality, raw score > score_thr.
    nms_pre: int = setting(Integer(1), 2000)
    score_threshold: float = setting(FRACTION, 0.05)
    nms_iou: float = setting(FRACTION, 0.6)


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class FCOSHead(nn.Module):
    """Per level: class logits [B,K,H,W], distances (l,t,r,b) in stride units [B,4,H,W] (>= 0), centerness
    logits [B,1,H,W] (computed from the regression tower). Adap FCOS has no GroupNorm in the towers;
    `group_norm=True` (stock FCOS) helps a network trained from scratch."""

    def __init__(
        self, num_classes: int, channels: int, stacked_convs: int, num_levels: int, group_norm: bool
    ):
        super().__init__()
        self.cls_tower = conv_tower(channels, stacked_convs, group_norm)
        self.reg_tower = conv_tower(channels, stacked_convs, group_norm)
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in range(num_levels))
        init_dense_head(self, self.cls_logits)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        logits, distances, centerness = [], [], []
        for feature, scale in zip(features, self.scales, strict=True):
            cls_feature = self.cls_tower(feature)
            reg_feature = self.reg_tower(feature)
            logits.append(self.cls_logits(cls_feature))
            distances.append(F.relu(scale(self.bbox_pred(reg_feature)).float()))
            centerness.append(self.centerness(reg_feature))
        return logits, distances, centerness


def level_points(sizes: list[tuple[int, int]], strides: tuple[int, ...], device) -> list[Tensor]:
    """Centres of the feature-map cells of each level, in image pixels: (x * s + s // 2, y * s + s // 2)."""
    points = []
    for (height, width), stride in zip(sizes, strides, strict=True):
        ys = torch.arange(height, device=device, dtype=torch.float32) * stride + stride // 2
        xs = torch.arange(width, device=device, dtype=torch.float32) * stride + stride // 2
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1))
    return points


def distances_to_boxes(points: Tensor, distances: Tensor) -> Tensor:
    return torch.cat([points - distances[:, :2], points + distances[:, 2:]], dim=1)


def centerness_targets(distances: Tensor) -> Tensor:
    left_right, top_bottom = distances[:, [0, 2]], distances[:, [1, 3]]
    ratio = (left_right.min(1).values / left_right.max(1).values) * (
        top_bottom.min(1).values / top_bottom.max(1).values
    )
    return ratio.sqrt()


def distance_iou(predicted: Tensor, target: Tensor) -> Tensor:
    """IoU of pairs of boxes given as (l, t, r, b) >= 0 from the same point."""
    width = torch.minimum(predicted[:, 0], target[:, 0]) + torch.minimum(predicted[:, 2], target[:, 2])
    height = torch.minimum(predicted[:, 1], target[:, 1]) + torch.minimum(predicted[:, 3], target[:, 3])
    intersection = width * height
    areas = [(d[:, 0] + d[:, 2]) * (d[:, 1] + d[:, 3]) for d in (predicted, target)]
    return intersection / (areas[0] + areas[1] - intersection).clamp(min=1e-12)


class AdapFCOS(DenseDetector):
    """Adap FCOS (`DenseDetector`): the candidates' score is class score x the centerness branch's output."""

    def __init__(self, config: FCOSConfig = FCOSConfig()):
        super().__init__()
        self.config = config
        if len(config.regress_ranges) != len(config.strides):
            raise ValueError(
                f"regress_ranges must have one (lo, hi) per level of strides {list(config.strides)}, "
                f"got {len(config.regress_ranges)}"
            )
        self.backbone = BackboneFPN.from_config(config, "on_output")
        self.head = FCOSHead(
            config.num_classes,
            config.channels,
            config.stacked_convs,
            len(config.strides),
            config.head_group_norm,
        )

    def priors(self, outputs, device: torch.device) -> list[Tensor]:
        return level_points([tuple(level.shape[-2:]) for level in outputs[0]], self.config.strides, device)

    def losses(self, logits, distances, centerness, points, targets) -> dict[str, Tensor]:
        config = self.config
        labels, box_targets = fcos_targets(
            torch.cat(points),
            [len(p) for p in points],
            [float(s) for s in config.strides],
            list(config.regress_ranges),
            torch.cat([t["boxes"] for t in targets]),
            torch.cat([t["labels"] for t in targets]),
            torch.tensor([len(t["boxes"]) for t in targets], device=points[0].device),
            config.num_classes,
            center_sampling_radius=config.center_sampling_radius,
            norm_on_bbox=True,
        )
        # Under autocast the head's outputs may be half: the losses are computed in float32.
        flat_logits = flatten_levels(logits, config.num_classes).reshape(-1, config.num_classes).float()
        flat_distances = flatten_levels(distances, 4).reshape(-1, 4).float()
        flat_centerness = flatten_levels(centerness, 1).reshape(-1).float()
        labels = labels.reshape(-1)
        box_targets = box_targets.reshape(-1, 4)
        flat_points = torch.cat(points).repeat(len(targets), 1)

        # The normalisers are the totals over the processes of a distributed run divided by their number (DDP
        # averages the gradients): N processes compute the gradient of one process with an N times larger
        # batch. (mmdetection's reduce_mean clamps the mean, not the total: not the same with few positives.)
        processes = world_size()
        positive = labels < config.num_classes
        num_positive = sum_over_processes(positive.sum().float()).clamp(min=1.0) / processes
        one_hot = F.one_hot(labels, config.num_classes + 1)[:, : config.num_classes].to(flat_logits.dtype)
        loss_cls = (
            sigmoid_focal_loss(
                flat_logits, one_hot, alpha=config.focal_alpha, gamma=config.focal_gamma, reduction="sum"
            )
            / num_positive
        )

        positive_targets = box_targets[positive]
        center_targets = centerness_targets(positive_targets)
        center_total = sum_over_processes(center_targets.sum()).clamp(min=1e-6) / processes
        if len(positive_targets) == 0:  # keeps every parameter in the graph
            zero = flat_distances[positive].sum() + flat_centerness[positive].sum()
            return {"loss_cls": loss_cls, "loss_bbox": zero, "loss_centerness": zero}
        positive_points = flat_points[positive]
        giou = generalized_box_iou_loss(
            distances_to_boxes(positive_points, flat_distances[positive]),
            distances_to_boxes(positive_points, positive_targets),
            reduction="none",
        )
        loss_bbox = config.loss_bbox_weight * (giou * center_targets).sum() / center_total
        if config.quality_target == "iou":
            quality_targets = distance_iou(flat_distances[positive].detach(), positive_targets)
        else:
            quality_targets = center_targets
        loss_centerness = (
            F.binary_cross_entropy_with_logits(flat_centerness[positive], quality_targets, reduction="sum")
            / num_positive
        )
        return {"loss_cls": loss_cls, "loss_bbox": loss_bbox, "loss_centerness": loss_centerness}

    def level_candidates(self, outputs, priors, level, image_size, config):
        logits, distances, centerness = outputs
        height, width = image_size
        image, location, label, score = select_level_candidates(
            sigmoid_tile_by_tile(logits[level].flatten(2).transpose(1, 2)),
            config.nms_pre,
            config.score_threshold,
            quality=sigmoid_tile_by_tile(centerness[level].flatten(1)),
        )
        level_distances = distances[level].flatten(2).transpose(1, 2)[image, location] * config.strides[level]
        boxes = distances_to_boxes(priors[level][location], level_distances)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        return image, boxes, score, label
