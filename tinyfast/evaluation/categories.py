"""Per-category detections (score-ranked per image, as pycocotools orders them) and their overlaps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyfast.evaluation.coco_format import Detections, GroundTruth
from tinyfast.evaluation.matching import MATCHED, UNMATCHED, RankedPairs
from tinyfast.evaluation.overlaps import intersecting_pairs


@dataclass(frozen=True)
class CategoryData:
    """One category: detections sorted by (image, score rank), GTs by (image, file order), and overlaps."""

    det_boxes: np.ndarray
    det_scores: np.ndarray
    det_rank: np.ndarray  # rank by score within the image (stable on list order), < max_dets
    gt_boxes: np.ndarray
    gt_areas: np.ndarray
    gt_crowd: np.ndarray
    gt_ignore: np.ndarray
    gt_matched_code: np.ndarray  # outcome of a match to this GT (UNMATCHED for annotation id 0)
    pairs: RankedPairs

    @property
    def score_order(self) -> np.ndarray:
        """Detections by decreasing score, ties in (image, rank) order: pycocotools' accumulate order.

        Restricting it to a subset (``order[mask[order]]``) gives that subset's order.
        """
        return np.argsort(-self.det_scores, kind="stable")

    @property
    def det_areas(self) -> np.ndarray:
        return self.det_boxes[:, 2] * self.det_boxes[:, 3]

    def standard_iou(self) -> np.ndarray:
        """IoU of each pair ignoring the crowd flag, in pycocotools' float operations."""
        det_area = self.det_areas[self.pairs.det]
        gt_area = self.gt_boxes[self.pairs.gt, 2] * self.gt_boxes[self.pairs.gt, 3]
        return self.pairs.intersection / (det_area + gt_area - self.pairs.intersection)

    def intersection_over_det(self) -> np.ndarray:
        return self.pairs.intersection / self.det_areas[self.pairs.det]


def split_categories(ground_truth: GroundTruth, detections: Detections, max_dets: int) -> list[CategoryData]:
    """Keep each image's ``max_dets`` best detections per category; one CategoryData per GT category."""
    n_images = len(ground_truth.image_ids)
    # Stable sorts: equal scores keep their list order, as pycocotools' per-image mergesort does.
    det_order = np.argsort(-detections.scores, kind="stable")
    group = (detections.category_index * n_images + detections.image_index)[det_order]
    by_group = np.argsort(group, kind="stable")
    det_order, group = det_order[by_group], group[by_group]
    rank = np.arange(len(group)) - np.searchsorted(group, group, side="left")
    det_order, rank = det_order[rank < max_dets], rank[rank < max_dets]
    det_category = detections.category_index[det_order]
    gt_order = np.argsort(ground_truth.category_index * n_images + ground_truth.image_index, kind="stable")
    gt_category = ground_truth.category_index[gt_order]

    categories = []
    for category in range(len(ground_truth.category_ids)):
        dets = det_order[slice(*np.searchsorted(det_category, [category, category + 1]))]
        gts = gt_order[slice(*np.searchsorted(gt_category, [category, category + 1]))]
        det_boxes, det_image = detections.boxes[dets], detections.image_index[dets]
        gt_boxes, gt_image, gt_crowd = (
            ground_truth.boxes[gts],
            ground_truth.image_index[gts],
            ground_truth.crowd[gts],
        )
        det, gt, intersection = intersecting_pairs(det_boxes, det_image, gt_boxes, gt_image, n_images)
        det_area = det_boxes[det, 2] * det_boxes[det, 3]
        union = np.where(gt_crowd[gt], det_area, det_area + gt_boxes[gt, 2] * gt_boxes[gt, 3] - intersection)
        det_rank = rank[slice(*np.searchsorted(det_category, [category, category + 1]))]
        categories.append(
            CategoryData(
                det_boxes=det_boxes,
                det_scores=detections.scores[dets],
                det_rank=det_rank,
                gt_boxes=gt_boxes,
                gt_areas=ground_truth.areas[gts],
                gt_crowd=gt_crowd,
                gt_ignore=ground_truth.ignore[gts],
                gt_matched_code=np.where(ground_truth.id_is_zero[gts], UNMATCHED, MATCHED).astype(np.int8),
                pairs=RankedPairs.build(
                    det, gt, intersection / union, intersection, det_rank, det_image, n_images
                ),
            )
        )
    return categories
