"""Sparse (detection, GT) overlaps: only the pairs whose boxes intersect, found in bounded image chunks."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

# Cells (detections x GTs, padded per chunk) tested at once: bounds memory whatever the data set size.
DEFAULT_CELL_BUDGET = 1 << 22


def _corners(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x1, y1 = boxes[:, 0], boxes[:, 1]
    # Summed as pycocotools' bbIou does (w + x), so the comparisons below agree with its arithmetic.
    return x1, y1, boxes[:, 2] + x1, boxes[:, 3] + y1


def _image_chunks(
    det_count: np.ndarray, gt_count: np.ndarray, cell_budget: int
) -> Iterator[tuple[np.ndarray, int, int]]:
    """Groups of images with both detections and GTs, each padded to (max dets, max GTs) within budget."""
    images = np.flatnonzero((det_count > 0) & (gt_count > 0))
    images = images[np.argsort(gt_count[images] * det_count[images], kind="stable")]
    chunk_start = 0
    max_dets = max_gts = 0
    for position, image in enumerate(images):
        next_dets = max(max_dets, int(det_count[image]))
        next_gts = max(max_gts, int(gt_count[image]))
        if position > chunk_start and (position - chunk_start + 1) * next_dets * next_gts > cell_budget:
            yield images[chunk_start:position], max_dets, max_gts
            chunk_start = position
            next_dets, next_gts = int(det_count[image]), int(gt_count[image])
        max_dets, max_gts = next_dets, next_gts
    if chunk_start < len(images):
        yield images[chunk_start:], max_dets, max_gts


def _padded(values: np.ndarray, index: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.where(valid, values[index], np.nan)


def intersecting_pairs(
    det_boxes: np.ndarray,
    det_image: np.ndarray,
    gt_boxes: np.ndarray,
    gt_image: np.ndarray,
    n_images: int,
    cell_budget: int = DEFAULT_CELL_BUDGET,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(det index, gt index, intersection area) of every same-image pair with a positive intersection.

    ``det_image`` and ``gt_image`` must be sorted (rows grouped by image). The intersection is computed
    with pycocotools' float operations, so IoUs derived from it are bit-identical to ``maskUtils.iou``.
    """
    det_start = np.searchsorted(det_image, np.arange(n_images + 1))
    gt_start = np.searchsorted(gt_image, np.arange(n_images + 1))
    dx1, dy1, dx2, dy2 = _corners(det_boxes)
    gx1, gy1, gx2, gy2 = _corners(gt_boxes)
    det_parts, gt_parts = [], []
    for images, max_dets, max_gts in _image_chunks(np.diff(det_start), np.diff(gt_start), cell_budget):
        det_index = det_start[images, None] + np.arange(max_dets)
        det_valid = det_index < det_start[images + 1, None]
        det_index = np.where(det_valid, det_index, 0)
        gt_index = gt_start[images, None] + np.arange(max_gts)
        gt_valid = gt_index < gt_start[images + 1, None]
        gt_index = np.where(gt_valid, gt_index, 0)
        # A positive intersection needs these four cross comparisons (NaN padding fails them).
        hit = _padded(dx2, det_index, det_valid)[:, :, None] > _padded(gx1, gt_index, gt_valid)[:, None, :]
        hit &= _padded(gx2, gt_index, gt_valid)[:, None, :] > _padded(dx1, det_index, det_valid)[:, :, None]
        hit &= _padded(dy2, det_index, det_valid)[:, :, None] > _padded(gy1, gt_index, gt_valid)[:, None, :]
        hit &= _padded(gy2, gt_index, gt_valid)[:, None, :] > _padded(dy1, det_index, det_valid)[:, :, None]
        chunk_image, det_slot, gt_slot = np.nonzero(hit)
        det_parts.append(det_index[chunk_image, det_slot])
        gt_parts.append(gt_index[chunk_image, gt_slot])
    det = np.concatenate(det_parts) if det_parts else np.zeros(0, np.int64)
    gt = np.concatenate(gt_parts) if gt_parts else np.zeros(0, np.int64)
    width = np.minimum(dx2[det], gx2[gt]) - np.maximum(dx1[det], gx1[gt])
    height = np.minimum(dy2[det], gy2[gt]) - np.maximum(dy1[det], gy1[gt])
    # The exact test, as pycocotools: also drops boxes whose x + w rounds back to x.
    keep = (width > 0) & (height > 0)
    return det[keep], gt[keep], (width * height)[keep]
