"""Faster-FPN (docs/protocol.md §5.2): ResNet-FPN P2-P6 (P6 by max-pooling P5), an RPN on P2-P6 with anchors
of `scales=[2]` (8 px on P2) and 3 ratios, RoIAlign 7x7 on P2-P5, two shared fully connected layers and a
class-specific box regression. Both assignments (RPN anchors, RoIs) come from the compiled
`tinyfast.ops.max_iou_assign`, the NMS from `tinyfast.ops.batched_nms`.

Training as mmdetection 2.x's `faster_rcnn_r50_fpn`: RPN anchors positive at IoU >= 0.7 (plus each GT's
best anchors at >= 0.3), negative below 0.3, 256 sampled per image, half positive at most; proposals
(detached) from the top 2000 anchors per level, NMS 0.7 per level, the best 1000 per image; the GTs are
added to the proposals; RoIs positive at IoU >= 0.5, 512 sampled per image, a quarter positive at most.
Test (docs/protocol.md §3.3): RPN top 1000 per level, NMS 0.7, keep 1000; RCNN score > 0.05, NMS 0.5, no cap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.ops import roi_align
from torchvision.ops.poolers import LevelMapper

from tinyfast.modeling.anchors import AnchorGenerator
from tinyfast.modeling.backbone import BackboneConfig, BackboneFPN
from tinyfast.modeling.box_coder import DeltaBoxCoder
from tinyfast.modeling.inference import run_network
from tinyfast.modeling.layers import assign_to_gts, flatten_levels, init_dense_head
from tinyfast.modeling.postprocess import TileDetections, tile_nms, with_tile_settings
from tinyfast.modeling.sampler import sample_boxes
from tinyfast.ops import batched_nms
from tinyfast.tiling.detector import TileSettings
from tinyfast.utils.comm import sum_over_processes, world_size
from tinyfast.utils.schema import FRACTION, POSITIVE, Integer, Sequence, setting
from tinyfast.utils.tensors import first_of_each_group


@dataclass(frozen=True)
class FasterFPNConfig(BackboneConfig):
    num_classes: int = setting(Integer(1), 1)
    anchor_scales: tuple[float, ...] = setting(Sequence(POSITIVE, min_length=1), (2.0,))
    ratios: tuple[float, ...] = setting(Sequence(POSITIVE, min_length=1), (0.5, 1.0, 2.0))
    rpn_positive_iou: float = setting(FRACTION, 0.7)
    rpn_negative_iou: float = setting(FRACTION, 0.3)
    rpn_min_positive_iou: float = setting(FRACTION, 0.3)
    rpn_samples: int = setting(Integer(1), 256)
    rpn_positive_fraction: float = setting(FRACTION, 0.5)
    rpn_train_nms_pre: int = setting(Integer(1), 2000)
    rpn_train_max_proposals: int = setting(Integer(1), 1000)
    rpn_nms_iou: float = setting(FRACTION, 0.7)
    rpn_max_proposals: int = setting(Integer(1), 1000)
    roi_size: int = setting(Integer(1), 7)
    fc_channels: int = setting(Integer(1), 1024)
    roi_positive_iou: float = setting(FRACTION, 0.5)
    roi_negative_iou: float = setting(FRACTION, 0.5)
    roi_samples: int = setting(Integer(1), 512)
    roi_positive_fraction: float = setting(FRACTION, 0.25)
    roi_box_stds: tuple[float, ...] = setting(Sequence(POSITIVE, length=4), (0.1, 0.1, 0.2, 0.2))
    # Inference, per tile: the RPN's top `nms_pre` anchors per level; RCNN score > score_thr, NMS nms_iou.
    nms_pre: int = setting(Integer(1), 1000)
    score_threshold: float = setting(FRACTION, 0.05)
    nms_iou: float = setting(FRACTION, 0.5)


class RPNHead(nn.Module):
    """Per level: objectness logits [B, A, H, W] and box deltas [B, A*4, H, W] (mmdetection's RPNHead)."""

    def __init__(self, channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.objectness = nn.Conv2d(channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(channels, num_anchors * 4, 1)
        init_dense_head(self)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        hidden = [F.relu(self.conv(feature)) for feature in features]
        return [self.objectness(h) for h in hidden], [self.bbox_pred(h).float() for h in hidden]


class BoxHead(nn.Module):
    """Two shared fully connected layers, then class logits [R, K+1] (background last, as mmdetection 2.x)
    and class-specific box deltas [R, K*4]."""

    def __init__(self, in_features: int, fc_channels: int, num_classes: int):
        super().__init__()
        self.shared = TwoMLPHead(in_features, fc_channels)
        self.cls_score = nn.Linear(fc_channels, num_classes + 1)
        self.bbox_pred = nn.Linear(fc_channels, num_classes * 4)
        for layer in (self.shared.fc6, self.shared.fc7):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, roi_features: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.shared(roi_features)
        return self.cls_score(hidden), self.bbox_pred(hidden).float()


def multi_level_roi_align(
    features: list[Tensor], rois: Tensor, strides: tuple[int, ...], size: int
) -> Tensor:
    """RoIAlign of `rois` `[R, 5]` (image index, x1, y1, x2, y2) on the level that the FPN paper's mapping
    picks (torchvision's `LevelMapper`: floor(4 + log2(sqrt(area) / 224)), from P2 to P5), `aligned=True`
    and adaptive sampling as the reference's mmcv RoIAlign (torchvision's MultiScaleRoIAlign samples half
    a feature cell off: 2 px on P2, a quarter of an 8 px person)."""
    levels = LevelMapper(round(math.log2(strides[0])), round(math.log2(strides[-1])))([rois[:, 1:]])
    pooled = rois.new_zeros((len(rois), features[0].shape[1], size, size), dtype=features[0].dtype)
    for level, (feature, stride) in enumerate(zip(features, strides, strict=True)):
        chosen = torch.nonzero(levels == level).flatten()
        if len(chosen):
            pooled[chosen] = roi_align(
                feature, rois[chosen].to(feature.dtype), size, 1 / stride, sampling_ratio=0, aligned=True
            )
    return pooled


class FasterFPN(nn.Module):
    """`model(images, targets)` returns the losses in training; `model(images)` the detections of each image
    before the final NMS (RCNN scores above the threshold, one per class and RoI)."""

    dense_head = False
    kind = "detector"  # boxes: tinyfast.modeling.build.model_kind
    inference_dtype: torch.dtype | None = None  # the networks' autocast dtype in detect_tiles
    tile_networks = ("backbone", "rpn_head")  # what test.compile compiles (tinyfast.modeling.inference)
    cuda_graphs = False  # whether they were compiled into CUDA graphs

    def __init__(self, config: FasterFPNConfig = FasterFPNConfig()):
        super().__init__()
        if len(config.strides) != 5:
            raise ValueError(f"FasterFPN: strides must name the 5 levels P2-P6, got {list(config.strides)}")
        self.config = config
        self.backbone = BackboneFPN.from_config(config, "max_pool")
        self.anchor_generator = AnchorGenerator(config.strides, config.anchor_scales, config.ratios)
        self.rpn_coder = DeltaBoxCoder()
        self.roi_coder = DeltaBoxCoder(config.roi_box_stds)
        self.rpn_head = RPNHead(config.channels, self.anchor_generator.num_anchors)
        self.box_head = BoxHead(config.channels * config.roi_size**2, config.fc_channels, config.num_classes)

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None):
        if self.training:
            if targets is None:
                raise ValueError("FasterFPN in training mode needs targets")
            return self.losses(images, targets)
        return self.candidates(images, self.config)

    def losses(self, images: Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        config = self.config
        features = self.backbone(images)
        objectness, deltas = self.rpn_head(features)
        anchors = self.anchor_generator([tuple(level.shape[-2:]) for level in objectness], images.device)
        gt_boxes = [t["boxes"].to(anchors[0]) for t in targets]
        gt_labels = torch.cat([t["labels"] for t in targets]).to(images.device)
        losses = self.rpn_losses(objectness, deltas, anchors, gt_boxes)
        proposals = self.proposals(  # no gradient flows through the proposals, as in the reference
            objectness,
            deltas,
            anchors,
            tuple(images.shape[-2:]),
            config.rpn_train_nms_pre,
            config.rpn_train_max_proposals,
        )
        losses.update(self.roi_losses(features, proposals, gt_boxes, gt_labels))
        return losses

    def rpn_losses(self, objectness, deltas, anchors, gt_boxes: list[Tensor]) -> dict[str, Tensor]:
        config = self.config
        image_anchors = torch.cat(anchors)
        counts = [len(image_anchors)] * len(gt_boxes)
        all_anchors = image_anchors.repeat(len(gt_boxes), 1)
        all_gt = torch.cat(gt_boxes)
        assigned, _ = assign_to_gts(
            all_anchors,
            counts,
            gt_boxes,
            config.rpn_positive_iou,
            config.rpn_negative_iou,
            min_pos_iou=config.rpn_min_positive_iou,
            low_quality=True,
        )
        positive, negative = sample_boxes(assigned, counts, config.rpn_samples, config.rpn_positive_fraction)
        normalizer = _samples_normalizer(positive, negative, len(image_anchors), len(gt_boxes))
        flat_objectness = flatten_levels(objectness, 1).reshape(-1).float()  # half under autocast
        sampled = torch.cat([positive, negative])
        labels = torch.cat([torch.ones(len(positive)), torch.zeros(len(negative))]).to(flat_objectness)
        loss_cls = (
            F.binary_cross_entropy_with_logits(flat_objectness[sampled], labels, reduction="sum") / normalizer
        )
        flat_deltas = flatten_levels(deltas, 4).reshape(-1, 4)
        delta_targets = self.rpn_coder.encode(all_anchors[positive], all_gt[assigned[positive]])
        loss_bbox = F.l1_loss(flat_deltas[positive], delta_targets, reduction="sum") / normalizer
        return {"loss_rpn_cls": loss_cls, "loss_rpn_bbox": loss_bbox}

    def roi_losses(self, features, proposals: list[Tensor], gt_boxes: list[Tensor], gt_labels: Tensor):
        config = self.config
        proposals = [torch.cat([gt, boxes]) for gt, boxes in zip(gt_boxes, proposals, strict=True)]
        counts = [len(boxes) for boxes in proposals]
        all_proposals = torch.cat(proposals)
        all_gt = torch.cat(gt_boxes)
        assigned, _ = assign_to_gts(
            all_proposals,
            counts,
            gt_boxes,
            config.roi_positive_iou,
            config.roi_negative_iou,
            low_quality=False,
        )
        positive, negative = sample_boxes(assigned, counts, config.roi_samples, config.roi_positive_fraction)
        sampled = torch.cat([positive, negative])
        image_index = torch.repeat_interleave(
            torch.arange(len(counts), device=all_proposals.device),
            torch.tensor(counts, device=all_proposals.device),
        )
        rois = torch.cat([image_index[sampled, None].to(all_proposals), all_proposals[sampled]], dim=1)
        class_logits, deltas = self.box_head(
            multi_level_roi_align(features[:4], rois, config.strides[:4], config.roi_size)
        )
        positive_labels = gt_labels[assigned[positive]]
        labels = torch.cat([positive_labels, torch.full_like(negative, config.num_classes)])
        # mmdetection's average over the sampled RoIs, here over those of all processes (DDP averages).
        sampled_count = torch.tensor(float(len(sampled)), device=class_logits.device)
        normalizer = sum_over_processes(sampled_count).clamp(min=1) / world_size()
        loss_cls = F.cross_entropy(class_logits.float(), labels, reduction="sum") / normalizer
        positive_deltas = deltas[: len(positive)].reshape(len(positive), -1, 4)[
            torch.arange(len(positive), device=deltas.device), positive_labels
        ]
        delta_targets = self.roi_coder.encode(all_proposals[positive], all_gt[assigned[positive]])
        loss_bbox = F.l1_loss(positive_deltas, delta_targets, reduction="sum") / normalizer
        return {"loss_cls": loss_cls, "loss_bbox": loss_bbox}

    @torch.no_grad()
    def proposals(
        self, objectness, deltas, anchors, image_size, nms_pre: int, max_proposals: int
    ) -> list[Tensor]:
        """Per image: the top `nms_pre` anchors of each level by objectness, decoded and clipped to the
        image, those of zero width or height dropped, NMS at `rpn_nms_iou` within each level, then the best
        `max_proposals` of the image (mmdetection 2.x's RPN `get_bboxes`)."""
        boxes, images = self.batch_proposals(objectness, deltas, anchors, image_size, nms_pre, max_proposals)
        return list(boxes.split(torch.bincount(images, minlength=objectness[0].shape[0]).tolist()))

    @torch.no_grad()
    def batch_proposals(
        self, objectness, deltas, anchors, image_size, nms_pre: int, max_proposals: int
    ) -> tuple[Tensor, Tensor]:
        """`proposals` of all images in one tensor `[R, 4]`, grouped by image, and the image of each."""
        num_images, num_levels = objectness[0].shape[0], len(objectness)
        boxes, scores, groups = [], [], []
        for level, level_anchors in enumerate(anchors):
            level_scores = flatten_levels([objectness[level]], 1).reshape(num_images, -1).float().sigmoid()
            level_deltas = flatten_levels([deltas[level]], 4)
            if 0 < nms_pre < level_scores.shape[1]:
                level_scores, chosen = level_scores.topk(nms_pre, dim=1)
            else:
                chosen = torch.arange(level_scores.shape[1], device=level_scores.device).expand_as(
                    level_scores
                )
            picked_deltas = torch.gather(level_deltas, 1, chosen[..., None].expand(-1, -1, 4))
            boxes.append(
                self.rpn_coder.decode(level_anchors[chosen], picked_deltas, image_size).reshape(-1, 4)
            )
            scores.append(level_scores.reshape(-1))
            image = torch.arange(num_images, device=chosen.device)[:, None].expand_as(chosen)
            groups.append((image * num_levels + level).reshape(-1))
        boxes, scores, groups = torch.cat(boxes), torch.cat(scores), torch.cat(groups)
        sizes = boxes[:, 2:] - boxes[:, :2]
        valid = torch.nonzero((sizes > 0).all(dim=1)).flatten()
        keep = valid[batched_nms(boxes[valid], scores[valid], groups[valid], self.config.rpn_nms_iou)]
        # Kept by decreasing score over the batch; a stable sort by image keeps that order in each image.
        keep = keep[torch.sort(groups[keep] // num_levels, stable=True).indices]
        kept_image = groups[keep] // num_levels
        best = first_of_each_group(kept_image, max_proposals)
        return boxes[keep[best]], kept_image[best]

    @torch.no_grad()
    def detect_tiles(self, tiles: Tensor, settings: TileSettings) -> list[dict[str, Tensor]]:
        """The `TileDetector` contract of tiled inference: `settings.nms_pre` is the RPN's per-level top-k,
        `settings.score_threshold` the RCNN's `score_thr`; the RCNN NMS runs when `settings.per_tile_nms`."""
        config = with_tile_settings(self.config, settings)
        self.eval()
        found = self.batch_candidates(tiles, config)
        return tile_nms(found, settings, config.nms_iou, config.num_classes).per_tile()

    @torch.no_grad()
    def candidates(self, images: Tensor, config: FasterFPNConfig) -> list[dict[str, Tensor]]:
        """The detections of each image, RoI by RoI (as the RPN ranks them), then class."""
        return self.batch_candidates(images, config).per_tile()

    @torch.no_grad()
    def batch_candidates(self, images: Tensor, config: FasterFPNConfig) -> TileDetections:
        image_size = tuple(images.shape[-2:])
        if self.cuda_graphs:  # a new batch: the graphs may overwrite the outputs of the previous one
            torch.compiler.cudagraph_mark_step_begin()
        features = run_network(self.inference_dtype, self.backbone, images)
        objectness, deltas = self.rpn_head(features)
        anchors = self.anchor_generator([tuple(level.shape[-2:]) for level in objectness], images.device)
        proposals, image_index = self.batch_proposals(
            objectness, deltas, anchors, image_size, config.nms_pre, config.rpn_max_proposals
        )
        rois = torch.cat([image_index[:, None].to(proposals), proposals], dim=1)
        class_logits, box_deltas = run_network(
            self.inference_dtype,
            self.box_head,
            multi_level_roi_align(features[:4], rois, config.strides[:4], config.roi_size),
        )
        scores = class_logits.float().softmax(dim=1)[:, : config.num_classes]
        boxes = self.roi_coder.decode(
            rois[:, None, 1:], box_deltas.reshape(len(rois), config.num_classes, 4), image_size
        )
        roi, label = (scores > config.score_threshold).nonzero(as_tuple=True)
        return TileDetections(boxes[roi, label], scores[roi, label], label, image_index[roi], len(images))


def _samples_normalizer(positive: Tensor, negative: Tensor, rows_per_image: int, num_images: int) -> Tensor:
    """mmdetection's average factor of a sampled loss: per image max(positives, 1) + max(negatives, 1); here
    summed over the processes of a distributed run and divided by their number (DDP averages)."""
    total = sum(
        torch.bincount(chosen // rows_per_image, minlength=num_images).clamp(min=1).sum()
        for chosen in (positive, negative)
    )
    return sum_over_processes(total.float()) / world_size()
