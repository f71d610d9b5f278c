"""CPR, coarse point refinement ("Object Localization under Single Coarse Point Supervision", CVPR 2022):
a network that learns, from one coarse point per object, where the consistent semantic centre of each
object lies, and moves every annotated point there.

One FPN level (stride 4). Around every annotated point a bag of candidate points: the points of the
feature grid's spacing (the stride) in a circle of radius `bag_radius` cells around it (radius 5 on
TinyPerson: 20 px at stride 4), the annotated point itself at its centre; bag points outside the image are
left out. Per point two score maps (bilinearly sampled at the bag points): class scores (sigmoid) and
instance scores (softmax over the bag). Losses, each normalised by the number of bags:

- MIL: the bag's score for class k is the sum over its points of softmax-over-the-bag(instance score k)
  times class score k; binary cross-entropy against the bag's class (one-hot);
- negatives: every feature cell (centre) farther than `bag_radius` cells from all annotated points of
  class k is a negative of class k (sigmoid focal loss towards 0), the batch's padding included (the
  padding is the mean colour, which is no person either);
- the annotated point's own class score (sigmoid focal loss against its class).

Refinement (`refine_bags`): the refined point is the class-score-weighted mean of the bag points whose
score for the object's class reaches `refine_threshold` and that are nearer their own annotated point than
any other object's; with no such point, the annotated point stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from tinyfast.modeling.backbone import BackboneConfig, BackboneFPN
from tinyfast.modeling.inference import run_network
from tinyfast.modeling.layers import conv_tower, init_dense_head
from tinyfast.utils.comm import sum_over_processes, world_size
from tinyfast.utils.schema import FRACTION, POSITIVE, Flag, Integer, Real, Sequence, setting

# Bags are refined this many at a time: the nearest-own-point rule compares every bag point with every
# annotated point of the image, which for a dense image of 1000 persons is too large in one go.
_BAGS_PER_CHUNK = 256


@dataclass(frozen=True)
class CPRConfig(BackboneConfig):
    strides: tuple[int, ...] = setting(Sequence(Integer(1), min_length=1), (4, 8, 16))  # the head uses P2
    num_classes: int = setting(Integer(1), 1)
    stacked_convs: int = setting(Integer(0), 2)
    head_group_norm: bool = setting(Flag(), False)
    bag_radius: float = setting(POSITIVE, 5.0)  # in feature cells (stride 4 px)
    refine_threshold: float = setting(FRACTION, 0.05)
    mil_weight: float = setting(Real(0), 1.0)
    negative_weight: float = setting(Real(0), 1.0)
    point_weight: float = setting(Real(0), 1.0)
    focal_alpha: float = setting(FRACTION, 0.25)
    focal_gamma: float = setting(Real(0), 2.0)


STRIDE = 4


def bag_offsets(radius: float) -> Tensor:
    """[M, 2] integer grid offsets (dx, dy) with dx^2 + dy^2 <= radius^2, (0, 0) first."""
    reach = int(radius)
    steps = torch.arange(-reach, reach + 1, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(steps, steps, indexing="xy"), dim=-1).reshape(-1, 2)
    inside = grid[grid.square().sum(1) <= radius**2]
    return inside[torch.argsort(inside.square().sum(1), stable=True)]


def bag_points(
    annotated: Tensor, radius: float, stride: int, image_size: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """The bags of `annotated` [G, 2] points: [G, M, 2] candidate points (pixels) and [G, M] whether each
    lies in the image (h, w)."""
    offsets = bag_offsets(radius).to(annotated.device) * stride
    points = annotated[:, None, :] + offsets[None]
    height, width = image_size
    valid = (
        (points[..., 0] >= 0) & (points[..., 0] <= width) & (points[..., 1] >= 0) & (points[..., 1] <= height)
    )
    return points, valid


def sample_at(maps: Tensor, points: Tensor, stride: int) -> Tensor:
    """Bilinear samples of `maps` [C, H, W] at `points` [..., 2] (pixels; cell j spans [j, j + 1) * stride)
    -> [..., C]; outside the map the border value."""
    height, width = maps.shape[-2:]
    shape = points.shape[:-1]
    flat = points.reshape(1, -1, 1, 2)
    grid = torch.stack([flat[..., 0] / (stride * width), flat[..., 1] / (stride * height)], dim=-1) * 2 - 1
    sampled = F.grid_sample(
        maps[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return sampled[0, :, :, 0].T.reshape(*shape, maps.shape[0])


def refine_bags(
    bags: Tensor,
    valid: Tensor,
    scores: Tensor,
    annotated: Tensor,
    threshold: float,
    others: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """CPR's refinement of G bags: `bags` [G, M, 2] points, `valid` [G, M], `scores` [G, M] (the class
    score of each bag's object), `annotated` [G, 2] the bags' annotated points, `others` [K, 2] every
    annotated point of the image (default: `annotated`). A bag point counts when it is valid, its score is
    >= `threshold` and it is strictly nearer its own annotated point than any other annotated point (of
    another object: a point at the same place as the bag's own is the bag's own). Returns the refined
    points [G, 2] (the score-weighted mean of the counting points, or the annotated point when none counts)
    and the number of counting points [G]."""
    others = annotated if others is None else others
    refined, counts = [], []
    for start in range(0, len(bags), _BAGS_PER_CHUNK):
        chunk = slice(start, start + _BAGS_PER_CHUNK)
        points, own = bags[chunk], annotated[chunk]
        to_own = (points - own[:, None]).square().sum(-1)  # [g, M]
        to_all = (points[:, :, None] - others[None, None]).square().sum(-1)  # [g, M, K]
        same_object = (others[None] == own[:, None]).all(-1)  # [g, K]
        to_all = to_all.masked_fill(same_object[:, None], float("inf"))
        nearest_other = to_all.min(-1).values if others.numel() else torch.full_like(to_own, float("inf"))
        counts_here = valid[chunk] & (scores[chunk] >= threshold) & (to_own < nearest_other)
        weights = scores[chunk] * counts_here
        total = weights.sum(1, keepdim=True)
        mean = (weights[..., None] * points).sum(1) / total.clamp(min=torch.finfo(total.dtype).tiny)
        refined.append(torch.where(total > 0, mean, own))
        counts.append(counts_here.sum(1))
    if not refined:
        return annotated.clone(), torch.zeros(0, dtype=torch.long, device=annotated.device)
    return torch.cat(refined), torch.cat(counts)


class CPRHead(nn.Module):
    """Class logits and instance logits, [B, C, H, W] each, from one tower each."""

    def __init__(self, channels: int, num_classes: int, stacked_convs: int, group_norm: bool):
        super().__init__()
        self.cls_tower = conv_tower(channels, stacked_convs, group_norm)
        self.ins_tower = conv_tower(channels, stacked_convs, group_norm)
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.ins_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        init_dense_head(self, self.cls_logits)

    def forward(self, feature: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_logits(self.cls_tower(feature)), self.ins_logits(self.ins_tower(feature))


class CPR(nn.Module):
    """`model(images, targets)` returns the losses (targets: `points` [N,2], `labels` [N]);
    `refine(images, image_sizes, points, labels)` the refined points."""

    kind: ClassVar[str] = "refiner"  # trained on points, moves annotated points (tinyfast.engine)
    inference_dtype: torch.dtype | None = None

    def __init__(self, config: CPRConfig = CPRConfig()):
        super().__init__()
        if config.strides[0] != STRIDE:
            raise ValueError(
                f"CPR runs on the stride-4 level: model.strides must start at 4, got {config.strides}"
            )
        self.config = config
        self.backbone = BackboneFPN.from_config(config, "on_output")
        self.head = CPRHead(config.channels, config.num_classes, config.stacked_convs, config.head_group_norm)

    def score_maps(self, images: Tensor) -> tuple[Tensor, Tensor]:
        cls_logits, ins_logits = self.head(self.backbone(images)[0])
        return cls_logits.float(), ins_logits.float()

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None) -> dict[str, Tensor]:
        if targets is None:
            raise ValueError("CPR's forward computes its losses and needs targets; refine() refines points")
        cls_logits, ins_logits = self.score_maps(images)
        return self.losses(cls_logits, ins_logits, targets, tuple(images.shape[-2:]))

    def losses(self, cls_logits, ins_logits, targets, size: tuple[int, int]) -> dict[str, Tensor]:
        config = self.config
        classes = config.num_classes
        focal = {"alpha": config.focal_alpha, "gamma": config.focal_gamma, "reduction": "sum"}
        height, width = cls_logits.shape[-2:]
        cells = torch.stack(
            torch.meshgrid(
                (torch.arange(width, device=cls_logits.device) + 0.5) * STRIDE,
                (torch.arange(height, device=cls_logits.device) + 0.5) * STRIDE,
                indexing="xy",
            ),
            dim=-1,
        ).reshape(-1, 2)
        mil, negative, annotated_loss = [], [], []
        num_bags = 0
        for image, target in enumerate(targets):
            if "points" not in target:
                raise ValueError("CPR is trained on points: its targets need 'points' (set data.points)")
            points, labels = target["points"].float(), target["labels"]
            num_bags += len(points)
            cls_map, ins_map = cls_logits[image], ins_logits[image]
            one_hot = F.one_hot(labels, classes).float()
            if len(points):
                bags, valid = bag_points(points, config.bag_radius, STRIDE, size)
                bag_cls = sample_at(cls_map, bags, STRIDE)  # [G, M, C]
                bag_ins = sample_at(ins_map, bags, STRIDE).masked_fill(~valid[..., None], float("-inf"))
                bag_score = (bag_ins.softmax(1) * bag_cls.sigmoid()).sum(1)  # [G, C]
                mil.append(F.binary_cross_entropy(bag_score.clamp(1e-6, 1 - 1e-6), one_hot, reduction="sum"))
                annotated_loss.append(
                    sigmoid_focal_loss(sample_at(cls_map, points, STRIDE), one_hot, **focal)
                )
            # Negatives: the cells outside the circles of every object of the class.
            near = torch.cdist(cells, points) <= config.bag_radius * STRIDE  # [HW, G]
            negatives = (near.float() @ one_hot) == 0  # [HW, C]
            cell_logits = cls_map.flatten(1).T
            negative.append(
                sigmoid_focal_loss(cell_logits[negatives], torch.zeros_like(cell_logits[negatives]), **focal)
            )
        processes = world_size()
        total = sum_over_processes(torch.tensor(float(num_bags), device=cls_logits.device))
        norm = total.clamp(min=1.0) / processes
        zero = cls_logits.sum() * 0 + ins_logits.sum() * 0  # keeps every parameter in the graph
        return {
            "loss_mil": config.mil_weight * (sum(mil, zero)) / norm,
            "loss_negative": config.negative_weight * sum(negative, zero) / norm,
            "loss_point": config.point_weight * sum(annotated_loss, zero) / norm,
        }

    @torch.no_grad()
    def refine(
        self,
        images: Tensor,
        image_sizes: list[tuple[int, int]],
        points: list[Tensor],
        labels: list[Tensor],
    ) -> list[tuple[Tensor, Tensor]]:
        """The refined points of a padded batch of images of `image_sizes` (h, w): per image `(refined
        [G, 2], counts [G])` for its annotated `points` [G, 2] of class `labels` [G] (`refine_bags`)."""
        self.eval()
        cls_logits, _ = run_network(self.inference_dtype, self.score_maps, images)
        out = []
        for image, (size, annotated, label) in enumerate(zip(image_sizes, points, labels, strict=True)):
            annotated = annotated.float()
            bags, valid = bag_points(annotated, self.config.bag_radius, STRIDE, size)
            scores = sample_at(cls_logits[image], bags, STRIDE).sigmoid()  # [G, M, C]
            own_scores = scores.gather(-1, label.view(-1, 1, 1).expand(-1, bags.shape[1], 1))[..., 0]
            out.append(refine_bags(bags, valid, own_scores, annotated, self.config.refine_threshold))
        return out
