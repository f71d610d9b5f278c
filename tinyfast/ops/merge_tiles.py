"""Merge of tiled detections: from the raw detections of every tile of a batch to detections per image."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from tinyfast.ops import _arguments, _library  # noqa: F401  (_library registers torch.ops.tinyfast)

_OP = "merge_tiles"


class MergedDetections(NamedTuple):
    """Detections of a batch in image coordinates, by image, then by decreasing score within an image."""

    boxes: torch.Tensor  # [K, 4] x1y1x2y2
    scores: torch.Tensor  # [K]
    labels: torch.Tensor  # [K] int64
    image_index: torch.Tensor  # [K] int64

    def per_image(self, num_images: int) -> list[dict[str, torch.Tensor]]:
        """One ``{"boxes", "scores", "labels"}`` dict per image (empty for images without detections)."""
        counts = torch.bincount(self.image_index, minlength=num_images).tolist()
        parts = (torch.split(t, counts) for t in (self.boxes, self.scores, self.labels))
        return [{"boxes": b, "scores": s, "labels": c} for b, s, c in zip(*parts, strict=True)]


def merge_tiles(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    tile_index: torch.Tensor,
    tiles: torch.Tensor,
    tile_image: torch.Tensor,
    image_sizes: torch.Tensor,
    *,
    tile_scales: torch.Tensor | None = None,
    tile_flips: torch.Tensor | None = None,
    score_threshold: float | None = None,
    iou_threshold: float = 0.5,
    class_agnostic: bool = False,
    max_per_image: int | None = None,
    truncated: str = "keep",
    truncated_iof: float = 0.7,
    truncated_factor: float = 0.5,
) -> MergedDetections:
    """Merges the raw detections of all tiles of a batch of images in one call, on the input's device.

    Per box (``boxes`` ``[N, 4]`` in the coordinates of its tile as the detector saw it, ``scores``,
    ``labels`` ``[N]``, ``tile_index`` ``[N]`` into the per-tile tensors): divide by the tile's
    ``tile_scales`` ``[T, 2]`` (x, y resize factor of the crop, default 1), mirror within the crop's width if
    ``tile_flips`` ``[T]`` says the detector saw it flipped, shift by the crop's corner (``tiles`` ``[T, 4]``,
    x1y1x2y2 in the image ``tile_image`` ``[T]``), clip to the image (``image_sizes`` ``[I, 2]``, width and
    height). Then keep ``score > score_threshold``, run NMS (``tinyfast.ops.batched_nms``) within each image
    and class (within each image if ``class_agnostic``) and keep the ``max_per_image`` best of each image.

    ``tile_flips`` must be a bool tensor, ``class_agnostic`` a bool.
    ``truncated`` handles boxes cut by a tile border (a box within 1 px of a tile side that is not an image
    border): ``"keep"`` (the reference: NMS alone resolves them), ``"downweight"`` (multiply the score by
    ``truncated_factor``) or ``"drop"``, applied to a truncated box whose area lies at least
    ``truncated_iof`` inside an untruncated box of another tile of the same image (and class, unless
    class-agnostic), before NMS and after the score threshold.

    Bad input raises ``ValueError`` naming the argument (NaN or infinite boxes or scores included).
    """
    boxes = _arguments.tensor(_OP, "boxes", boxes)
    if boxes.is_floating_point() and boxes.dtype not in (torch.float32, torch.float64):
        boxes = boxes.float()
    tiles = _arguments.tensor(_OP, "tiles", tiles)
    num_tiles = tiles.shape[0] if tiles.dim() == 2 else 0
    if tile_scales is None:
        tile_scales = torch.ones(num_tiles, 2, device=boxes.device)
    if tile_flips is None:
        tile_flips = torch.zeros(num_tiles, dtype=torch.bool, device=boxes.device)
    # tiles, tile_scales and image_sizes are computed in the boxes' type.
    in_box_type = {"dtype": boxes.dtype} if boxes.is_floating_point() else {}
    result = torch.ops.tinyfast.merge_tiles(
        boxes,
        _arguments.tensor(_OP, "scores", scores),
        _arguments.integer_tensor(_OP, "labels", labels),
        _arguments.integer_tensor(_OP, "tile_index", tile_index),
        tiles.to(**in_box_type),
        _arguments.tensor(_OP, "tile_scales", tile_scales).to(**in_box_type),
        _arguments.tensor(_OP, "tile_flips", tile_flips),
        _arguments.integer_tensor(_OP, "tile_image", tile_image),
        _arguments.tensor(_OP, "image_sizes", image_sizes).to(**in_box_type),
        -math.inf if score_threshold is None else _arguments.real(_OP, "score_threshold", score_threshold),
        _arguments.real(_OP, "iou_threshold", iou_threshold),
        _arguments.boolean(_OP, "class_agnostic", class_agnostic),
        _arguments.optional_integer(_OP, "max_per_image", max_per_image),
        _arguments.string(_OP, "truncated", truncated),
        _arguments.real(_OP, "truncated_iof", truncated_iof),
        _arguments.real(_OP, "truncated_factor", truncated_factor),
    )
    return MergedDetections(*result)


@torch.library.register_fake("tinyfast::merge_tiles")
def _merge_tiles_fake(
    boxes, scores, labels, tile_index, tiles, tile_scales, tile_flips, tile_image, image_sizes, *_
):
    tensors = {"boxes": boxes, "scores": scores, "labels": labels, "tile_index": tile_index, "tiles": tiles,
               "tile_scales": tile_scales, "tile_flips": tile_flips, "tile_image": tile_image,
               "image_sizes": image_sizes}  # fmt: skip
    _arguments.check_one_device(_OP, tensors)
    torch._check(boxes.dim() == 2 and boxes.shape[1] == 4)
    kept = torch.library.get_ctx().new_dynamic_size()
    return (
        boxes.new_empty((kept, 4)),
        scores.new_empty((kept,)),
        labels.new_empty((kept,)),
        labels.new_empty((kept,)),
    )
