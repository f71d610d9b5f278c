"""Tiled inference on full images: cut tiles (with test-time scales and flips), batch them into the
detector, merge the tile detections per image with a policy of the reference (docs/protocol.md §3.3, §3.4)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from tinyfast.data.transforms import axis_scales
from tinyfast.ops import merge_tiles
from tinyfast.tiling.detector import TileDetector, TileSettings
from tinyfast.tiling.grid import tile_grid

MERGE_NMS_IOU = 0.5  # the reference's `merge_nms_th`: the NMS across the tiles of "after"
TRUNCATED = ("keep", "downweight", "drop")  # the merge's handling of boxes cut by a tile border


@dataclass(frozen=True)
class MergePolicy:
    """Per-tile settings for the detector and the settings of the merge on the full image; ``truncated`` is
    the merge's handling of boxes cut by a tile border that does not lie on the image border ("keep", as the
    reference, "downweight" or "drop": see ``tinyfast.ops.merge_tiles``)."""

    tile_settings: TileSettings
    class_agnostic: bool
    iou_threshold: float
    max_per_image: int | None
    score_threshold: float | None
    truncated: str = "keep"


def merge_policy(
    name: str,
    *,
    dense_head: bool = True,
    nms_pre: int = 1000,
    max_per_img: int | None = None,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    threshold_in_tiles: bool = False,
    truncated: str = "keep",
) -> MergePolicy:
    """The reference's policies with the corrected caps (``max_per_img`` 1000 for "during", 200 for "after").

    - ``"during"`` (run-time crop): dense heads keep ``nms_pre`` candidates per tile and level without
      NMS in the tile, then one class-aware NMS and ``max_per_img`` on the full image, the threshold applied
      on the full image too (or, with ``threshold_in_tiles``, by the detector in every tile: what the
      reference's trained models do, see ``detector_merge_policy``); two-stage heads
      (``dense_head=False``) threshold and NMS per tile, then class-aware NMS across tiles with no cap.
    - ``"after"`` (offline crop): every tile is an image with its threshold, NMS and ``max_per_img``; then
      one class-agnostic NMS per full image, no threshold, no cap.
    """
    if name == "during" and dense_head:
        return MergePolicy(
            tile_settings=TileSettings(
                nms_pre=nms_pre,
                per_tile_nms=False,
                score_threshold=score_threshold if threshold_in_tiles else None,
            ),
            class_agnostic=False,
            iou_threshold=iou_threshold,
            max_per_image=1000 if max_per_img is None else max_per_img,
            score_threshold=None if threshold_in_tiles else score_threshold,
            truncated=truncated,
        )
    if name == "during":
        return MergePolicy(
            tile_settings=TileSettings(nms_pre=nms_pre, per_tile_nms=True, score_threshold=score_threshold),
            class_agnostic=False,
            iou_threshold=iou_threshold,
            max_per_image=max_per_img,
            score_threshold=None,
            truncated=truncated,
        )
    if name == "after":
        cap = 200 if max_per_img is None else max_per_img
        return MergePolicy(
            tile_settings=TileSettings(
                nms_pre=nms_pre, per_tile_nms=True, max_per_tile=cap, score_threshold=score_threshold
            ),
            class_agnostic=True,
            iou_threshold=iou_threshold,
            max_per_image=None,
            score_threshold=None,
            truncated=truncated,
        )
    raise ValueError(f"merge_policy: name must be 'during' or 'after', got {name!r}")


def detector_merge_policy(
    name: str,
    *,
    dense_head: bool,
    nms_pre: int,
    nms_iou: float,
    score_threshold: float,
    max_per_img: int | None = None,
    truncated: str = "keep",
) -> MergePolicy:
    """The policy ``name`` as the reference runs it with one of its trained detectors, from the detector's
    test settings (``nms_pre``, ``nms_iou``, ``score_threshold``) and its kind (a dense head or two stages):
    "during" merges with the detector's NMS threshold and applies ``score_threshold`` in the detector, per
    tile (dense heads: to the raw class score); "after" applies it in every tile and merges at
    ``MERGE_NMS_IOU``."""
    return merge_policy(
        name,
        dense_head=dense_head,
        nms_pre=nms_pre,
        max_per_img=max_per_img,
        score_threshold=score_threshold,
        iou_threshold=nms_iou if name == "during" else MERGE_NMS_IOU,
        threshold_in_tiles=True,
        truncated=truncated,
    )


@dataclass(frozen=True)
class _TileView:
    image: int
    crop: tuple[int, int, int, int]
    scale: tuple[float, float]  # (x, y)
    flipped: bool


def detect_images(
    detector: TileDetector,
    images: Sequence[torch.Tensor],
    policy: str | MergePolicy = "during",
    *,
    tile: tuple[int, int] = (640, 512),
    overlap: tuple[int, int] = (100, 100),
    scales: Sequence[float] = (1.0,),
    flips: bool = False,
    tile_batch_size: int = 8,
) -> list[dict[str, torch.Tensor]]:
    """Detections ``{"boxes", "scores", "labels"}`` per full image (``[3, H, W]`` tensors, any sizes).

    Every image is cut on the reference grid; each tile is seen at every scale in ``scales`` (resized
    bilinearly; a scale is a number or an (x, y) pair) and, with ``flips``, also mirrored. Tiles of the same
    size from all images go to the detector together, ``tile_batch_size`` at a time; one ``merge_tiles``
    call merges the whole batch per ``policy`` (a name for ``merge_policy`` or a ``MergePolicy``, which also
    holds the merge's border handling).
    """
    if isinstance(policy, str):
        policy = merge_policy(policy)
    if tile_batch_size < 1:
        raise ValueError(f"detect_images: tile_batch_size must be >= 1, got {tile_batch_size}")
    views = tile_views(images, tile, overlap, scales, flips, "detect_images")
    settings = policy.tile_settings
    detections = run_views(lambda tiles: detector(tiles, settings), images, views, tile_batch_size)
    return _merge(images, views, detections, policy)


def tile_views(images, tile, overlap, scales, flips, caller: str) -> list[_TileView]:
    """Every (image, tile, scale, flip) the model sees, in that order; ValueError naming `caller`."""
    if not scales:
        raise ValueError(f"{caller}: scales must not be empty")
    try:
        pairs = [axis_scales(scale) for scale in scales]
    except ValueError as e:
        raise ValueError(f"{caller}: scales: {e}") from None
    return [
        _TileView(index, crop, pair, flipped)
        for index, image in enumerate(images)
        for crop in tile_grid(image.shape[-1], image.shape[-2], tile, overlap)
        for pair in pairs
        for flipped in ((False, True) if flips else (False,))
    ]


def run_views(model, images, views: list[_TileView], tile_batch_size: int) -> dict[int, dict]:
    """`model(tiles)` (a list of per-tile dicts) on the views' pixels, tiles of one size together,
    `tile_batch_size` at a time; the results by view position."""
    # A batch's pixels are cut when it goes to the model: memory holds one batch of tiles, never all the
    # tiles of a large image (only their detections wait for the merge).
    by_size = defaultdict(list)
    for position, view in enumerate(views):
        by_size[_view_size(view)].append(position)
    found: dict[int, dict] = {}
    for positions in by_size.values():
        for start in range(0, len(positions), tile_batch_size):
            batch = positions[start : start + tile_batch_size]
            tiles = torch.stack([_view_pixels(images[views[p].image], views[p]) for p in batch])
            outputs = model(tiles)
            del tiles
            if len(outputs) != len(batch):
                raise ValueError(
                    f"tiled inference: the model returned {len(outputs)} results for {len(batch)} tiles"
                )
            found.update(zip(batch, outputs, strict=True))
    return found


def _view_size(view: _TileView) -> tuple[int, int]:
    """(height, width) of the tile the detector sees for `view`."""
    x1, y1, x2, y2 = view.crop
    if view.scale == (1.0, 1.0):
        return y2 - y1, x2 - x1
    return max(1, round((y2 - y1) * view.scale[1])), max(1, round((x2 - x1) * view.scale[0]))


def _view_pixels(image: torch.Tensor, view: _TileView) -> torch.Tensor:
    x1, y1, x2, y2 = view.crop
    crop = image[:, y1:y2, x1:x2]
    if view.scale != (1.0, 1.0):
        size = _view_size(view)
        crop = F.interpolate(crop[None].float(), size=size, mode="bilinear", align_corners=False)[0]
    return crop.flip(-1) if view.flipped else crop


def view_scales(views: list[_TileView], crops: torch.Tensor) -> torch.Tensor:
    """[T, 2] (x, y): the resize factor of each view's pixels over its crop (`crops` [T, 4] float)."""
    resized = torch.tensor([_view_size(view)[::-1] for view in views], dtype=torch.float32)
    return (resized.to(crops.device) / (crops[:, 2:] - crops[:, :2])).reshape(-1, 2)


def _merge(images, views, detections, policy):
    device = images[0].device if images else torch.device("cpu")
    counts = [len(detections[p]["boxes"]) for p in range(len(views))]
    crops = torch.tensor([v.crop for v in views], dtype=torch.float32, device=device).reshape(-1, 4)
    merged = merge_tiles(
        torch.cat([detections[p]["boxes"].float() for p in range(len(views))]).reshape(-1, 4).to(device),
        torch.cat([detections[p]["scores"].float() for p in range(len(views))]).to(device),
        torch.cat([detections[p]["labels"].long() for p in range(len(views))]).to(device),
        torch.repeat_interleave(torch.arange(len(views), device=device), torch.tensor(counts, device=device)),
        crops,
        torch.tensor([v.image for v in views], dtype=torch.int64, device=device),
        torch.tensor([[img.shape[-1], img.shape[-2]] for img in images], dtype=torch.float32, device=device),
        tile_scales=view_scales(views, crops),
        tile_flips=torch.tensor([v.flipped for v in views], dtype=torch.bool, device=device),
        score_threshold=policy.score_threshold,
        iou_threshold=policy.iou_threshold,
        class_agnostic=policy.class_agnostic,
        max_per_image=policy.max_per_image,
        truncated=policy.truncated,
    )
    return merged.per_image(len(images))


def coco_results(
    detections: Sequence[dict[str, torch.Tensor]],
    image_ids: Sequence[int],
    category_ids: Sequence[int] = (1,),
) -> list[dict]:
    """A COCO results list: ``image_id``, ``category_id`` (label ``k`` becomes ``category_ids[k]``),
    ``bbox`` ``[x, y, w, h]`` and ``score`` for every detection of every image."""
    if len(detections) != len(image_ids):
        raise ValueError(f"coco_results: {len(detections)} detections for {len(image_ids)} image ids")
    results = []
    for image_id, found in zip(image_ids, detections, strict=True):
        outside = (found["labels"] < 0) | (found["labels"] >= len(category_ids))
        if outside.any():
            raise ValueError(
                f"coco_results: image {image_id!r} has label {int(found['labels'][outside][0])}, outside "
                f"the {len(category_ids)} category ids given (labels are 0-based; a torchvision two-stage "
                "model counts its background as 0: TorchvisionDetector subtracts it)"
            )
        for (x1, y1, x2, y2), score, label in zip(
            found["boxes"].tolist(), found["scores"].tolist(), found["labels"].tolist(), strict=True
        ):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": category_ids[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    return results


def write_coco_results(
    detections: Sequence[dict[str, torch.Tensor]],
    image_ids: Sequence[int],
    path: str | Path,
    category_ids: Sequence[int] = (1,),
) -> list[dict]:
    """Writes (and returns) the ``coco_results`` of ``detections`` to ``path``."""
    results = coco_results(detections, image_ids, category_ids)
    Path(path).write_text(json.dumps(results))
    return results
