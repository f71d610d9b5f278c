"""Merge of tiled detections: from the raw detections of every tile of a batch to detections per image."""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch

from tinyfast.ops import _library  # noqa: F401  (registers torch.ops.tinyfast)

TRUNCATED_MODES = ("keep", "downweight", "drop")


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

    ``truncated`` handles boxes cut by a tile border (a box within 1 px of a tile side that is not an image
    border): ``"keep"`` (the reference: NMS alone resolves them), ``"downweight"`` (multiply the score by
    ``truncated_factor``) or ``"drop"``, applied to a truncated box whose area lies at least
    ``truncated_iof`` inside an untruncated box of another tile of the same image (and class, unless
    class-agnostic), before NMS and after the score threshold.

    Bad input raises ``ValueError`` naming the argument (NaN or infinite boxes or scores included).
    """
    boxes = _as_tensor("boxes", boxes)
    if boxes.dtype not in (torch.float32, torch.float64):
        if not boxes.is_floating_point():
            _fail(f"boxes must be floating, got {boxes.dtype}")
        boxes = boxes.float()
    device, dtype = boxes.device, boxes.dtype
    tiles = _as_tensor("tiles", tiles)
    num_tiles = tiles.shape[0] if tiles.dim() == 2 else -1
    if tile_scales is None:
        tile_scales = torch.ones(max(num_tiles, 0), 2, device=device)
    if tile_flips is None:
        tile_flips = torch.zeros(max(num_tiles, 0), dtype=torch.bool, device=device)
    scores = _as_tensor("scores", scores)
    if not scores.is_floating_point():
        _fail(f"scores must be floating, got {scores.dtype}")
    arguments = {
        "labels": _as_integer("labels", labels),
        "tile_index": _as_integer("tile_index", tile_index),
        "tiles": tiles.to(dtype),
        "tile_scales": _as_tensor("tile_scales", tile_scales).to(dtype),
        "tile_flips": _as_tensor("tile_flips", tile_flips).to(torch.bool),
        "tile_image": _as_integer("tile_image", tile_image),
        "image_sizes": _as_tensor("image_sizes", image_sizes).to(dtype),
    }
    for name, value in arguments.items():
        if value.device != device:
            _fail(f"{name} must be on the device of boxes ({device}), got {value.device}")
    if truncated not in TRUNCATED_MODES:
        _fail(f"truncated must be one of {TRUNCATED_MODES}, got {truncated!r}")
    threshold = -math.inf if score_threshold is None else _number("score_threshold", score_threshold)
    cap = -1 if max_per_image is None else _count("max_per_image", max_per_image)
    result = torch.ops.tinyfast.merge_tiles(
        boxes,
        scores,
        arguments["labels"],
        arguments["tile_index"],
        arguments["tiles"],
        arguments["tile_scales"],
        arguments["tile_flips"],
        arguments["tile_image"],
        arguments["image_sizes"],
        threshold,
        _number("iou_threshold", iou_threshold),
        bool(class_agnostic),
        cap,
        truncated,
        _number("truncated_iof", truncated_iof),
        _number("truncated_factor", truncated_factor),
    )
    return MergedDetections(*result)


def _fail(message: str):
    raise ValueError(f"merge_tiles: {message}")


def _as_tensor(name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        _fail(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def _as_integer(name: str, value) -> torch.Tensor:
    value = _as_tensor(name, value)
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        _fail(f"{name} must be an integer tensor, got {value.dtype}")
    return value.to(torch.int64)


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        _fail(f"{name} must be a number, got {value!r}")
    return float(value)


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        _fail(f"{name} must be None or an int >= 0, got {value!r}")
    return int(value)


@torch.library.register_fake("tinyfast::merge_tiles")
def _merge_tiles_fake(boxes, scores, labels, *_):
    torch._check(boxes.dim() == 2 and boxes.shape[1] == 4)
    kept = torch.library.get_ctx().new_dynamic_size()
    return (
        boxes.new_empty((kept, 4)),
        scores.new_empty((kept,)),
        labels.new_empty((kept,)),
        labels.new_empty((kept,)),
    )
