"""Inference steps shared by the detectors, on a whole batch of tiles at once: the dense heads' per-level
selection, and the per-tile NMS and cap that a merge policy asks of a detector
(`tinyfast.tiling.TileSettings`). No step loops over the tiles: a batch costs a few kernels whatever its
size, which on a GPU is what keeps post-processing near the network's own cost."""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import torch
from torch import Tensor

from tinyfast.ops import batched_nms
from tinyfast.tiling.detector import TileSettings
from tinyfast.utils.tensors import first_of_each_group


def sigmoid_tile_by_tile(values: Tensor) -> Tensor:
    """`values.sigmoid()` of `[B, ...]` values of B tiles. On the CPU each tile's values go through the
    kernel on their own (one C++ loop, `torch._foreach_sigmoid`): ATen's vectorised exp and the scalar one
    it uses for the remainder of a SIMD run round differently in the last bit, so a tile's scores would
    otherwise depend on the batch it came in. On a GPU every element takes the same path: one kernel."""
    if values.device.type != "cpu" or len(values) == 0:
        return values.sigmoid()
    return torch.stack(torch._foreach_sigmoid(values.unbind(0)))


def exp_in_runs(values: Tensor, runs: list[int] | None) -> Tensor:
    """`values.exp()` of a 1-D tensor, on the CPU run by run (`runs`: the lengths of consecutive runs, e.g.
    the candidates of each tile), each as if alone (see `sigmoid_tile_by_tile`)."""
    if runs is None or values.device.type != "cpu":
        return values.exp()
    return torch.cat(torch._foreach_exp(values.split(runs))) if runs else values.exp()


def select_level_candidates(
    class_scores: Tensor, nms_pre: int, score_threshold: float, quality: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One FPN level of a batch of tiles, as the reference's dense heads select in each image (mmdetection
    2.x `get_bboxes` and `multiclass_nms`): in every tile the `nms_pre` locations (rows of `class_scores`
    `[B, P, K]`, sigmoid scores) whose best class score, times `quality` `[B, P]` when given (FCOS's
    centerness), is highest (all when `nms_pre` <= 0), then every (location, class) whose raw class score is
    above `score_threshold`.

    Returns their tiles, locations (rows), classes and scores (class score x quality), tile by tile and, in
    a tile, by decreasing rank of the location, then class."""
    ranking = class_scores if quality is None else class_scores * quality[..., None]
    num_tiles, num_locations, num_classes = class_scores.shape
    if 0 < nms_pre < num_locations:
        locations = ranking.max(2).values.topk(nms_pre, dim=1).indices
        picked = locations[..., None].expand(-1, -1, num_classes)
        class_scores, ranking = class_scores.gather(1, picked), ranking.gather(1, picked)
    else:
        locations = torch.arange(num_locations, device=class_scores.device).expand(num_tiles, -1)
    tile, row, label = (class_scores > score_threshold).nonzero(as_tuple=True)
    return tile, locations[tile, row], label, ranking[tile, row, label]


class TileDetections(NamedTuple):
    """The detections of a batch of `num_tiles` tiles in one set of tensors, grouped by tile (`tiles` is
    non-decreasing), each tile's in the order the detector gives them."""

    boxes: Tensor  # [N, 4] x1y1x2y2 in the pixels of the tile
    scores: Tensor  # [N]
    labels: Tensor  # [N] int64
    tiles: Tensor  # [N] int64, the tile of each detection
    num_tiles: int

    @classmethod
    def from_parts(cls, parts: list[tuple[Tensor, Tensor, Tensor, Tensor]], num_tiles: int):
        """One or more `(tiles, boxes, scores, labels)` parts (each grouped by tile, e.g. one per FPN level)
        put together: every tile's detections part after part."""
        tiles, boxes, scores, labels = (torch.cat(column) for column in zip(*parts, strict=True))
        order = torch.sort(tiles, stable=True).indices
        return cls(boxes[order], scores[order], labels[order], tiles[order], num_tiles)

    def select(self, rows: Tensor) -> TileDetections:
        """The detections at `rows` (which must keep them grouped by tile)."""
        return TileDetections(
            self.boxes[rows], self.scores[rows], self.labels[rows], self.tiles[rows], self.num_tiles
        )

    def per_tile(self) -> list[dict[str, Tensor]]:
        """One `{"boxes", "scores", "labels"}` dict per tile (views, no copies)."""
        counts = torch.bincount(self.tiles, minlength=self.num_tiles).tolist()
        return [
            {"boxes": boxes, "scores": scores, "labels": labels}
            for boxes, scores, labels in zip(
                self.boxes.split(counts), self.scores.split(counts), self.labels.split(counts), strict=True
            )
        ]


def with_tile_settings(config, settings: TileSettings):
    """A detector config (a frozen dataclass with `nms_pre` and `score_threshold`) with the values that the
    tile settings give (None keeps the config's)."""
    changes = {}
    if settings.nms_pre is not None:
        changes["nms_pre"] = settings.nms_pre
    if settings.score_threshold is not None:
        changes["score_threshold"] = settings.score_threshold
    return replace(config, **changes)


def tile_nms(
    found: TileDetections, settings: TileSettings, iou_threshold: float, num_classes: int
) -> TileDetections:
    """Class-aware NMS at `iou_threshold` in each tile when `settings.per_tile_nms`, then at most
    `settings.max_per_tile` detections by score in each tile, by decreasing score (ties: the detector's
    order), all tiles in one `batched_nms` call (groups: tile x class)."""
    if not settings.per_tile_nms and settings.max_per_tile is None:
        return found
    iou = iou_threshold if settings.per_tile_nms else 1.0  # IoU is never above 1: nothing suppressed
    keep = batched_nms(found.boxes, found.scores, found.tiles * num_classes + found.labels, iou)
    # Kept by decreasing score over the batch; a stable sort by tile keeps that order within each tile.
    keep = keep[torch.sort(found.tiles[keep], stable=True).indices]
    if settings.max_per_tile is not None:
        keep = keep[first_of_each_group(found.tiles[keep], settings.max_per_tile)]
    return found.select(keep)
