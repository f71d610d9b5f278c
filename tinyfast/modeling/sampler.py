"""The reference's random sampling of training boxes (mmdetection's `RandomSampler`, `neg_pos_ub=-1`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def sample_boxes(
    assigned_gt: Tensor, counts: Sequence[int], num: int, positive_fraction: float
) -> tuple[Tensor, Tensor]:
    """Per image (the `counts[i]` consecutive rows of `assigned_gt`, as `tinyfast.ops.max_iou_assign`
    returns it: >= 0 positive, -1 negative, -2 ignored): at most `int(num * positive_fraction)` positives
    drawn at random, then negatives drawn at random up to `num` in all. Returns the global row indices of
    the sampled positives and negatives (random order; the draws follow torch's global generator)."""
    if num < 1 or not 0 <= positive_fraction <= 1:
        raise ValueError(
            "sample_boxes: num must be >= 1 and positive_fraction in [0, 1], "
            f"got {num} and {positive_fraction}"
        )
    if sum(counts) != len(assigned_gt):
        raise ValueError(
            f"sample_boxes: counts add up to {sum(counts)}, assigned_gt has {len(assigned_gt)} rows"
        )
    positives, negatives = [], []
    start = 0
    for count in counts:
        image = assigned_gt[start : start + count]
        chosen = _random_subset(torch.nonzero(image >= 0).flatten(), int(num * positive_fraction))
        positives.append(chosen + start)
        negatives.append(_random_subset(torch.nonzero(image == -1).flatten(), num - len(chosen)) + start)
        start += count
    return torch.cat(positives), torch.cat(negatives)


def _random_subset(indices: Tensor, limit: int) -> Tensor:
    if len(indices) <= limit:
        return indices
    return indices[torch.randperm(len(indices), device=indices.device)[:limit]]
