"""AP/AR: the TinyPerson match per size range, then pycocotools' accumulate (101-point precision)."""

from __future__ import annotations

import numpy as np

from tinyfast.evaluation.categories import CategoryData
from tinyfast.evaluation.matching import MATCHED, UNMATCHED, greedy_match
from tinyfast.evaluation.params import EvalParams


def match_category(category: CategoryData, params: EvalParams) -> np.ndarray:
    """Outcome [A, T, n_dets] of every detection per area range and IoU threshold."""
    lo, hi = _area_bounds(params)
    in_range = (category.gt_areas >= lo[:, None]) & (category.gt_areas <= hi[:, None])
    iou = category.pairs.iou
    absorb = None
    if params.iod_fallback:
        det_area = category.det_areas[category.pairs.det]
        # The reference derives IoD from IoU and the GT `area` field; same float operations here.
        with np.errstate(divide="ignore", invalid="ignore"):
            absorb = iou / (1 + iou) * (1 + category.gt_areas[category.pairs.gt] / det_area)
    return greedy_match(
        category.pairs,
        len(category.det_scores),
        np.minimum(np.asarray(params.iou_thresholds), 1 - 1e-10),
        gt_regular=in_range & ~category.gt_ignore,
        gt_reusable=np.broadcast_to(category.gt_crowd, in_range.shape),
        regular_overlap=iou,
        ignored_overlap=iou,
        matched_code=category.gt_matched_code,
        absorb_overlap=absorb,
    )


def _area_bounds(params: EvalParams) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.array([lo for _, lo, _ in params.area_ranges], np.float64),
        np.array([hi for _, _, hi in params.area_ranges], np.float64),
    )


def accumulate_category(
    category: CategoryData, outcome: np.ndarray, params: EvalParams
) -> tuple[np.ndarray, np.ndarray]:
    """precision [T, R, A, M] and recall [T, A, M] of one category, -1 where it has no regular GT."""
    lo, hi = _area_bounds(params)
    n_thr, n_rec = len(params.iou_thresholds), len(params.recall_thresholds)
    precision = -np.ones((n_thr, n_rec, len(lo), len(params.max_dets)))
    recall = -np.ones((n_thr, len(lo), len(params.max_dets)))
    recall_thresholds = np.asarray(params.recall_thresholds)
    gt_in_range = (category.gt_areas >= lo[:, None]) & (category.gt_areas <= hi[:, None])
    n_positives = np.count_nonzero(gt_in_range & ~category.gt_ignore, axis=1)
    det_areas = category.det_areas
    score_order = category.score_order
    for m, max_det in enumerate(params.max_dets):
        order = score_order[category.det_rank[score_order] < max_det]
        for a in np.flatnonzero(n_positives):
            codes = outcome[a][:, order]
            counted_fp = ~((det_areas[order] < lo[a]) | (det_areas[order] > hi[a]))
            for t in range(n_thr):
                precision[t, :, a, m], recall[t, a, m] = _precision_at_recalls(
                    codes[t] == MATCHED,
                    (codes[t] == UNMATCHED) & counted_fp,
                    n_positives[a],
                    recall_thresholds,
                )
    return precision, recall


def _precision_at_recalls(
    is_tp: np.ndarray, is_fp: np.ndarray, n_positives: int, recall_thresholds: np.ndarray
) -> tuple[np.ndarray, float]:
    """pycocotools' interpolated precision at each recall threshold, and the final recall.

    Ignored detections (neither TP nor FP) are left out: they only repeat the previous precision and
    recall, which changes neither the interpolated precision nor the recall reached.
    """
    is_tp = is_tp[is_tp | is_fp]
    if len(is_tp) == 0:
        return np.zeros(len(recall_thresholds)), 0.0
    tp_sum = np.cumsum(is_tp, dtype=np.float64)
    fp_sum = np.arange(1, len(is_tp) + 1, dtype=np.float64) - tp_sum
    rc = tp_sum / n_positives
    pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    pr = np.maximum.accumulate(pr[::-1])[::-1]
    at = np.searchsorted(rc, recall_thresholds, side="left")
    return np.where(at < len(pr), pr[np.minimum(at, len(pr) - 1)], 0.0), float(rc[-1])
