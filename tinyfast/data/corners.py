"""Training sub-images ("corner" cutting), as the reference does it (docs/protocol.md §2).

The cut offsets (`cut_starts`: step `sub - overlap`, ceil((size - overlap) / step) cuts, the last one moved
back to end at the image edge) are also those of the inference tile grid of section 3 (tinyfast.tiling),
which takes them from here; the default sizes and overlaps of the two differ.
Export a corner json with `python -m tinyfast.data.convert corners FULL.json --out CORNER.json`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from tinyfast.data.annotations import AnnotationSet, Corner, ImageAnnotations, ImageInfo

SUB_SIZE = (640, 512)
# The reference's published corner json cuts a 1280-wide image at x = 0, 590, 640: overlap 50.
# Its y cuts (0, 208 for 720 rows) fit any overlap below 304; we take 50 for both axes.
OVERLAP = (50, 50)
KEEP_RATIO = 0.7


def cut_starts(size: int, sub: int, overlap: int) -> list[int]:
    """Start offsets along one axis, for training cuts and inference tiles alike; the last cut ends flush
    with the edge (an image smaller than `sub` gives one cut starting at 0 and ending at the edge)."""
    if not 0 <= overlap < sub:
        raise ValueError(f"overlap {overlap} must be in [0, {sub})")
    stride = sub - overlap
    count = max(1, math.ceil((size - overlap) / stride))
    return [max(0, min(i * stride, size - sub)) for i in range(count)]


def corner_grid(
    width: int, height: int, sub_size: tuple[int, int] = SUB_SIZE, overlap: tuple[int, int] = OVERLAP
) -> list[Corner]:
    """Sub-image corners (x1, y1, x2, y2), row by row as the reference orders them."""
    xs = cut_starts(width, sub_size[0], overlap[0])
    ys = cut_starts(height, sub_size[1], overlap[1])
    return [(x, y, min(x + sub_size[0], width), min(y + sub_size[1], height)) for y in ys for x in xs]


def crop_boxes(
    boxes: np.ndarray, corner: Corner, keep_ratio: float = KEEP_RATIO
) -> tuple[np.ndarray, np.ndarray]:
    """Clip x1y1x2y2 boxes to `corner`; keep a box iff sqrt(clipped area) / sqrt(area) >= keep_ratio.

    Returns the kept boxes in sub-image coordinates and their indices into `boxes`.
    """
    x1, y1, x2, y2 = corner
    clipped = boxes.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(x1, x2)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(y1, y2)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    clipped_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = np.flatnonzero(np.sqrt(clipped_area) / np.sqrt(area) >= keep_ratio)
    return clipped[keep] - np.array([x1, y1, x1, y1], dtype=clipped.dtype), keep


@dataclass(frozen=True)
class SubImage:
    """One training cut: `image` is the full image, `annotations` are in the cut's coordinates."""

    image: ImageInfo
    corner: Corner
    annotations: ImageAnnotations
    erase_regions: np.ndarray  # x1y1x2y2 in full-image pixels, painted before cropping when erasing


def cut_image(
    image: ImageInfo,
    anns: ImageAnnotations,
    *,
    erase: bool = False,
    sub_size: tuple[int, int] = SUB_SIZE,
    overlap: tuple[int, int] = OVERLAP,
    keep_ratio: float = KEEP_RATIO,
) -> list[SubImage]:
    """The non-empty cuts of one full image. With `erase`, ignore/uncertain/logo regions are removed from
    the annotations (and returned as regions to paint) before cutting, as the reference's erased set.

    Annotations that carry points (a point-annotated json) are kept by their point instead: an object is in
    a cut iff its point lies in it (`points_in_corner`), whatever share of its box does, since a
    point-supervised model sees nothing else of it; its box is still clipped to the cut (for evaluation).
    The points are generated on the full image first, so that an object in two overlapping cuts has one and
    the same point in both."""
    regions = np.zeros((0, 4))
    if erase:
        regions = anns.boxes[anns.erase_mask()]
        anns = anns.select(~anns.erase_mask())
    subs = []
    for corner in corner_grid(image.width, image.height, sub_size, overlap):
        if anns.points is None:
            boxes, keep = crop_boxes(anns.boxes, corner, keep_ratio)
        else:
            keep = np.flatnonzero(points_in_corner(anns.points, corner))
            boxes, _ = crop_boxes(anns.boxes[keep], corner, keep_ratio=0.0)  # clipped, all kept
        if len(keep) == 0:
            continue
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        touching = _intersecting(regions, corner)
        kept = anns.select(keep).with_boxes(boxes, areas)
        if kept.points is not None:
            kept = kept.with_points(kept.points - np.array(corner[:2], dtype=np.float64))
        subs.append(SubImage(image, corner, kept, regions[touching]))
    return subs


def points_in_corner(points: np.ndarray, corner: Corner) -> np.ndarray:
    """Which [n, 2] points lie in the cut, its border included (x1 <= x <= x2, y1 <= y <= y2): a point on
    the image's edge (`generate_coarse_points` clips points to [0, width]) is in the cut that ends there."""
    x1, y1, x2, y2 = corner
    return (points[:, 0] >= x1) & (points[:, 0] <= x2) & (points[:, 1] >= y1) & (points[:, 1] <= y2)


def _intersecting(regions: np.ndarray, corner: Corner) -> np.ndarray:
    x1, y1, x2, y2 = corner
    return (regions[:, 0] < x2) & (regions[:, 2] > x1) & (regions[:, 1] < y2) & (regions[:, 3] > y1)


def cut_annotation_set(
    annotations: AnnotationSet,
    *,
    erase: bool = False,
    skip_dense: bool = True,
    sub_size: tuple[int, int] = SUB_SIZE,
    overlap: tuple[int, int] = OVERLAP,
    keep_ratio: float = KEEP_RATIO,
) -> list[SubImage]:
    """Every non-empty cut of every (non-dense, unless `skip_dense` is False) full image, in file order."""
    subs = []
    for image in annotations.images:
        if image.corner is not None:
            raise ValueError(f"{annotations.path}: already a corner json (image id {image.id})")
        anns = annotations.annotations_of(image.id)
        if skip_dense and anns.is_dense:
            continue
        subs.extend(
            cut_image(image, anns, erase=erase, sub_size=sub_size, overlap=overlap, keep_ratio=keep_ratio)
        )
    return subs


def to_corner_set(annotations: AnnotationSet, subs: list[SubImage]) -> AnnotationSet:
    """The cuts as a corner json in the reference's layout: one image entry per cut sharing the full
    image's `file_name`, with `corner` [x1, y1, x2, y2], sub-image width/height, new ids, and the extra
    keys `origin_image_id` and (when erasing) `erase_regions` so a loader can rebuild the pixels."""
    images, per_image = [], {}
    next_ann_id = 0
    for sub_id, sub in enumerate(subs):
        x1, y1, x2, y2 = sub.corner
        images.append(
            ImageInfo(
                id=sub_id,
                file_name=sub.image.file_name,
                width=x2 - x1,
                height=y2 - y1,
                corner=sub.corner,
                origin_id=sub.image.id,
                erase_regions=tuple(tuple(float(v) for v in r) for r in sub.erase_regions),
            )
        )
        n = len(sub.annotations)
        ids = np.arange(next_ann_id, next_ann_id + n, dtype=np.int64)
        per_image[sub_id] = replace(sub.annotations, ids=ids)
        next_ann_id += n
    return AnnotationSet(annotations.path, images, per_image, annotations.categories, dict(annotations.extra))
