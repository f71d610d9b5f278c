"""Inference steps shared by the detectors: the dense heads' per-level selection, and the per-tile NMS and
cap that a merge policy asks of a detector (`tinyfast.tiling.TileSettings`)."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from tinyfast.ops import batched_nms
from tinyfast.tiling.detector import TileSettings


def level_candidates(
    class_scores: Tensor, nms_pre: int, score_threshold: float, quality: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """One image, one FPN level, as the reference's dense heads select (mmdetection 2.x `get_bboxes` and
    `multiclass_nms`): the `nms_pre` locations (rows of `class_scores` `[P, K]`, sigmoid scores) whose best
    class score, times `quality` `[P]` when given (FCOS's centerness), is highest (all when `nms_pre` <= 0),
    then every (location, class) whose raw class score is above `score_threshold`.

    Returns their locations (rows), classes and scores (class score x quality)."""
    ranking = class_scores if quality is None else class_scores * quality[:, None]
    locations = torch.arange(len(class_scores), device=class_scores.device)
    if 0 < nms_pre < len(class_scores):
        locations = ranking.max(1).values.topk(nms_pre).indices
        class_scores, ranking = class_scores[locations], ranking[locations]
    location, label = (class_scores > score_threshold).nonzero(as_tuple=True)
    return locations[location], label, ranking[location, label]


def with_tile_settings(config, settings: TileSettings):
    """A detector config (a frozen dataclass with `nms_pre` and `score_threshold`) with the values that the
    tile settings give (None keeps the config's)."""
    changes = {}
    if settings.nms_pre is not None:
        changes["nms_pre"] = settings.nms_pre
    if settings.score_threshold is not None:
        changes["score_threshold"] = settings.score_threshold
    return replace(config, **changes)


def tile_nms(found: list[dict[str, Tensor]], settings: TileSettings, iou_threshold: float) -> list[dict]:
    """Class-aware NMS at `iou_threshold` in each tile when `settings.per_tile_nms`, then at most
    `settings.max_per_tile` detections by score (in place; returns `found`)."""
    if not settings.per_tile_nms and settings.max_per_tile is None:
        return found
    iou = iou_threshold if settings.per_tile_nms else 1.0  # IoU is never above 1: nothing suppressed
    for detections in found:
        keep = batched_nms(detections["boxes"], detections["scores"], detections["labels"], iou)
        if settings.max_per_tile is not None:
            keep = keep[: settings.max_per_tile]
        for key in detections:
            detections[key] = detections[key][keep]
    return found
