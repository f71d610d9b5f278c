"""A P2PNet-style point localiser ("Rethinking Counting and Localization in Crowds", ICCV 2021, as the CPR
reference re-implements it for several classes): one FPN level of tinyfast's backbones, a grid of point
proposals (`proposals_per_side`^2 per cell), per proposal an offset and class scores; training matches
proposals to the annotated points one to one (Hungarian, on P2PNet's cost: distance minus class probability)
and applies a classification loss plus a squared-distance loss on the matched proposals.

The classification is P2PNet's (`class_loss = "softmax"`: softmax over the classes and "no object", a
cross-entropy with a lower weight on no-object) or a sigmoid focal loss per class normalised by the matched
points (`"focal"`, the dense detectors' answer to imbalance, with their prior-probability start). With one
positive per person among tens of thousands of proposals (a sparse crowd at stride 4), the weighted
cross-entropy is won by no-object everywhere; the focal loss keeps the positives' share of the gradient.

Only `target["points"]` and `target["labels"]` supervise it: the boxes of a point-annotated json are for
evaluation only. Inference gives per image `points` [N,2] (image pixels), `scores`, `labels` and `sizes`
(the level's stride: the size estimate that point NMS compares distances with).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from tinyfast.modeling.backbone import BackboneConfig, BackboneFPN
from tinyfast.modeling.inference import run_network
from tinyfast.modeling.layers import conv_tower, init_dense_head
from tinyfast.utils.comm import sum_over_processes, world_size
from tinyfast.utils.schema import FRACTION, Flag, Integer, OneOf, Real, Sequence, setting

POINT_STRIDES = (4, 8)
# linear_sum_assignment refuses non-finite costs; a diverged network's NaNs become this (its loss is NaN
# anyway and the engine skips the batch).
_UNMATCHABLE = 1e30


@dataclass(frozen=True)
class P2PNetConfig(BackboneConfig):
    strides: tuple[int, ...] = setting(Sequence(Integer(1), min_length=1), (4, 8, 16))
    num_classes: int = setting(Integer(1), 1)
    point_stride: int = setting(Integer(4, 8), 8)  # the FPN level the head runs on: 4 or 8
    proposals_per_side: int = setting(Integer(1), 2)  # proposals per cell: its square, on a regular grid
    stacked_convs: int = setting(Integer(0), 2)
    head_group_norm: bool = setting(Flag(), False)
    # P2PNet's matching cost: match_distance_weight x distance (pixels) - match_class_weight x probability.
    match_distance_weight: float = setting(Real(0), 0.05)
    match_class_weight: float = setting(Real(0), 1.0)
    class_loss: str = setting(OneOf(("softmax", "focal")), "softmax")
    no_object_weight: float = setting(Real(0, low_open=True), 0.5)  # P2PNet's eos_coef ("softmax" only)
    focal_alpha: float = setting(FRACTION, 0.25)  # "focal" only
    focal_gamma: float = setting(Real(0), 2.0)
    point_loss_weight: float = setting(Real(0), 1.0)  # squared distance in units of the stride
    score_threshold: float = setting(FRACTION, 0.05)
    max_points: int = setting(Integer(1), 2000)  # per image, the best by score

    @classmethod
    def from_config(cls, values, *, ignore=(), owner=None):
        config = super().from_config(values, ignore=ignore, owner=owner)
        if config.point_stride not in POINT_STRIDES or config.point_stride not in config.strides:
            raise ValueError(
                f"model.point_stride must be 4 or 8 and one of model.strides {list(config.strides)}, "
                f"got {config.point_stride}"
            )
        return config


def cell_proposals(height: int, width: int, stride: int, per_side: int, device=None) -> Tensor:
    """[height * width * per_side^2, 2] proposal points (x, y) in image pixels, cell by cell: in each
    stride x stride cell a per_side x per_side grid at ((i + 0.5) / per_side) of the cell."""
    steps = (torch.arange(per_side, device=device, dtype=torch.float32) + 0.5) / per_side
    in_cell = torch.stack(torch.meshgrid(steps, steps, indexing="xy"), dim=-1).reshape(-1, 2)  # x, y
    ys = torch.arange(height, device=device, dtype=torch.float32)
    xs = torch.arange(width, device=device, dtype=torch.float32)
    cells = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 1, 2)
    return ((cells + in_cell) * stride).reshape(-1, 2)


def match_points(
    pred_points: Tensor,
    class_probs: Tensor,
    gt_points: Tensor,
    gt_labels: Tensor,
    distance_weight: float,
    class_weight: float,
) -> tuple[Tensor, Tensor]:
    """P2PNet's one-to-one matching of one image: `(pred_index, gt_index)` minimising the total cost
    `distance_weight * ||pred - gt|| - class_weight * class_probs[pred, gt_label]`; every GT is matched
    when there are at least as many proposals (`scipy.optimize.linear_sum_assignment`)."""
    # scipy is needed by P2PNet's training only: imported here, tinyfast's other models load without it.
    from scipy.optimize import linear_sum_assignment

    if len(gt_points) == 0 or len(pred_points) == 0:
        empty = torch.zeros(0, dtype=torch.long, device=pred_points.device)
        return empty, empty
    cost = distance_weight * torch.cdist(pred_points.double(), gt_points.double())
    cost = cost - class_weight * class_probs.double()[:, gt_labels]
    cost = np.nan_to_num(cost.cpu().numpy(), nan=_UNMATCHABLE, posinf=_UNMATCHABLE, neginf=-_UNMATCHABLE)
    pred_index, gt_index = linear_sum_assignment(cost)
    device = pred_points.device
    return torch.as_tensor(pred_index, device=device), torch.as_tensor(gt_index, device=device)


class P2PNetHead(nn.Module):
    """Class logits [B, k * L, H, W] and offsets [B, 2 * k, H, W] in stride units. L (`classes`) is C + 1
    (no-object last) for a softmax head, C for a sigmoid one, whose classifier starts at the focal prior."""

    def __init__(
        self, channels: int, classes: int, proposals: int, stacked_convs: int, group_norm: bool, sigmoid: bool
    ):
        super().__init__()
        self.cls_tower = conv_tower(channels, stacked_convs, group_norm)
        self.reg_tower = conv_tower(channels, stacked_convs, group_norm)
        self.cls_logits = nn.Conv2d(channels, proposals * classes, 3, padding=1)
        self.offsets = nn.Conv2d(channels, proposals * 2, 3, padding=1)
        init_dense_head(self, self.cls_logits if sigmoid else None)

    def forward(self, feature: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_logits(self.cls_tower(feature)), self.offsets(self.reg_tower(feature))


class P2PNet(nn.Module):
    """`model(images, targets)` returns the losses in training (targets: `points` [N,2], `labels` [N]);
    `model(images)` the points of each image (before point NMS)."""

    kind: ClassVar[str] = "localiser"  # trained on points, evaluated by point AP (tinyfast.engine)
    inference_dtype: torch.dtype | None = None

    def __init__(self, config: P2PNetConfig = P2PNetConfig()):
        super().__init__()
        self.config = config
        self.level = config.strides.index(config.point_stride)
        self.backbone = BackboneFPN.from_config(config, "on_output")
        self.proposals = config.proposals_per_side**2
        self.sigmoid = config.class_loss == "focal"
        self.logits_per_proposal = config.num_classes if self.sigmoid else config.num_classes + 1
        self.head = P2PNetHead(
            config.channels,
            self.logits_per_proposal,
            self.proposals,
            config.stacked_convs,
            config.head_group_norm,
            self.sigmoid,
        )

    def class_probs(self, logits: Tensor) -> Tensor:
        """[..., C] per-class probabilities of logits [..., L]."""
        if self.sigmoid:
            return logits.sigmoid()
        return logits.softmax(-1)[..., : self.config.num_classes]

    def predict_proposals(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Logits [B, P, L] and points [B, P, 2] (image pixels, float32) of the P proposals."""
        logits, offsets = self.head(self.backbone(images)[self.level])
        batch, _, height, width = logits.shape
        stride = self.config.point_stride
        logits = logits.float().permute(0, 2, 3, 1).reshape(batch, -1, self.logits_per_proposal)
        offsets = offsets.float().permute(0, 2, 3, 1).reshape(batch, -1, 2)
        grid = cell_proposals(height, width, stride, self.config.proposals_per_side, images.device)
        return logits, grid + offsets * stride

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None):
        logits, points = self.predict_proposals(images)
        if self.training:
            if targets is None:
                raise ValueError("P2PNet in training mode needs targets")
            return self.losses(logits, points, targets)
        return self.decode(logits, points, [tuple(images.shape[-2:])] * len(images))

    def losses(self, logits: Tensor, points: Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        config = self.config
        no_object = config.num_classes
        classes = torch.full(logits.shape[:2], no_object, dtype=torch.long, device=logits.device)
        matched_pred, matched_gt = [], []
        probs = self.class_probs(logits.detach())
        for image, target in enumerate(targets):
            if "points" not in target:
                raise ValueError("P2PNet is trained on points: its targets need 'points' (set data.points)")
            pred_index, gt_index = match_points(
                points[image].detach(),
                probs[image],
                target["points"],
                target["labels"],
                config.match_distance_weight,
                config.match_class_weight,
            )
            classes[image, pred_index] = target["labels"][gt_index]
            matched_pred.append(points[image, pred_index])
            matched_gt.append(target["points"][gt_index].to(points.dtype))
        # Normalised by the points of all processes over their number (DDP averages the gradients).
        processes = world_size()
        num_points = sum(len(m) for m in matched_gt)
        normaliser = sum_over_processes(torch.tensor(float(num_points), device=logits.device))
        normaliser = normaliser.clamp(min=1.0) / processes
        if self.sigmoid:
            one_hot = F.one_hot(classes, no_object + 1)[..., :no_object].to(logits.dtype)
            focal = sigmoid_focal_loss(
                logits, one_hot, alpha=config.focal_alpha, gamma=config.focal_gamma, reduction="sum"
            )
            loss_cls = focal / normaliser
        else:
            weight = torch.ones(no_object + 1, device=logits.device)
            weight[no_object] = config.no_object_weight
            loss_cls = F.cross_entropy(logits.reshape(-1, no_object + 1), classes.reshape(-1), weight=weight)
        squared = ((torch.cat(matched_pred) - torch.cat(matched_gt)) / config.point_stride).square().sum()
        loss_points = config.point_loss_weight * squared / normaliser
        return {"loss_cls": loss_cls, "loss_points": loss_points}

    @torch.no_grad()
    def decode(self, logits: Tensor, points: Tensor, image_sizes: list[tuple[int, int]]) -> list[dict]:
        """Per image the proposals whose best class probability passes `score_threshold`, the
        `max_points` best, clamped to the image (`image_sizes`: (h, w) each, before padding)."""
        config = self.config
        results = []
        probs = self.class_probs(logits)
        for image, (height, width) in enumerate(image_sizes):
            scores, labels = probs[image].max(-1)
            keep = torch.nonzero(scores > config.score_threshold).squeeze(1)
            keep = keep[scores[keep].topk(min(config.max_points, len(keep))).indices]
            found = points[image, keep]
            found = torch.stack([found[:, 0].clamp(0, width), found[:, 1].clamp(0, height)], dim=1)
            results.append(
                {
                    "points": found,
                    "scores": scores[keep],
                    "labels": labels[keep],
                    "sizes": torch.full_like(scores[keep], float(config.point_stride)),
                }
            )
        return results

    @torch.no_grad()
    def locate(self, images: Tensor, image_sizes: list[tuple[int, int]]) -> list[dict]:
        """The points of a padded batch of images of `image_sizes` (h, w): the inference contract of the
        point models (tinyfast.tiling.locate_images)."""
        self.eval()
        logits, points = run_network(self.inference_dtype, self.predict_proposals, images)
        return self.decode(logits, points, image_sizes)
