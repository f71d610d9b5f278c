"""The public entry points: ``evaluate`` (every metric as a dict) and ``precision_recall`` (raw arrays)."""

from __future__ import annotations

import numpy as np

from tinyfast.evaluation.accumulate import accumulate_category, match_category
from tinyfast.evaluation.categories import CategoryData, split_categories
from tinyfast.evaluation.coco_format import (
    Detections,
    GroundTruth,
    JsonLike,
    ResultsLike,
    load_ground_truth,
    load_results,
)
from tinyfast.evaluation.miss_rate import miss_rates
from tinyfast.evaluation.params import EvalParams, MissRateParams


def _precision_recall(categories: list[CategoryData], params: EvalParams) -> tuple[np.ndarray, np.ndarray]:
    n_thr, n_rec = len(params.iou_thresholds), len(params.recall_thresholds)
    n_cat, n_area, n_max = len(categories), len(params.area_ranges), len(params.max_dets)
    precision = -np.ones((n_thr, n_rec, n_cat, n_area, n_max))
    recall = -np.ones((n_thr, n_cat, n_area, n_max))
    for k, category in enumerate(categories):
        precision[:, :, k], recall[:, k] = accumulate_category(
            category, match_category(category, params), params
        )
    return precision, recall


def precision_recall(
    gt: JsonLike, results: ResultsLike, params: EvalParams | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' ``eval['precision']`` [T, R, K, A, M] and ``eval['recall']`` [T, K, A, M]."""
    params = params or EvalParams()
    ground_truth = load_ground_truth(gt, params.ignore_flags)
    categories = split_categories(ground_truth, load_results(results, ground_truth), params.max_dets[-1])
    return _precision_recall(categories, params)


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def summarize(precision: np.ndarray, recall: np.ndarray, params: EvalParams) -> dict[str, float]:
    """``AP<iou%>_<range>`` and ``AR<iou%>_<range>`` at the largest max_dets, as the reference summarizes."""
    metrics = {}
    for kind, values in (("AP", precision[:, :, :, :, -1]), ("AR", recall[:, :, :, -1])):
        for t, threshold in enumerate(params.iou_thresholds):
            for a, (label, _, _) in enumerate(params.area_ranges):
                metrics[f"{kind}{round(threshold * 100):d}_{label}"] = _mean_valid(values[t, ..., a])
    return metrics


def _evaluate_loaded(
    ground_truth: GroundTruth, detections: Detections, params: EvalParams, mr_params: MissRateParams | None
) -> dict[str, float]:
    categories = split_categories(ground_truth, detections, params.max_dets[-1])
    metrics = summarize(*_precision_recall(categories, params), params)
    if mr_params is not None:
        if mr_params.max_dets != params.max_dets[-1]:
            categories = split_categories(ground_truth, detections, mr_params.max_dets)
        metrics.update(miss_rates(categories, len(ground_truth.image_ids), mr_params))
    return metrics


def evaluate(
    gt: JsonLike,
    results: ResultsLike,
    max_dets: int = 1000,
    *,
    miss_rate: bool = True,
    params: EvalParams | None = None,
    miss_rate_params: MissRateParams | None = None,
) -> dict[str, float]:
    """Evaluate COCO-format ``results`` against a TinyPerson ground truth; every metric, as fractions.

    ``gt``: a COCO json path or dict. ``results``: a path or a list of ``{image_id, category_id,
    bbox: [x, y, w, h], score}``. ``max_dets`` applies when ``params``/``miss_rate_params`` are not given.
    Keys: see the module docstring of ``tinyfast.evaluation``. The headline metric is ``"AP50_tiny"``.
    """
    params = params or EvalParams.tinyperson(max_dets)
    mr_params = (miss_rate_params or MissRateParams(max_dets=max_dets)) if miss_rate else None
    ground_truth = load_ground_truth(gt, params.ignore_flags)
    return _evaluate_loaded(ground_truth, load_results(results, ground_truth), params, mr_params)
