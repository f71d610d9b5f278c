"""Adap RetinaNet (docs/protocol.md §5.3): ResNet-FPN P2-P6 with P6 from C5 (`add_extra_convs='on_input'`),
anchors of strides 4..64 with `octave_base_scale=2` (8, 10.1 and 12.7 px on P2), 3 ratios, focal loss,
max-IoU assignment from the compiled `tinyfast.ops.max_iou_assign`, L1 loss on the box deltas.

Differences from stock RetinaNet: P2 and anchors half the stock size, so that 8 px persons have anchors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from tinyfast.modeling.anchors import AnchorGenerator, octave_scales
from tinyfast.modeling.backbone import BackboneConfig, BackboneFPN
from tinyfast.modeling.box_coder import DeltaBoxCoder
from tinyfast.modeling.dense_detector import DenseDetector
from tinyfast.modeling.layers import assign_to_gts, conv_tower, flatten_levels, init_dense_head
from tinyfast.modeling.postprocess import exp_in_runs, select_level_candidates, sigmoid_tile_by_tile
from tinyfast.utils.comm import sum_over_processes, world_size
from tinyfast.utils.schema import FRACTION, POSITIVE, Flag, Integer, Real, Sequence, setting


@dataclass(frozen=True)
class RetinaNetConfig(BackboneConfig):
    num_classes: int = setting(Integer(1), 1)
    stacked_convs: int = setting(Integer(0), 4)
    head_group_norm: bool = setting(Flag(), False)
    octave_base_scale: float = setting(POSITIVE, 2.0)
    scales_per_octave: int = setting(Integer(1), 3)
    ratios: tuple[float, ...] = setting(Sequence(POSITIVE, min_length=1), (0.5, 1.0, 2.0))
    # Max-IoU assignment: positive at IoU >= 0.5, negative below 0.4, plus each GT's best anchors.
    positive_iou: float = setting(FRACTION, 0.5)
    negative_iou: float = setting(FRACTION, 0.4)
    focal_alpha: float = setting(FRACTION, 0.25)
    focal_gamma: float = setting(Real(0), 2.0)
    # Inference, per tile: top `nms_pre` anchors per level by best class score, class score > score_thr.
    nms_pre: int = setting(Integer(1), 2000)
    score_threshold: float = setting(FRACTION, 0.05)
    nms_iou: float = setting(FRACTION, 0.5)


class RetinaHead(nn.Module):
    """Per level: class logits [B, A*K, H, W] and box deltas [B, A*4, H, W]."""

    def __init__(
        self, num_classes: int, num_anchors: int, channels: int, stacked_convs: int, group_norm: bool
    ):
        super().__init__()
        self.cls_tower = conv_tower(channels, stacked_convs, group_norm)
        self.reg_tower = conv_tower(channels, stacked_convs, group_norm)
        self.cls_logits = nn.Conv2d(channels, num_anchors * num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(channels, num_anchors * 4, 3, padding=1)
        init_dense_head(self, self.cls_logits)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        logits = [self.cls_logits(self.cls_tower(feature)) for feature in features]
        deltas = [self.bbox_pred(self.reg_tower(feature)).float() for feature in features]
        return logits, deltas


class AdapRetinaNet(DenseDetector):
    """Adap RetinaNet (`DenseDetector`): the candidates' score is the class score."""

    def __init__(self, config: RetinaNetConfig = RetinaNetConfig()):
        super().__init__()
        self.config = config
        self.backbone = BackboneFPN.from_config(config, "on_input")
        self.anchor_generator = AnchorGenerator(
            config.strides, octave_scales(config.octave_base_scale, config.scales_per_octave), config.ratios
        )
        self.box_coder = DeltaBoxCoder()
        self.head = RetinaHead(
            config.num_classes,
            self.anchor_generator.num_anchors,
            config.channels,
            config.stacked_convs,
            config.head_group_norm,
        )

    def priors(self, outputs, device: torch.device) -> list[Tensor]:
        return self.anchor_generator([tuple(level.shape[-2:]) for level in outputs[0]], device)

    def losses(self, logits, deltas, anchors, targets) -> dict[str, Tensor]:
        config = self.config
        # Under autocast the head's outputs may be half: the losses are computed in float32.
        flat_logits = flatten_levels(logits, config.num_classes).reshape(-1, config.num_classes).float()
        flat_deltas = flatten_levels(deltas, 4).reshape(-1, 4)
        image_anchors = torch.cat(anchors)
        all_anchors = image_anchors.repeat(len(targets), 1)
        gt_boxes = torch.cat([t["boxes"] for t in targets]).to(all_anchors)
        gt_labels = torch.cat([t["labels"] for t in targets]).to(all_anchors.device)
        assigned, _ = assign_to_gts(
            all_anchors,
            [len(image_anchors)] * len(targets),
            [t["boxes"] for t in targets],
            config.positive_iou,
            config.negative_iou,
            min_pos_iou=0.0,
            low_quality=True,
        )
        positive = assigned >= 0
        # As mmdetection: the number of positives of each image, at least 1, summed over the batch; and, as
        # the FCOS loss, over the processes of a distributed run divided by their number (DDP averages).
        positives_per_image = positive.reshape(len(targets), -1).sum(1).clamp(min=1)
        normalizer = sum_over_processes(positives_per_image.sum().float()) / world_size()
        counted = assigned != -2  # positives and negatives; ignored anchors give no loss
        class_targets = torch.zeros_like(flat_logits)
        class_targets[positive, gt_labels[assigned[positive]]] = 1
        loss_cls = (
            sigmoid_focal_loss(
                flat_logits[counted],
                class_targets[counted],
                alpha=config.focal_alpha,
                gamma=config.focal_gamma,
                reduction="sum",
            )
            / normalizer
        )
        delta_targets = self.box_coder.encode(all_anchors[positive], gt_boxes[assigned[positive]])
        loss_bbox = F.l1_loss(flat_deltas[positive], delta_targets, reduction="sum") / normalizer
        return {"loss_cls": loss_cls, "loss_bbox": loss_bbox}

    def level_candidates(self, outputs, priors, level, image_size, config):
        logits, deltas = outputs
        image, location, label, score = select_level_candidates(
            sigmoid_tile_by_tile(flatten_levels([logits[level]], config.num_classes).float()),
            config.nms_pre,
            config.score_threshold,
        )
        level_deltas = flatten_levels([deltas[level]], 4)[image, location]
        runs = (
            torch.bincount(image, minlength=len(logits[level])).tolist()
            if image.device.type == "cpu"
            else None
        )
        boxes = self.box_coder.decode(
            priors[level][location], level_deltas, tuple(image_size), exp=lambda x: exp_in_runs(x, runs)
        )
        return image, boxes, score, label
