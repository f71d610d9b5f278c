"""Caltech-style log-average miss rate per TinyPerson size setup (CityPersons' evaluation, on sqrt(area))."""

from __future__ import annotations

import numpy as np

from tinyfast.evaluation.categories import CategoryData
from tinyfast.evaluation.matching import MATCHED, UNMATCHED, greedy_match
from tinyfast.evaluation.params import MissRateParams


def miss_rates(categories: list[CategoryData], n_images: int, params: MissRateParams) -> dict[str, float]:
    """``{"MR_<setup>": miss rate}`` (a fraction; -1 where no category has a regular GT in the setup)."""
    lo = np.array([lo for _, lo, _ in params.size_ranges], np.float64)
    hi = np.array([hi for _, _, hi in params.size_ranges], np.float64)
    fppi_thresholds = np.asarray(params.fppi_thresholds)
    recalls: list[list[np.ndarray]] = [[] for _ in params.size_ranges]
    for category in categories:
        gt_size = np.sqrt(category.gt_areas)
        regular = ~category.gt_ignore & (gt_size >= lo[:, None]) & (gt_size <= hi[:, None])
        det_size = np.sqrt(category.det_areas)
        active = (det_size >= lo[:, None] / params.size_margin) & (
            det_size < hi[:, None] * params.size_margin
        )
        active &= category.det_rank < params.max_dets
        outcome = greedy_match(
            category.pairs,
            len(category.det_scores),
            np.array([min(params.iou_threshold, 1 - 1e-10)]),
            gt_regular=regular,
            gt_reusable=~regular,  # an ignore region may cover any number of detections
            regular_overlap=category.standard_iou(),
            ignored_overlap=category.intersection_over_det(),
            matched_code=category.gt_matched_code,
            det_active=active,
        )[:, 0, :]
        score_order = category.score_order
        for setup in np.flatnonzero(regular.any(axis=1)):
            order = score_order[active[setup][score_order]]
            recall = np.cumsum(outcome[setup, order] == MATCHED) / np.count_nonzero(regular[setup])
            fppi = np.cumsum(outcome[setup, order] == UNMATCHED) / n_images
            # Recall reached at each FPPI point; none reached yet means recall 0 (Caltech's convention).
            last = np.searchsorted(fppi, fppi_thresholds, side="right") - 1
            if len(order) == 0:
                recalls[setup].append(np.zeros(len(fppi_thresholds)))
            else:
                recalls[setup].append(np.where(last >= 0, recall[np.maximum(last, 0)], 0.0))
    result = {}
    for (label, _, _), setup_recalls in zip(params.size_ranges, recalls, strict=True):
        if not setup_recalls:
            result[f"MR_{label}"] = -1.0
            continue
        with np.errstate(divide="ignore"):
            result[f"MR_{label}"] = float(np.exp(np.mean(np.log(1 - np.concatenate(setup_recalls)))))
    return result
